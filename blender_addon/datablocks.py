"""What every importer and operator of the add-on shares: nothing half-created, and the selection after."""
from __future__ import annotations

import bpy

# Objects first: removing them frees the meshes, lights and cameras they use.
KINDS = ("objects", "meshes", "materials", "node_groups", "images", "lights", "cameras", "worlds", "collections", "actions")


class Created:
    """Data-blocks made by one operation (everything new since it started), removed again if it fails."""

    def __init__(self):
        self.before = {kind: {idb.as_pointer() for idb in getattr(bpy.data, kind)} for kind in KINDS}

    def add(self, idblock):
        return idblock

    def rollback(self):
        for kind in KINDS:
            data = getattr(bpy.data, kind)
            for idblock in [idb for idb in data if idb.as_pointer() not in self.before[kind]]:
                try:
                    data.remove(idblock)
                except (ReferenceError, RuntimeError):  # already freed with its user
                    pass


def select_only(context, obj) -> None:
    """Make ``obj`` the only selected object and the active one."""
    for other in context.view_layer.objects:
        other.select_set(False)
    obj.select_set(True)
    context.view_layer.objects.active = obj
