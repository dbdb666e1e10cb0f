"""What every importer and operator of the add-on shares: nothing half-created, and the selection after."""
from __future__ import annotations

from pathlib import Path

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


class FileImport:
    """Mixin of the add-on's import operators (ImportHelper with ``directory`` and ``files``): the files
    picked in the browser or dropped on the viewport, each imported in turn."""

    def paths(self) -> list[Path]:
        if self.files and self.directory and any(f.name for f in self.files):
            return [Path(self.directory) / f.name for f in self.files if f.name]
        return [Path(self.filepath or self.directory)]

    def import_each(self, make) -> tuple[list, set | None]:
        """``make(path)`` for every path; the first failure is one ERROR line and stops (``make`` removed
        what it had made). Returns (what was made, None), or (what was made, the operator's result)."""
        from pnrelight.errors import InputError

        made = []
        for path in self.paths():
            try:
                made.append(make(path))
            except InputError as exc:
                self.report({"ERROR"}, str(exc))
                return made, ({"CANCELLED"} if not made else {"FINISHED"})
            except Exception as exc:  # noqa: BLE001 - never leave a half-built object behind
                self.report({"ERROR"}, f"could not import {path}: {type(exc).__name__}: {exc}")
                return made, ({"CANCELLED"} if not made else {"FINISHED"})
        return made, None


class ViewportDrop:
    """Mixin of the add-on's FileHandlers: files are dropped on the 3D viewport."""

    @classmethod
    def poll_drop(cls, context):
        return context.area is not None and context.area.type == "VIEW_3D"
