"""Blender side of tests/test_blender_avatar.py (a subprocess: bpy loads once per process).

``python tests/blender_avatar_worker.py job.json`` installs the built extension into a fresh user
folder (``BLENDER_USER_RESOURCES``), hides this checkout's editable ``pnrelight`` and Pillow (only the
extension's bundled wheel and Blender's Python), then:

1. imports the avatar (subsurface off, match photo lighting, camera from photo) and records what it made;
2. renders with Cycles on the CPU (EXR, Raw, ``size`` = the photo's size x ``scale``, pixel-centre
   sampling): the photo-lit world (``photo_world``), Blender's default grey world (``grey_world``), then
   a black world, direct light only, under each sun of ``suns`` (Blender directions towards the light,
   strength ``sun_strength``), and under the first sun again with jawOpen = 1 (``jaw_open``);
3. "Reset to Photo", the panel, a second import (light stage, subsurface on, 256 px textures),
   glTF export of the first head, the FileHandler path (directory + files), and the ``bad`` folders.

Writes results.json and renders as .npy (top row first, linear RGB) to ``out``.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

# Only the extension's bundled wheel may provide pnrelight, and Blender has no Pillow.
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__]
sys.path_hooks[:] = [h for h in sys.path_hooks if "editable" not in getattr(h, "__module__", "")]
sys.modules["PIL"] = None

import bpy  # noqa: E402
import numpy as np  # noqa: E402
from mathutils import Vector  # noqa: E402

from blender_worker import RecordingLayout as _Layout  # noqa: E402


class RecordingLayout(_Layout):
    """Records operator buttons too."""

    def operator(self, idname, text="", **_):
        self.items.append(f"operator:{idname}")

    column = row = box = lambda self: RecordingLayout(self.items)


def datablock_counts() -> dict:
    return {k: len(getattr(bpy.data, k)) for k in ("objects", "meshes", "materials", "images", "node_groups", "lights",
                                                   "cameras", "worlds", "collections")}

ADDON = "bl_ext.user_default.pnrelight"


def render(out: Path, name: str, results: dict) -> None:
    scene = bpy.context.scene
    path = out / f"{name}.exr"
    scene.render.filepath = str(path)
    t0 = time.perf_counter()
    bpy.ops.render.render(write_still=True)
    results["render_seconds"][name] = time.perf_counter() - t0
    img = bpy.data.images.load(str(path))
    w, h = img.size
    buf = np.empty(w * h * 4, np.float32)
    img.pixels.foreach_get(buf)
    bpy.data.images.remove(img)
    np.save(out / f"{name}.npy", buf.reshape(h, w, 4)[::-1, :, :3].copy())
    path.unlink()


def main(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    res = {"render_seconds": {}, "bad": {}}
    bpy.ops.wm.read_factory_settings(use_empty=True)
    status = bpy.ops.extensions.package_install_files(filepath=job["zip"], repo="user_default", enable_on_install=True)
    import pnrelight

    res["install"] = sorted(status)
    res["pnrelight_file"] = pnrelight.__file__
    res["menu"] = any(getattr(f, "__module__", "").endswith("avatar") for f in bpy.types.TOPBAR_MT_file_import._dyn_ui_initialize())
    res["file_handler"] = hasattr(bpy.types, "PNRELIGHT_FH_avatar")
    scene = bpy.context.scene

    # 1. import
    before = datablock_counts()
    t0 = time.perf_counter()
    status = bpy.ops.import_scene.pnrelight_avatar(filepath=str(Path(job["avatar"]) / "avatar.json"), subsurface=False,
                                                   match_photo_lighting=True, camera_from_photo=True)
    obj = bpy.context.view_layer.objects.active
    s = obj.pnrelight_avatar
    me = obj.data
    co = np.empty(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3)
    keys = me.shape_keys.key_blocks
    cam = scene.camera
    res["import"] = {
        "status": sorted(status), "seconds": time.perf_counter() - t0, "import_seconds": s.import_seconds,
        "node_count": s.node_count, "name": obj.name, "vertices": len(me.vertices), "polygons": len(me.polygons),
        "uv_layers": len(me.uv_layers), "materials": [m.name for m in me.materials],
        "faces_per_material": np.bincount([p.material_index for p in me.polygons], minlength=len(me.materials)).tolist(),
        "shape_keys": [kb.name for kb in keys], "shape_key_values": [kb.value for kb in keys],
        "bbox_min": co.min(0).tolist(), "bbox_max": co.max(0).tolist(),
        "front_point": co[np.argmin(co[:, 1])].tolist(), "matrix_world": [list(r) for r in obj.matrix_world],
        "camera": {"name": cam.name, "lens": cam.data.lens, "sensor_width": cam.data.sensor_width, "sensor_fit": cam.data.sensor_fit,
                   "shift": [cam.data.shift_x, cam.data.shift_y], "matrix_world": [list(r) for r in cam.matrix_world],
                   "background_images": len(cam.data.background_images),
                   "background_image": cam.data.background_images[0].image.filepath if cam.data.background_images else ""},
        "resolution": [scene.render.resolution_x, scene.render.resolution_y], "world": scene.world.name,
        "view_transform": scene.view_settings.view_transform, "subsurface_weights": [
            next(n for n in m.node_tree.nodes if n.type == "BSDF_PRINCIPLED").inputs["Subsurface Weight"].default_value
            for m in me.materials],
        "new": {k: datablock_counts()[k] - v for k, v in before.items()},
        "texture_size": s.texture_size, "photo": s.photo}
    env = next(n for n in scene.world.node_tree.nodes if n.type == "TEX_ENVIRONMENT").image
    px = np.empty(env.size[0] * env.size[1] * 4, np.float32)
    env.pixels.foreach_get(px)
    np.save(out / "world_env.npy", px.reshape(env.size[1], env.size[0], 4)[::-1, :, :3].copy())

    # 2. renders
    scene.render.engine = "CYCLES"
    c = scene.cycles
    c.device, c.samples, c.use_adaptive_sampling, c.use_denoising, c.seed = "CPU", job["samples"], False, False, 0
    c.pixel_filter_type, c.filter_width = "BOX", 0.01  # the pixel centre, as the core's primary rays
    scene.render.threads_mode, scene.render.threads = "FIXED", 2
    scene.render.resolution_percentage = int(round(100 * job["scale"]))
    scene.render.film_transparent = False
    scene.view_settings.view_transform, scene.view_settings.look = "Raw", "None"
    scene.render.image_settings.file_format, scene.render.image_settings.color_depth = "OPEN_EXR", "32"
    c.samples = job["photo_samples"]  # world light: noise needs samples (the suns below are exact at any count)
    render(out, "photo_world", res)
    c.samples = job["samples"]
    grey = bpy.data.worlds.new("default grey")  # Blender's default world: uniform grey
    if grey.node_tree is None:
        grey.use_nodes = True
    bg = next(n for n in grey.node_tree.nodes if n.type == "BACKGROUND")
    res["grey_world_colour"] = list(bg.inputs["Color"].default_value)[:3]
    scene.world = grey
    render(out, "grey_world", res)
    black = bpy.data.worlds.new("black")
    if black.node_tree is None:
        black.use_nodes = True
    next(n for n in black.node_tree.nodes if n.type == "BACKGROUND").inputs["Strength"].default_value = 0.0
    scene.world = black
    c.max_bounces = 0  # direct light only, as the core renderer
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    scene.collection.objects.link(sun)
    sun.data.energy = job["sun_strength"]
    sun.data.angle = 0.0
    for name, d in job["suns"].items():
        sun.rotation_euler = Vector((0.0, 0.0, 1.0)).rotation_difference(Vector(d)).to_euler()
        render(out, name, res)
    first = next(iter(job["suns"].values()))
    sun.rotation_euler = Vector((0.0, 0.0, 1.0)).rotation_difference(Vector(first)).to_euler()
    keys["jawOpen"].value = 1.0
    render(out, "jaw_open", res)

    # 3. panel, reset, second import, export, drag and drop, bad input
    bpy.context.view_layer.objects.active = obj
    for kb in keys[1:]:
        kb.value = 0.5
    res["reset"] = sorted(bpy.ops.object.pnrelight_avatar_reset_expression())
    res["after_reset"] = [kb.value for kb in keys]
    panel_cls = sys.modules[f"{ADDON}.avatar"].PNRELIGHT_PT_avatar
    res["panel_poll"] = bool(panel_cls.poll(bpy.context))
    panels = {}
    for group in ("eyes", "brows", "mouth", "jaw"):
        s.expression_group = group
        layout = RecordingLayout()
        panel_cls.draw(type("P", (), {"layout": layout})(), bpy.context)
        panels[group] = layout.items
    res["panel"] = panels
    s.specular_strength = 2.0
    s.albedo_exposure = 1.0
    skin = me.materials[0].node_tree.nodes
    res["panel_effect"] = {"specular_level_scale": skin["Specular Strength"].inputs[1].default_value,
                           "albedo_gain": list(skin["Albedo Exposure"].inputs[7].default_value)[:3]}
    s.specular_strength, s.albedo_exposure = 1.0, 0.0

    t0 = time.perf_counter()
    status = bpy.ops.import_scene.pnrelight_avatar(filepath=str(Path(job["avatar"]) / "avatar.json"), light_stage=True,
                                                   texture_size="256")
    second = bpy.context.view_layer.objects.active
    stages = [o for o in bpy.data.objects if o.type == "EMPTY" and "pnrelight_stage" in o.keys()]
    res["second"] = {"status": sorted(status), "seconds": time.perf_counter() - t0, "name": second.name,
                     "texture_size": second.pnrelight_avatar.texture_size,
                     "subsurface_weights": [next(n for n in m.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
                                            .inputs["Subsurface Weight"].default_value for m in second.data.materials],
                     "subsurface_radius": list(second.pnrelight_avatar.sss_radius),
                     "stages": [{"name": st.name, "lights": len([ch for ch in st.children if ch.type == "LIGHT"]),
                                 "target": st["pnrelight_stage"]["target"], "centre": list(st.location)} for st in stages]}
    for o in bpy.context.view_layer.objects:
        o.select_set(o == obj)
    bpy.context.view_layer.objects.active = obj
    glb = out / "exported.glb"
    t0 = time.perf_counter()
    res["export"] = {"status": sorted(bpy.ops.export_scene.gltf(filepath=str(glb), export_format="GLB", use_selection=True,
                                                                export_morph=True, export_image_format="AUTO")),
                     "seconds": time.perf_counter() - t0, "path": str(glb)}
    folder = Path(job["avatar"])
    status = bpy.ops.import_scene.pnrelight_avatar("EXEC_DEFAULT", directory=str(folder), files=[{"name": "avatar.json"}])
    res["dropped"] = {"status": sorted(status), "name": bpy.context.view_layer.objects.active.name}

    for name, path in job["bad"].items():
        before = datablock_counts()
        world, cam = scene.world, scene.camera
        try:
            status = bpy.ops.import_scene.pnrelight_avatar(filepath=path, match_photo_lighting=True, camera_from_photo=True,
                                                           light_stage=True)
            outcome = {"status": sorted(status), "error": None}
        except RuntimeError as exc:  # an ERROR report makes bpy.ops raise with the message
            outcome = {"status": ["RuntimeError"], "error": str(exc)}
        outcome["before"], outcome["after"] = before, datablock_counts()
        outcome["scene_kept"] = scene.world == world and scene.camera == cam
        res["bad"][name] = outcome
    bpy.ops.preferences.addon_disable(module=ADDON)
    res["disabled"] = {"operator_gone": not hasattr(bpy.types, "IMPORT_SCENE_OT_pnrelight_avatar"),
                       "property_gone": not hasattr(bpy.types.Object, "pnrelight_avatar")}
    (out / "results.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
