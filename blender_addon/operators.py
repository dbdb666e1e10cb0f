"""File › Import › RTI Plane (pnrelight), and drag-and-drop of a model's info.json or a .ptm/.rti file."""
from __future__ import annotations


import bpy
from bpy_extras.io_utils import ImportHelper

from . import plane, preferences
from .datablocks import FileImport, ViewportDrop


class PNRELIGHT_OT_import_rti(FileImport, bpy.types.Operator, ImportHelper):
    """Import an RTI model folder (PTM, HSH, NeuralRTI) or an RTIViewer .ptm/.rti file as a relightable plane"""

    bl_idname = "import_scene.pnrelight_rti"
    bl_label = "Import RTI Plane"
    bl_options = {"REGISTER", "UNDO", "PRESET"}

    filename_ext = ".json"
    filter_glob: bpy.props.StringProperty(default="*.json;*.ptm;*.rti", options={"HIDDEN"})
    directory: bpy.props.StringProperty(subtype="DIR_PATH", options={"SKIP_SAVE", "HIDDEN"})
    files: bpy.props.CollectionProperty(type=bpy.types.OperatorFileListElement, options={"SKIP_SAVE", "HIDDEN"})

    source: bpy.props.EnumProperty(
        name="Coefficients",
        items=[("AUTO", "Exact when available", "coefficients.npy of pnrelight folders, else the 8-bit planes"),
               ("PLANES", "8-bit planes", "the JPEG planes, as a web viewer sees them")],
        default="AUTO")
    interpolation: bpy.props.EnumProperty(
        name="Interpolation",
        items=[("Linear", "Linear", "interpolate coefficients between texels"),
               ("Closest", "Closest", "one texel per image pixel, exactly")],
        default="Linear")
    gain: bpy.props.FloatProperty(name="Gain", default=1.0, min=0.0, soft_max=8.0,
                                  description="Emission strength: the rendered value is gain times the model's pixel value")
    linearize: bpy.props.BoolProperty(
        name="sRGB to Linear", default=False,
        description="Emit linear light from the model's sRGB pixel values (for the Standard view transform); "
                    "off emits the values as they are (for the Raw view transform)")
    light_name: bpy.props.StringProperty(
        name="Light", default="",
        description="Light object driving the plane (empty: the nearest sun/point light, else a new sun)")

    def execute(self, context):
        light = None
        if self.light_name:
            light = bpy.data.objects.get(self.light_name)
            if light is None or light.type != "LIGHT" or light.data.type not in plane.DRIVABLE_LIGHT_TYPES:
                self.report({"ERROR"}, f"no sun, point, spot or area light named {self.light_name!r} (pick a light object)")
                return {"CANCELLED"}
        imported, failed = self.import_each(lambda path: plane.import_plane(
            context, path, source=self.source, interpolation=self.interpolation, gain=self.gain, linearize=self.linearize,
            light=light))
        if failed is not None:
            return failed
        for obj in imported:
            s = obj.pnrelight
            self.report({"INFO"}, f"imported {obj.name}: {s.label}, {s.pixels} px, {s.node_count} nodes, {s.import_seconds:.2f} s")
        return {"FINISHED"}

    def invoke(self, context, event):
        prefs = preferences.get(context)
        if prefs is not None:  # the user's defaults, unless the caller set the option
            for name in ("interpolation", "linearize"):
                if not self.properties.is_property_set(name):
                    setattr(self, name, getattr(prefs, name))
        if self.directory and self.files:  # dropped on the viewport through the FileHandler
            return self.invoke_popup(context)
        return super().invoke(context, event)


class PNRELIGHT_FH_rti(ViewportDrop, bpy.types.FileHandler):
    bl_idname = "PNRELIGHT_FH_rti_plane"
    bl_label = "RTI Plane (pnrelight)"
    bl_import_operator = "import_scene.pnrelight_rti"
    bl_file_extensions = ".json;.ptm;.rti"


def menu_import(self, _context):
    self.layout.operator(PNRELIGHT_OT_import_rti.bl_idname, text="RTI Plane (pnrelight)")


classes = (PNRELIGHT_OT_import_rti, PNRELIGHT_FH_rti)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.TOPBAR_MT_file_import.append(menu_import)


def unregister():
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
