"""Blender side of tests/test_blender_lightstage.py (a subprocess: bpy loads once per process).

``python tests/blender_lightstage_worker.py job.json`` installs the built extension into a fresh
user folder, hides this checkout's ``pnrelight``, Pillow and scipy (Blender's Python has neither),
then: adds light stages (a preset on an object, a hemisphere of point lights, a Fibonacci sphere of
area lights at the 3D cursor, a JSON layout, a bad file); renders OLAT datasets of a white
diffuse plane under a stage of suns, point and area lights (32 x 32 px, few samples); reruns
(resume), deletes a frame and reruns, stops early (max_frames, then the modal handler with a timer
tick and Esc); and tries bad input. Writes ``results.json`` to ``job["out"]``.

Job: {"zip": path, "out": dir, "layout_json": path, "samples": n}
"""
from __future__ import annotations

import json
import os
import sys
import time
import types
from pathlib import Path

sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__]
sys.path_hooks[:] = [h for h in sys.path_hooks if "editable" not in getattr(h, "__module__", "")]
sys.modules["PIL"] = None
sys.modules["scipy"] = None  # as in Blender: the core's solid angles fall back to numpy

import bpy  # noqa: E402
from mathutils import Vector  # noqa: E402

PKG = "bl_ext.user_default.pnrelight"


def counts() -> dict:
    return {k: len(getattr(bpy.data, k)) for k in ("objects", "lights", "collections", "worlds", "images")}


def listing(root: Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()} if root.exists() else {}


def scene_state(scene) -> dict:
    r = scene.render
    return {"world": scene.world.name if scene.world else None, "camera": scene.camera.name if scene.camera else None,
            "film_transparent": r.film_transparent, "filepath": r.filepath, "format": r.image_settings.file_format,
            "depth": r.image_settings.color_depth, "engine": r.engine, "samples": scene.cycles.samples,
            "hidden_lights": sorted(o.name for o in scene.objects if o.type == "LIGHT" and o.hide_render),
            "pass_z": bpy.context.view_layer.use_pass_z, "holdout": sorted(o.name for o in scene.objects if o.is_holdout)}


def stage_record(empty) -> dict:
    lights = sorted(empty.children, key=lambda o: o["pnrelight_light"]["id"])
    centre = empty.matrix_world.translation
    return {
        "name": empty.name, "collection": empty.users_collection[0].name, "centre": list(centre),
        "props": empty["pnrelight_stage"].to_dict(),
        "lights": [{"name": o.name, "type": o.data.type, "energy": o.data.energy, "parent": o.parent.name,
                    "offset": list(o.matrix_world.translation - centre),
                    "axis": list(o.matrix_world.to_3x3() @ Vector((0.0, 0.0, 1.0))),
                    "size": (o.data.angle if o.data.type == "SUN" else 2 * o.data.shadow_soft_size if o.data.type == "POINT"
                             else o.data.size),
                    "props": o["pnrelight_light"].to_dict(), "visible_camera": o.visible_camera} for o in lights]}


def call(op, **kwargs) -> dict:
    """Run an operator; an ERROR report makes bpy.ops raise: record it."""
    before = counts()
    t0 = time.perf_counter()
    try:
        status, error = sorted(op(**kwargs)), None
    except RuntimeError as exc:
        status, error = ["RuntimeError"], str(exc)
    return {"status": status, "error": error, "seconds": time.perf_counter() - t0, "before": before, "after": counts()}


def main(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    res = {}
    bpy.ops.wm.read_factory_settings(use_empty=True)
    status = bpy.ops.extensions.package_install_files(filepath=job["zip"], repo="user_default", enable_on_install=True)
    res["install"] = sorted(status)
    import pnrelight

    res["pnrelight_file"] = pnrelight.__file__
    mod = sys.modules[f"{PKG}.lightstage"]
    res["menus"] = {"light_add": mod.menu_light_add in bpy.types.VIEW3D_MT_light_add._dyn_ui_initialize(),
                    "render": mod.menu_render in bpy.types.TOPBAR_MT_render._dyn_ui_initialize()}
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.use_denoising = False
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.seed = 0
    scene.render.threads_mode = "FIXED"
    scene.render.threads = 2
    scene.render.resolution_x = scene.render.resolution_y = 32
    scene.render.resolution_percentage = 100
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0

    # -- Add Light Stage
    add = bpy.ops.object.pnrelight_add_light_stage
    bpy.ops.mesh.primitive_plane_add(size=1.0, location=(0.3, -0.2, 0.5))
    probe = bpy.context.active_object
    probe.name = "Probe"
    probe.scale = (2.0, 1.0, 1.0)
    probe.hide_render = True
    res["add"] = {}
    res["add"]["preset"] = call(add, layout_name="156", light_type="SUN")
    res["add"]["preset"]["stage"] = stage_record(bpy.context.active_object)
    probe.select_set(True)
    bpy.context.view_layer.objects.active = probe
    res["add"]["hemisphere"] = call(add, layout_name="ico:162", hemisphere=True, light_type="POINT", strength=2.0, radius=1.2)
    res["add"]["hemisphere"]["stage"] = stage_record(bpy.context.active_object)
    for obj in bpy.context.view_layer.objects:
        obj.select_set(False)
    scene.cursor.location = (1.0, 2.0, 3.0)
    res["add"]["cursor"] = call(add, layout_name="COUNT", count=20, light_type="AREA")
    res["add"]["cursor"]["stage"] = stage_record(bpy.context.active_object)
    res["add"]["bad_file"] = call(add, layout_name="FILE", filepath=str(out / "missing.json"))
    res["add"]["no_file"] = call(add, layout_name="FILE", filepath="")

    # -- the calibration scene: a white diffuse 1 m plane facing +Z, a camera 2 m above it
    bpy.ops.mesh.primitive_plane_add(size=1.0, location=(0.0, 0.0, 0.0))
    plane = bpy.context.active_object
    plane.name = "Subject"
    mat = bpy.data.materials.new("white")
    if mat.node_tree is None:
        mat.use_nodes = True
    nodes = mat.node_tree.nodes
    nodes.clear()
    diffuse = nodes.new("ShaderNodeBsdfDiffuse")
    diffuse.inputs["Color"].default_value = (1.0, 1.0, 1.0, 1.0)
    mat.node_tree.links.new(diffuse.outputs[0], nodes.new("ShaderNodeOutputMaterial").inputs["Surface"])
    plane.data.materials.append(mat)
    # clutter in view, off the plane: not in the subject's mask; hidden from diffuse and shadow rays
    bpy.ops.mesh.primitive_cube_add(size=0.08, location=(-0.64, 0.64, 0.04))
    clutter = bpy.context.active_object
    clutter.name = "Clutter"
    clutter.visible_diffuse = clutter.visible_shadow = clutter.visible_glossy = False
    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(cam)
    cam.location = (0.0, 0.0, 2.0)
    cam.data.lens, cam.data.sensor_width = 50.0, 36.0
    scene.camera = cam
    stages = {}
    for key, light_type, radius in (("sun", "SUN", 0.0), ("point", "POINT", 1.5), ("area", "AREA", 1.5)):
        for obj in bpy.context.view_layer.objects:
            obj.select_set(False)
        plane.select_set(True)
        bpy.context.view_layer.objects.active = plane
        r = call(add, layout_name="FILE", filepath=job["layout_json"], light_type=light_type, radius=radius)
        assert r["status"] == ["FINISHED"], r
        stages[key] = bpy.context.active_object.name
        res["add"][f"json_{key}"] = {**r, "stage": stage_record(bpy.context.active_object)}

    render = bpy.ops.render.pnrelight_olat_dataset
    samples = job["samples"]
    ds = out / "ds_sun"
    state0 = scene_state(scene)
    res["runs"] = {}
    res["runs"]["first"] = call(render, directory=str(ds), stage=stages["sun"], samples=samples)
    res["state_after"] = scene_state(scene)
    res["state_before"] = state0
    res["runs"]["first"]["rendered"] = mod.LAST_RUN["rendered"]
    before = listing(ds)
    res["runs"]["again"] = call(render, directory=str(ds), stage=stages["sun"], samples=samples)
    res["runs"]["again"]["rendered"] = mod.LAST_RUN["rendered"]
    res["runs"]["again"]["unchanged"] = listing(ds) == before
    # delete one frame and its manifest row: only that frame renders again
    victim = "subjects/Subject/cam_00/olat/001.exr"
    (ds / victim).unlink()
    rows = [line for line in (ds / "manifest.jsonl").read_text().splitlines() if json.loads(line)["path"] != victim]
    (ds / "manifest.jsonl").write_text("".join(r + "\n" for r in rows))
    before = listing(ds)
    res["runs"]["resume"] = call(render, directory=str(ds), stage=stages["sun"], samples=samples)
    res["runs"]["resume"]["rendered"] = mod.LAST_RUN["rendered"]
    after = listing(ds)
    res["runs"]["resume"]["changed"] = sorted(k for k in after if before.get(k) != after[k])

    for key in ("point", "area"):
        res["runs"][key] = call(render, directory=str(out / f"ds_{key}"), stage=stages[key], samples=samples, passes=False)

    # stop early: max_frames, then the modal handler (a timer tick renders one frame, Esc stops), then finish
    stop = out / "ds_stop"
    res["runs"]["max_frames"] = call(render, directory=str(stop), stage=stages["sun"], samples=samples, max_frames=2)
    res["runs"]["max_frames"]["manifest"] = (stop / "manifest.jsonl").read_text().splitlines()
    res["runs"]["max_frames"]["files"] = sorted(listing(stop))
    run = mod.OlatRun(bpy.context, directory=str(stop), stage=stages["sun"], samples=samples)
    run.begin()
    reports = []
    op = types.SimpleNamespace(_run=run, _timer=None, _stop=False, max_frames=0,
                               report=lambda kind, msg: reports.append([sorted(kind), msg]))
    modal = []
    for etype, value in (("TIMER", "NOTHING"), ("MOUSEMOVE", "NOTHING"), ("ESC", "PRESS")):
        result = mod.modal_step(op, bpy.context, types.SimpleNamespace(type=etype, value=value))
        modal.append({"event": etype, "result": sorted(result), "rendered": run.rendered})
    res["runs"]["modal"] = {"steps": modal, "reports": reports, "manifest": (stop / "manifest.jsonl").read_text().splitlines(),
                            "files": sorted(listing(stop)), "state": scene_state(scene)}
    res["runs"]["finish"] = call(render, directory=str(stop), stage=stages["sun"], samples=samples)
    res["runs"]["finish"]["rendered"] = mod.LAST_RUN["rendered"]

    # bad input: an ERROR, CANCELLED, nothing written, the scene as it was
    bad = {}
    (out / "afile.txt").write_text("x")
    cases = {"no_stage": {"stage": "Nope"}, "not_writable": {"directory": str(out / "afile.txt" / "ds")},
             "other_samples": {"samples": samples + 1}, "relative_unsaved": {"directory": "//olat/"}}
    for name, kwargs in cases.items():
        args = {"directory": str(out / f"bad_{name}"), "stage": stages["sun"], "samples": samples, **kwargs}
        if name == "other_samples":
            args["directory"] = str(ds)
        files = listing(out)
        bad[name] = call(render, **args)
        bad[name]["files_unchanged"] = listing(out) == files
        bad[name]["state_unchanged"] = scene_state(scene) == state0
    scene.camera = None
    files = listing(out)
    bad["no_camera"] = call(render, directory=str(out / "bad_no_camera"), stage=stages["sun"], samples=samples)
    bad["no_camera"]["files_unchanged"] = listing(out) == files
    scene.camera = cam
    cam.data.type = "ORTHO"
    bad["ortho"] = call(render, directory=str(out / "bad_ortho"), stage=stages["sun"], samples=samples)
    bad["ortho"]["files_unchanged"] = listing(out) == files
    cam.data.type = "PERSP"
    for obj in bpy.context.view_layer.objects:
        obj.select_set(False)
    bpy.context.view_layer.objects.active = None
    bad["which_stage"] = call(render, directory=str(out / "bad_which"), samples=samples)  # several stages, none chosen
    res["bad"] = bad
    bpy.ops.preferences.addon_disable(module=PKG)
    res["disabled"] = {"add_gone": not hasattr(bpy.types, "OBJECT_OT_pnrelight_add_light_stage"),
                       "render_gone": not hasattr(bpy.types, "RENDER_OT_pnrelight_olat_dataset")}
    (out / "results.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main(sys.argv[1])
