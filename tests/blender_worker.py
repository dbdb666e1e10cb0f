"""Blender side of tests/test_blender_addon.py (run in a subprocess: bpy loads once per process).

``python tests/blender_worker.py job.json`` installs the built extension into a fresh user
folder (``BLENDER_USER_RESOURCES``), hides this checkout's editable ``pnrelight`` and Pillow so
only the wheel bundled in the extension and Blender's own Python are used, then runs the
job's steps and writes ``results.json`` and renders (``.npy``, top row first) to ``out``.

Job: {"zip": path, "out": dir, "size": [W, H], "models": {key: folder}, "steps": [...]}; steps:
  {"op": "import", "model": key, "interpolation": "Closest", "via": "files"?, "as": key2?, "auto_light": bool?}
                                              (models: folders, or .ptm/.rti files)
  {"op": "delete_lights"}
  {"op": "linearize", "model": key, "on": bool}, {"op": "save_reload"}, {"op": "light_type", "type": "SPOT"}
  {"op": "panel", "model": key}, {"op": "disable"}
  {"op": "camera", "location": [..], "look_at": [..], "size": [W, H]}, {"op": "render_png", "models": [keys], "name": "x.png"}
  {"op": "sun", "dir": [x, y, z]}             point the sun (+Z axis) along dir
  {"op": "point", "location": [x, y, z]}      use / move a point light
  {"op": "plane_rotation_z", "model": key, "deg": a}
  {"op": "render", "model": key, "name": str}
  {"op": "bad", "path": folder, "name": str}  import that must fail
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


class RecordingLayout:
    """Stands in for a UILayout: records labels and property names drawn by a panel."""

    def __init__(self, items=None):
        self.items = [] if items is None else items

    def prop(self, data, name, text=None, **_):
        self.items.append(f"prop:{text or name}={getattr(data, name)!r}")

    def label(self, text="", **_):
        self.items.append(f"label:{text}")

    def box(self):
        return RecordingLayout(self.items)

    column = row = box


def setup_scene(width: int, height: int):
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 1
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.use_denoising = False
    scene.cycles.pixel_filter_type = "BOX"
    scene.cycles.filter_width = 0.01  # sample the pixel centre: one texel per pixel, no AA jitter
    scene.cycles.seed = 0
    scene.render.threads_mode = "FIXED"
    scene.render.threads = 2
    scene.render.film_transparent = False
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    scene.view_settings.view_transform = "Raw"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    scene.render.image_settings.file_format = "OPEN_EXR"
    scene.render.image_settings.color_depth = "32"
    world = bpy.data.worlds.new("black")
    world.color = (0.0, 0.0, 0.0)
    if world.node_tree is not None and "Background" in world.node_tree.nodes:
        world.node_tree.nodes["Background"].inputs["Color"].default_value = (0, 0, 0, 1)
    scene.world = world
    cam_data = bpy.data.cameras.new("cam")
    cam_data.type = "ORTHO"
    cam_data.ortho_scale = 1.0
    cam = bpy.data.objects.new("cam", cam_data)
    scene.collection.objects.link(cam)
    cam.location = (0.0, 0.0, 3.0)
    scene.camera = cam
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    scene.collection.objects.link(sun)
    sun.location = (0.0, 0.0, 2.0)
    return scene, cam, sun


def render_to_array(path: Path) -> np.ndarray:
    scene = bpy.context.scene
    scene.render.filepath = str(path.with_suffix(".exr"))
    bpy.ops.render.render(write_still=True)
    img = bpy.data.images.load(str(path.with_suffix(".exr")))
    w, h = img.size
    buf = np.empty(w * h * 4, np.float32)
    img.pixels.foreach_get(buf)
    bpy.data.images.remove(img)
    arr = buf.reshape(h, w, 4)[::-1, :, :3].copy()
    np.save(path.with_suffix(".npy"), arr)
    path.with_suffix(".exr").unlink()
    return arr


def datablock_counts() -> dict:
    return {k: len(getattr(bpy.data, k)) for k in ("objects", "meshes", "materials", "images", "node_groups", "lights")}


def main(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    results = {"renders": {}, "imports": {}, "bad": {}, "drivers": []}

    bpy.ops.wm.read_factory_settings(use_empty=True)
    t0 = time.perf_counter()
    status = bpy.ops.extensions.package_install_files(filepath=job["zip"], repo="user_default", enable_on_install=True)
    results["install"] = {"status": sorted(status), "seconds": time.perf_counter() - t0}
    import pnrelight

    results["pnrelight_file"] = pnrelight.__file__
    results["addons"] = list(bpy.context.preferences.addons.keys())
    results["blender"] = bpy.app.version_string
    prefs = bpy.context.preferences.addons["bl_ext.user_default.pnrelight"].preferences
    results["preferences"] = {"interpolation": prefs.interpolation, "linearize": prefs.linearize}
    # Record what the operator's execute returns (bpy.ops raises instead when it reports an ERROR).
    op_cls = sys.modules["bl_ext.user_default.pnrelight.operators"].PNRELIGHT_OT_import_rti
    returned = []
    original_execute = op_cls.execute

    def execute(self, context):
        result = original_execute(self, context)
        returned.append(sorted(result))
        return result

    op_cls.execute = execute

    scene, cam, sun = setup_scene(*job["size"])
    point = None
    objects = {}
    for step in job["steps"]:
        op = step["op"]
        if op == "import":
            before = set(bpy.data.objects.keys())
            t0 = time.perf_counter()
            folder = Path(job["models"][step["model"]])
            target = folder if folder.is_file() else folder / "info.json"  # a .ptm/.rti file, or a folder's info.json
            options = {"interpolation": step.get("interpolation", "Closest")}
            if not step.get("auto_light"):
                options["light_name"] = sun.name
            if step.get("via") == "files":  # how the FileHandler (drag and drop) calls it
                res = bpy.ops.import_scene.pnrelight_rti("EXEC_DEFAULT", directory=str(target.parent),
                                                         files=[{"name": target.name}], **options)
            else:
                res = bpy.ops.import_scene.pnrelight_rti(filepath=str(target), **options)
            seconds = time.perf_counter() - t0
            obj = bpy.context.view_layer.objects.active
            s = obj.pnrelight
            key = step.get("as", step["model"])
            objects[key] = obj
            obj.hide_render = True
            mat = obj.active_material
            for fc in mat.node_tree.animation_data.drivers:
                results["drivers"].append({"model": key, "path": fc.data_path, "index": fc.array_index,
                                           "expression": fc.driver.expression,
                                           "simple": bool(fc.driver.is_simple_expression), "valid": bool(fc.driver.is_valid)})
            results["imports"][key] = {
                "status": sorted(res), "seconds": seconds, "node_count": s.node_count, "group": s.group, "name": obj.name,
                "label": s.label, "source": s.source, "dimensions": list(obj.dimensions),
                "new_objects": sorted(set(bpy.data.objects.keys()) - before), "light": s.light.name,
                "light_type": s.light.data.type}
        elif op == "sun":
            sun.rotation_euler = Vector((0.0, 0.0, 1.0)).rotation_difference(Vector(step["dir"])).to_euler()
        elif op == "point":
            if point is None:
                point = bpy.data.objects.new("Point", bpy.data.lights.new("Point", "POINT"))
                point.data.shadow_soft_size = 0.0
                point.visible_camera = False
                scene.collection.objects.link(point)
                for obj in objects.values():
                    obj.pnrelight.light = point  # the panel's light picker: rewires the drivers
            point.location = step["location"]
        elif op == "use_sun":
            for obj in objects.values():
                obj.pnrelight.light = sun
        elif op == "save_reload":  # the .blend keeps textures (packed), groups and drivers
            names = {k: o.name for k, o in objects.items()}
            path = str(out / "scene.blend")
            bpy.ops.wm.save_as_mainfile(filepath=path)
            bpy.ops.wm.open_mainfile(filepath=path)
            scene = bpy.context.scene
            objects = {k: bpy.data.objects[n] for k, n in names.items()}
            sun, cam = bpy.data.objects["Sun"], bpy.data.objects["cam"]
            point = bpy.data.objects.get("Point")
        elif op == "delete_lights":
            for obj in [o for o in scene.objects if o.type == "LIGHT"]:
                bpy.data.objects.remove(obj)
            sun = point = None
        elif op == "light_type":  # change the driving light's type in place (the Is Sun driver follows)
            point.data.type = step["type"]
        elif op == "panel":  # draw the sidebar panel into a recording layout
            bpy.context.view_layer.objects.active = objects[step["model"]]
            panel_cls = sys.modules["bl_ext.user_default.pnrelight.panel"].PNRELIGHT_PT_plane
            layout = RecordingLayout()
            assert panel_cls.poll(bpy.context)
            panel_cls.draw(type("P", (), {"layout": layout})(), bpy.context)
            results.setdefault("panel", {})[step["model"]] = layout.items
        elif op == "disable":
            bpy.ops.preferences.addon_disable(module="bl_ext.user_default.pnrelight")
            results["disabled"] = {"object_property_gone": not hasattr(bpy.types.Object, "pnrelight"),
                                   "operator_gone": not hasattr(bpy.types, "IMPORT_SCENE_OT_pnrelight_rti")}
        elif op == "linearize":
            objects[step["model"]].pnrelight.linearize = step["on"]
        elif op == "camera":  # a perspective view for pictures
            cam.data.type = "PERSP"
            cam.data.lens = step.get("lens", 50.0)
            cam.location = step["location"]
            cam.rotation_euler = (Vector(step["look_at"]) - Vector(step["location"])).to_track_quat("-Z", "Y").to_euler()
            scene.render.resolution_x, scene.render.resolution_y = step["size"]
            scene.cycles.samples = step.get("samples", 16)
            scene.cycles.filter_width = 1.5
            scene.render.image_settings.file_format = "PNG"
            scene.render.image_settings.color_depth = "8"
            scene.view_settings.view_transform = step.get("view_transform", "Standard")
        elif op == "render_png":
            for key, obj in objects.items():
                obj.hide_render = key not in step["models"]
            scene.render.filepath = str(out / step["name"])
            bpy.ops.render.render(write_still=True)
        elif op == "plane_rotation_z":
            objects[step["model"]].rotation_euler = (0.0, 0.0, np.radians(step["deg"]))
        elif op == "render":
            for key, obj in objects.items():
                obj.hide_render = key != step["model"]
            t0 = time.perf_counter()
            render_to_array(out / step["name"])
            results["renders"][step["name"]] = {"seconds": time.perf_counter() - t0}
        elif op == "bad":
            before = datablock_counts()
            returned.clear()
            try:
                res = bpy.ops.import_scene.pnrelight_rti(filepath=step["path"], light_name=sun.name)
                outcome = {"status": sorted(res), "error": None}
            except RuntimeError as exc:  # an ERROR report makes bpy.ops raise with the message
                outcome = {"status": ["RuntimeError"], "error": str(exc)}
            outcome["returned"] = returned[-1] if returned else None
            outcome["before"], outcome["after"] = before, datablock_counts()
            results["bad"][step["name"]] = outcome
        else:
            raise ValueError(f"unknown step {op}")
    (out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
