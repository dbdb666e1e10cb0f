"""File › Import › Relightable Avatar (pnrelight): the avatars of ``pnrelight avatar`` as a Principled BSDF
head that every Blender light and world relights, plus its sidebar panel (3D View › N › Avatar).

Thin host code: the folder is read and checked, and the photo's light, camera, subsurface and
expression groups are computed, by ``pnrelight.avatar.folder`` (conventions there); here they
become Blender objects. The mesh comes from Blender's own glTF importer (avatar.glb: metres, the
53 expression morph targets as shape keys, +Z up, facing -Y).
"""
from __future__ import annotations

import time
from pathlib import Path

import bpy
import numpy as np
from bpy_extras.io_utils import ImportHelper
from mathutils import Matrix
from pnrelight.errors import InputError  # bad input: reported as an ERROR, nothing created
from pnrelight.lightstage.layouts import node_tree

from . import lightstage
from .datablocks import Created, FileImport, ViewportDrop, select_only

FITTED_KEY = "pnrelight_fitted_expression"  # object custom property: {shape key: fitted weight}
PARTS = ("Skin", "Eyes", "Teeth")  # material slots, in uv_parts' label order
EYE_ROUGHNESS = 0.1  # the wet cornea over the painted iris: a sharp highlight whatever the texture says
TEETH_SUBSURFACE = 0.5  # of the skin's weight (enamel is less translucent than skin)
F0_PER_LEVEL = 0.08  # Principled BSDF: F0 = F0(IOR 1.5) x 2 x Specular IOR Level = 0.08 x level
TEXTURE_SIZES = [("FULL", "Full", "The textures as the avatar folder holds them"),
                 ("2048", "2048", "At most 2048 pixels"), ("1024", "1024", "At most 1024 pixels"),
                 ("512", "512", "At most 512 pixels"), ("256", "256", "At most 256 pixels")]


# ----------------------------------------------------------------------------- import


def import_avatar(context, path, *, texture_size: str = "FULL", subsurface: bool = True, match_photo_lighting: bool = False,
                  light_stage: bool = False, camera_from_photo: bool = False, stage_layout="156"):
    """Import an avatar folder (or its avatar.json) and return the head object.

    Raises InputError for bad input; on any failure everything made so far is removed and the scene's
    settings (world, camera, resolution, view transform) are put back.
    """
    from pnrelight.avatar import folder as core

    t0 = time.perf_counter()
    av = core.read_avatar_folder(bpy.path.abspath(str(path)))
    created, saved = Created(), lightstage._Saved()
    try:
        obj = _import_mesh(context, av)
        sss = core.subsurface_from_albedo(_linear_albedo(av.textures["albedo"], max_size=64))
        materials = _build_materials(obj, av, texture_size, sss, subsurface)
        s = obj.pnrelight_avatar
        s.is_avatar = True
        s.folder = str(av.folder)
        s.photo = str(av.photo or "")
        s.model = av.model_name
        s.format_version = av.format_version
        s.texture_size = max(materials[0].node_tree.nodes["Albedo"].image.size[:])
        s.sss_radius = sss["radius"]
        # the panel's values, set without their update callbacks (the materials hold them already)
        s["subsurface"] = bool(subsurface)
        s["subsurface_weight"] = float(sss["weight"])
        if match_photo_lighting:
            _photo_world(context, av, obj, saved)
        if camera_from_photo:
            _photo_camera(context, av, obj, saved)
        if light_stage:
            lightstage.add_light_stage(context, stage_layout, target=obj, name=f"{obj.name} Light Stage")
        s.node_count = sum(len(m.node_tree.nodes) for m in materials)
        s.import_seconds = time.perf_counter() - t0
    except Exception:
        saved.restore()
        created.rollback()
        raise
    select_only(context, obj)
    return obj


def _import_mesh(context, av):
    """avatar.glb through Blender's glTF importer: the one mesh object, its glTF material removed."""
    objects = {o.as_pointer() for o in bpy.data.objects}
    materials = {m.as_pointer() for m in bpy.data.materials}
    images = {i.as_pointer() for i in bpy.data.images}
    res = bpy.ops.import_scene.gltf(filepath=str(av.glb), import_shading="NORMALS", merge_vertices=False,
                                    import_select_created_objects=False)
    if "FINISHED" not in res:
        raise InputError(f"Blender's glTF importer could not read {av.glb} (rebuild the avatar)")
    new = [o for o in bpy.data.objects if o.as_pointer() not in objects]
    meshes = [o for o in new if o.type == "MESH"]
    if len(meshes) != 1:
        raise InputError(f"{av.glb} holds {len(meshes)} meshes, expected one head (rebuild the avatar)")
    obj = meshes[0]
    if not obj.data.uv_layers:
        raise InputError(f"{av.glb} has a mesh without UVs (rebuild the avatar)")
    for o in new:  # a glTF node hierarchy, if any: the head alone, at the origin
        if o is not obj:
            bpy.data.objects.remove(o)
    obj.parent = None
    obj.matrix_world = Matrix.Identity(4)
    obj.name = obj.data.name = av.folder.name
    for m in [m for m in bpy.data.materials if m.as_pointer() not in materials]:
        bpy.data.materials.remove(m)
    for i in [i for i in bpy.data.images if i.as_pointer() not in images and i.users == 0]:
        bpy.data.images.remove(i)
    keys = obj.data.shape_keys
    fitted = dict(zip(av.expression_names, (float(w) for w in av.expression_weights)))
    if keys is not None:
        for kb in keys.key_blocks[1:]:
            if kb.name in fitted:  # the importer sets the weights; the range must hold them (ICT's go below 0)
                kb.slider_min = min(kb.slider_min, fitted[kb.name])
                kb.slider_max = max(kb.slider_max, fitted[kb.name])
                kb.value = fitted[kb.name]
    obj[FITTED_KEY] = fitted
    return obj


def _linear_albedo(path: Path, max_size: int) -> np.ndarray:
    """A small linear (h, w, 3) copy of the sRGB albedo file, read by Blender (no Pillow in Blender)."""
    from pnrelight.avatar.color import srgb_to_linear

    img = bpy.data.images.load(str(path), check_existing=False)
    try:
        w, h = img.size
        if max(w, h) > max_size:
            img.scale(max(1, w * max_size // max(w, h)), max(1, h * max_size // max(w, h)))
            w, h = img.size
        buf = np.empty(w * h * 4, np.float32)
        img.pixels.foreach_get(buf)  # an 8-bit image's pixels are its encoded values / 255
        return srgb_to_linear(buf.reshape(h, w, 4)[::-1, :, :3])
    finally:
        bpy.data.images.remove(img)


def _load_texture(path: Path, name: str, colorspace: str, max_size: int | None):
    img = bpy.data.images.load(str(path), check_existing=False)
    img.name = name
    img.colorspace_settings.name = colorspace
    w, h = img.size
    if w == 0 or h == 0:
        raise InputError(f"texture {path} cannot be read by Blender (rebuild the avatar)")
    if max_size and max(w, h) > max_size:
        img.scale(max(1, w * max_size // max(w, h)), max(1, h * max_size // max(w, h)))
    img.pack()  # the .blend keeps the (possibly scaled) textures
    return img


def _build_materials(obj, av, texture_size: str, sss: dict, subsurface: bool) -> list:
    """Skin, eye and teeth materials sharing the avatar's four textures; faces assigned by their UV cell."""
    from pnrelight.avatar.folder import uv_parts

    max_size = None if texture_size == "FULL" else int(texture_size)
    tag = obj.name
    images = {"albedo": _load_texture(av.textures["albedo"], f"{tag} albedo", "sRGB", max_size)}
    for key in ("normal_tangent", "specular", "roughness_metallic"):
        images[key] = _load_texture(av.textures[key], f"{tag} {key}", "Non-Color", max_size)
    me = obj.data
    n = len(me.polygons)
    uv = np.empty(len(me.loops) * 2, np.float32)
    me.uv_layers.active.data.foreach_get("uv", uv)
    start, total = np.empty(n, np.int32), np.empty(n, np.int32)
    me.polygons.foreach_get("loop_start", start)
    me.polygons.foreach_get("loop_total", total)
    order = np.argsort(start)  # each polygon's loops are contiguous: sorted by start they list every loop in order
    owner = np.repeat(order, total[order])
    centroid = np.zeros((n, 2))
    np.add.at(centroid, owner, uv.reshape(-1, 2))
    centroid /= np.maximum(total, 1)[:, None]
    parts = uv_parts(centroid, av.model_name)
    used = sorted(set(parts.tolist()) | {0})
    me.materials.clear()
    materials = []
    for label in used:
        materials.append(_material(f"{tag} {PARTS[label]}", images, PARTS[label], sss, subsurface))
        me.materials.append(materials[-1])
    slot = np.zeros(max(used) + 1, np.int32)
    slot[used] = np.arange(len(used))
    me.polygons.foreach_set("material_index", slot[parts].astype(np.int32))
    me.update()
    return materials


def _material(name: str, images: dict, part: str, sss: dict, subsurface: bool):
    mat = bpy.data.materials.new(name)
    nt = node_tree(mat, clear=True)
    nodes, links = nt.nodes, nt.links
    out = nodes.new("ShaderNodeOutputMaterial")
    out.location = (600, 0)
    bsdf = nodes.new("ShaderNodeBsdfPrincipled")
    bsdf.location = (300, 0)
    bsdf.distribution = "GGX"  # single-scattering GGX, as pnrelight.lightstage.render: one BRDF in both renderers
    bsdf.subsurface_method = "RANDOM_WALK"
    links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])

    def tex(label, key, y):
        node = nodes.new("ShaderNodeTexImage")
        node.name = node.label = label
        node.image = images[key]
        node.location = (-700, y)
        return node

    albedo = tex("Albedo", "albedo", 300)
    exposure = nodes.new("ShaderNodeMix")  # Multiply: what glTF's exporter writes as baseColorFactor
    exposure.name = exposure.label = "Albedo Exposure"
    exposure.data_type, exposure.blend_type = "RGBA", "MULTIPLY"
    exposure.inputs["Factor"].default_value = 1.0
    exposure.inputs[7].default_value = (1.0, 1.0, 1.0, 1.0)  # B (colour): 2^exposure
    exposure.location = (-300, 300)
    links.new(albedo.outputs["Color"], exposure.inputs[6])
    links.new(exposure.outputs[2], bsdf.inputs["Base Color"])

    normal = tex("Normal", "normal_tangent", -300)
    nmap = nodes.new("ShaderNodeNormalMap")
    nmap.space = "TANGENT"
    nmap.location = (-300, -300)
    links.new(normal.outputs["Color"], nmap.inputs["Color"])
    links.new(nmap.outputs["Normal"], bsdf.inputs["Normal"])

    rough = tex("Roughness Metallic", "roughness_metallic", 0)
    sep = nodes.new("ShaderNodeSeparateColor")
    sep.location = (-400, 0)
    links.new(rough.outputs["Color"], sep.inputs["Color"])
    if part == "Eyes":
        bsdf.inputs["Roughness"].default_value = EYE_ROUGHNESS
    else:
        links.new(sep.outputs["Green"], bsdf.inputs["Roughness"])

    spec = tex("Specular", "specular", -600)
    level = nodes.new("ShaderNodeMath")  # Specular IOR Level = k_s / 0.08 x strength, so F0 = k_s (IOR 1.5)
    level.name = level.label = "Specular Strength"
    level.operation = "MULTIPLY"
    level.inputs[1].default_value = 1.0 / F0_PER_LEVEL
    level.location = (-300, -600)
    links.new(spec.outputs["Color"], level.inputs[0])
    links.new(level.outputs["Value"], bsdf.inputs["Specular IOR Level"])
    bsdf.inputs["IOR"].default_value = 1.5
    bsdf.inputs["Metallic"].default_value = 0.0
    if "Diffuse Roughness" in bsdf.inputs:
        bsdf.inputs["Diffuse Roughness"].default_value = 0.0  # Lambert

    share = {"Skin": 1.0, "Teeth": TEETH_SUBSURFACE, "Eyes": 0.0}[part]
    mat["pnrelight_subsurface_share"] = share
    bsdf.inputs["Subsurface Weight"].default_value = float(sss["weight"]) * share if subsurface else 0.0
    bsdf.inputs["Subsurface Radius"].default_value = sss["radius"]
    bsdf.inputs["Subsurface Scale"].default_value = sss["scale"]
    return mat


def _photo_world(context, av, obj, saved):
    """A world whose Environment Texture is the photo's light turned into the world frame (float image)."""
    from pnrelight.avatar.folder import photo_light_map, world_light_map

    env = world_light_map(photo_light_map(av), av.rotation)  # the head sits at the origin, unrotated
    h, w = env.shape[:2]
    img = bpy.data.images.new(f"{obj.name} photo light", w, h, alpha=True, float_buffer=True)
    rgba = np.concatenate([env[::-1], np.ones((h, w, 1), np.float32)], axis=-1)  # Blender rows run bottom-up
    img.pixels.foreach_set(rgba.ravel())
    img.file_format = "OPEN_EXR"
    img.pack()
    world = bpy.data.worlds.new(f"{obj.name} photo light")
    nodes = node_tree(world, clear=True).nodes
    env_node = nodes.new("ShaderNodeTexEnvironment")
    env_node.name = env_node.label = "Photo Light"
    env_node.image = img
    env_node.interpolation = "Linear"
    env_node.location = (-300, 0)
    bg = nodes.new("ShaderNodeBackground")
    bg.location = (0, 0)
    out = nodes.new("ShaderNodeOutputWorld")
    out.location = (250, 0)
    world.node_tree.links.new(env_node.outputs["Color"], bg.inputs["Color"])
    world.node_tree.links.new(bg.outputs["Background"], out.inputs["Surface"])
    saved.set(context.scene, "world", world)
    # the photo is a display-referred sRGB picture: Standard shows the render as it compares
    saved.set(context.scene.view_settings, "view_transform", "Standard")
    saved.set(context.scene.view_settings, "look", "None")
    return world


def _photo_camera(context, av, obj, saved):
    """A camera with the photo's fitted intrinsics and pose (parented to the head), the photo as its background."""
    from pnrelight.avatar.folder import blender_camera

    c = blender_camera(av)
    data = bpy.data.cameras.new(f"{obj.name} photo camera")
    data.type = "PERSP"
    data.lens = c["lens_mm"]
    data.sensor_width = data.sensor_height = c["sensor_mm"]
    data.sensor_fit = c["sensor_fit"]
    data.shift_x, data.shift_y = c["shift_x"], c["shift_y"]
    data.clip_start = 0.01
    cam = bpy.data.objects.new(data.name, data)
    for coll in obj.users_collection:
        coll.objects.link(cam)
    cam.parent = obj
    cam.matrix_world = obj.matrix_world @ Matrix(c["matrix_world"].tolist())
    if av.photo is not None:
        bg = data.background_images.new()
        bg.image = bpy.data.images.load(str(av.photo), check_existing=True)
        bg.frame_method = "FIT"
        data.show_background_images = True
    r = context.scene.render
    saved.set(r, "resolution_x", c["resolution"][0])
    saved.set(r, "resolution_y", c["resolution"][1])
    saved.set(r, "pixel_aspect_x", 1.0)
    saved.set(r, "pixel_aspect_y", 1.0)
    saved.set(context.scene, "camera", cam)
    return cam


# ----------------------------------------------------------------------------- panel settings


def _materials(obj) -> list:
    return [m for m in getattr(obj.data, "materials", []) if m is not None and m.node_tree is not None]


def _bsdf(mat):
    return next((n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED"), None)


def _specular_changed(self, _context):
    for mat in _materials(self.id_data):
        node = mat.node_tree.nodes.get("Specular Strength")
        if node is not None:
            node.inputs[1].default_value = self.specular_strength / F0_PER_LEVEL


def _exposure_changed(self, _context):
    g = 2.0 ** self.albedo_exposure
    for mat in _materials(self.id_data):
        node = mat.node_tree.nodes.get("Albedo Exposure")
        if node is not None:
            node.inputs[7].default_value = (g, g, g, 1.0)


def _subsurface_changed(self, _context):
    for mat in _materials(self.id_data):
        bsdf = _bsdf(mat)
        if bsdf is not None:
            share = float(mat.get("pnrelight_subsurface_share", 1.0))
            bsdf.inputs["Subsurface Weight"].default_value = self.subsurface_weight * share if self.subsurface else 0.0


GROUP_ITEMS = [("eyes", "Eyes", ""), ("brows", "Brows", ""), ("jaw", "Jaw", ""), ("mouth", "Mouth", "Mouth, cheeks, nose"),
               ("other", "Other", "")]


class PNRELIGHT_PG_avatar(bpy.types.PropertyGroup):
    is_avatar: bpy.props.BoolProperty(default=False)
    specular_strength: bpy.props.FloatProperty(
        name="Specular Strength", default=1.0, min=0.0, soft_max=4.0, update=_specular_changed,
        description="Scales the avatar's specular map (F0): 1 = as estimated from the photo, 0 = no highlights")
    albedo_exposure: bpy.props.FloatProperty(
        name="Albedo Exposure", default=0.0, soft_min=-3.0, soft_max=3.0, update=_exposure_changed,
        description="Albedo times 2^exposure (stops)")
    subsurface: bpy.props.BoolProperty(name="Subsurface", default=True, update=_subsurface_changed,
                                       description="Skin subsurface scattering (random walk)")
    subsurface_weight: bpy.props.FloatProperty(
        name="Subsurface Weight", default=1.0, min=0.0, max=1.0, update=_subsurface_changed,
        description="Principled BSDF Subsurface Weight of the skin (teeth get half; set at import from the albedo)")
    expression_group: bpy.props.EnumProperty(name="Expressions", items=GROUP_ITEMS, default="jaw")
    folder: bpy.props.StringProperty(name="Folder")
    photo: bpy.props.StringProperty(name="Photo")
    model: bpy.props.StringProperty(name="Face model")
    format_version: bpy.props.IntProperty(name="Format")
    texture_size: bpy.props.IntProperty(name="Texture size")
    sss_radius: bpy.props.FloatVectorProperty(name="Subsurface radius (mm)", size=3)
    node_count: bpy.props.IntProperty(name="Nodes")
    import_seconds: bpy.props.FloatProperty(name="Import time", unit="TIME_ABSOLUTE")


# ----------------------------------------------------------------------------- operators and panel


def _active_avatar(context):
    obj = context.active_object
    return obj if obj is not None and obj.type == "MESH" and obj.pnrelight_avatar.is_avatar else None


class PNRELIGHT_OT_import_avatar(FileImport, bpy.types.Operator, ImportHelper):
    """Import a pnrelight avatar folder (its avatar.json) as a head with a Principled BSDF that Blender's lights relight"""

    bl_idname = "import_scene.pnrelight_avatar"
    bl_label = "Import Relightable Avatar"
    bl_options = {"REGISTER", "UNDO", "PRESET"}

    filename_ext = ".json"
    filter_glob: bpy.props.StringProperty(default="*.json", options={"HIDDEN"})
    directory: bpy.props.StringProperty(subtype="DIR_PATH", options={"SKIP_SAVE", "HIDDEN"})
    files: bpy.props.CollectionProperty(type=bpy.types.OperatorFileListElement, options={"SKIP_SAVE", "HIDDEN"})

    texture_size: bpy.props.EnumProperty(name="Texture Resolution", items=TEXTURE_SIZES, default="FULL")
    subsurface: bpy.props.BoolProperty(name="Subsurface", default=True,
                                       description="Skin subsurface scattering, radius and weight from the albedo")
    match_photo_lighting: bpy.props.BoolProperty(
        name="Match Photo Lighting", default=False,
        description="A world lit as the photo was (the avatar's estimated lighting), Standard view transform")
    light_stage: bpy.props.BoolProperty(name="Add Light Stage", default=False,
                                        description="A light stage (156 suns) around the head")
    camera_from_photo: bpy.props.BoolProperty(
        name="Camera from Photo", default=False,
        description="A camera with the photo's fitted lens and pose (scene resolution = the photo's), the photo as background")

    def execute(self, context):
        imported, failed = self.import_each(lambda path: import_avatar(
            context, path, texture_size=self.texture_size, subsurface=self.subsurface,
            match_photo_lighting=self.match_photo_lighting, light_stage=self.light_stage, camera_from_photo=self.camera_from_photo))
        if failed is not None:
            return failed
        for obj in imported:
            s = obj.pnrelight_avatar
            keys = obj.data.shape_keys
            self.report({"INFO"}, f"imported {obj.name}: {len(obj.data.polygons)} faces, "
                                  f"{len(keys.key_blocks) - 1 if keys else 0} shape keys, {s.node_count} nodes, {s.import_seconds:.2f} s")
        return {"FINISHED"}

    def invoke(self, context, event):
        if self.directory and self.files:  # dropped on the viewport through the FileHandler
            return self.invoke_popup(context)
        return super().invoke(context, event)


class PNRELIGHT_OT_avatar_reset_expression(bpy.types.Operator):
    """Set the expression shape keys back to the weights fitted to the photo"""

    bl_idname = "object.pnrelight_avatar_reset_expression"
    bl_label = "Reset to Photo"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return _active_avatar(context) is not None

    def execute(self, context):
        obj = _active_avatar(context)
        fitted = obj.get(FITTED_KEY)
        keys = obj.data.shape_keys
        if fitted is None or keys is None:
            self.report({"ERROR"}, f"{obj.name} has no fitted expression (re-import the avatar)")
            return {"CANCELLED"}
        fitted = fitted.to_dict()
        for kb in keys.key_blocks[1:]:
            kb.value = float(fitted.get(kb.name, 0.0))
        return {"FINISHED"}


class PNRELIGHT_FH_avatar(ViewportDrop, bpy.types.FileHandler):
    bl_idname = "PNRELIGHT_FH_avatar"
    bl_label = "Relightable Avatar (pnrelight)"
    bl_import_operator = "import_scene.pnrelight_avatar"
    bl_file_extensions = ".json"


class PNRELIGHT_PT_avatar(bpy.types.Panel):
    bl_label = "Relightable Avatar"
    bl_idname = "PNRELIGHT_PT_avatar"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Avatar"

    @classmethod
    def poll(cls, context):
        return _active_avatar(context) is not None

    def draw(self, context):
        from pnrelight.avatar.folder import expression_groups

        obj = _active_avatar(context)
        s = obj.pnrelight_avatar
        layout = self.layout
        col = layout.column()
        col.prop(s, "specular_strength")
        col.prop(s, "albedo_exposure")
        col.prop(s, "subsurface")
        col.prop(s, "subsurface_weight")
        keys = obj.data.shape_keys
        if keys is not None and len(keys.key_blocks) > 1:
            box = layout.box()
            box.prop(s, "expression_group", expand=True)
            for name in expression_groups([kb.name for kb in keys.key_blocks[1:]])[s.expression_group]:
                box.prop(keys.key_blocks[name], "value", text=name)
            box.operator(PNRELIGHT_OT_avatar_reset_expression.bl_idname, icon="LOOP_BACK")
        box = layout.box()
        box.label(text=f"Photo: {s.photo or 'not found'}")
        box.label(text=f"Face model: {s.model}, format {s.format_version}")
        box.label(text=f"Textures: {s.texture_size} px, subsurface radius "
                       f"{s.sss_radius[0]:.2g}/{s.sss_radius[1]:.2g}/{s.sss_radius[2]:.2g} mm")
        box.label(text=f"Import: {s.import_seconds:.2f} s, {s.node_count} nodes")
        box.label(text=f"Folder: {s.folder}")


def menu_import(self, _context):
    self.layout.operator(PNRELIGHT_OT_import_avatar.bl_idname, text="Relightable Avatar (pnrelight)")


classes = (PNRELIGHT_PG_avatar, PNRELIGHT_OT_import_avatar, PNRELIGHT_OT_avatar_reset_expression, PNRELIGHT_FH_avatar,
           PNRELIGHT_PT_avatar)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Object.pnrelight_avatar = bpy.props.PointerProperty(type=PNRELIGHT_PG_avatar)
    bpy.types.TOPBAR_MT_file_import.append(menu_import)


def unregister():
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)
    del bpy.types.Object.pnrelight_avatar
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
