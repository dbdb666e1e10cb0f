"""Add-on preferences: the import defaults (Edit › Preferences › Add-ons › pnrelight RTI Planes)."""
from __future__ import annotations

import bpy


class PNRELIGHT_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    interpolation: bpy.props.EnumProperty(
        name="Interpolation", default="Linear",
        items=[("Linear", "Linear", "interpolate coefficients between texels"),
               ("Closest", "Closest", "one texel per image pixel, exactly")])
    linearize: bpy.props.BoolProperty(
        name="sRGB to Linear", default=False,
        description="New planes emit linear light from the model's sRGB pixel values (for the Standard view transform)")

    def draw(self, _context):
        self.layout.prop(self, "interpolation")
        self.layout.prop(self, "linearize")


def get(context) -> PNRELIGHT_AP_preferences | None:
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon else None


classes = (PNRELIGHT_AP_preferences,)

register, unregister = bpy.utils.register_classes_factory(classes)
