"""Sidebar panel (3D View › N › RTI): driving light, gain, basis info of the active RTI plane."""
from __future__ import annotations

import bpy


class PNRELIGHT_PT_plane(bpy.types.Panel):
    bl_label = "RTI Plane"
    bl_idname = "PNRELIGHT_PT_plane"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "RTI"

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        return obj is not None and obj.type == "MESH" and obj.pnrelight.is_rti

    def draw(self, context):
        obj = context.active_object
        s = obj.pnrelight
        layout = self.layout
        layout.prop(s, "light")
        mat = obj.active_material
        if mat and mat.node_tree and "Emission" in mat.node_tree.nodes:
            layout.prop(mat.node_tree.nodes["Emission"].inputs["Strength"], "default_value", text="Gain")
        layout.prop(s, "linearize")
        box = layout.box()
        box.label(text=f"Model: {s.label}")
        if s.kind == "neural":
            box.label(text=f"Decoder: {s.terms} latents + light (lx, ly), ELU, {s.node_count} nodes")
        else:
            basis = "PTM 1, lx, ly, lx², lx·ly, ly²" if s.kind == "ptm" else f"HSH order {int(round(s.terms ** 0.5)) - 1}"
            box.label(text=f"Basis: {basis} ({s.terms} terms, {s.colorspace})")
        box.label(text=f"Coefficients: {s.source}")
        box.label(text=f"Pixels: {s.pixels}")
        box.label(text=f"Size: {s.size}")
        box.label(text=f"Node group: {s.group}")
        box.label(text=f"Import: {s.import_seconds:.2f} s, {s.node_count} nodes")
        box.label(text=f"Folder: {s.folder}")


classes = (PNRELIGHT_PT_plane,)

register, unregister = bpy.utils.register_classes_factory(classes)
