"""Per-object settings of an imported RTI plane (Object.pnrelight)."""
from __future__ import annotations

import bpy

from . import plane


def _is_drivable_light(_self, obj) -> bool:
    return obj.type == "LIGHT" and obj.data.type in plane.DRIVABLE_LIGHT_TYPES


def _light_changed(self, _context):
    obj = self.id_data
    if self.light is None or obj.type != "MESH":
        return
    for mat in obj.data.materials:
        if mat is not None and mat.node_tree and "Light Direction" in mat.node_tree.nodes:
            plane.wire_light(mat, self.light)


def _linearize_changed(self, _context):
    obj = self.id_data
    for mat in getattr(obj.data, "materials", []):
        if mat is not None and mat.node_tree and "sRGB to Linear" in mat.node_tree.nodes:
            mat.node_tree.nodes["sRGB to Linear"].inputs["Factor"].default_value = 1.0 if self.linearize else 0.0


class PNRELIGHT_PG_plane(bpy.types.PropertyGroup):
    is_rti: bpy.props.BoolProperty(default=False)
    light: bpy.props.PointerProperty(
        type=bpy.types.Object, name="Light", poll=_is_drivable_light, update=_light_changed,
        description="Light driving the relighting: a sun gives its direction, point/spot/area lights the direction from each surface point")
    linearize: bpy.props.BoolProperty(
        name="sRGB to Linear", default=False, update=_linearize_changed,
        description="Treat the model's values as sRGB-encoded pixels and emit linear light: with the Standard view "
                    "transform the plane then shows the values an RTI viewer shows (off: emit the values as they are, "
                    "for the Raw view transform)")
    folder: bpy.props.StringProperty(name="Folder")
    kind: bpy.props.StringProperty(name="Type")
    colorspace: bpy.props.StringProperty(name="Colour space")
    terms: bpy.props.IntProperty(name="Terms")
    label: bpy.props.StringProperty(name="Model")
    source: bpy.props.StringProperty(name="Coefficients")
    pixels: bpy.props.StringProperty(name="Pixels")
    size: bpy.props.StringProperty(name="Size")
    group: bpy.props.StringProperty(name="Node group")
    node_count: bpy.props.IntProperty(name="Nodes")
    import_seconds: bpy.props.FloatProperty(name="Import time", unit="TIME_ABSOLUTE")


classes = (PNRELIGHT_PG_plane,)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Object.pnrelight = bpy.props.PointerProperty(type=PNRELIGHT_PG_plane)


def unregister():
    del bpy.types.Object.pnrelight
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
