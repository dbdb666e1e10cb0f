"""Blender add-on, relightable avatars: import time, node count, render times and the docs picture.

    .venv/bin/python benchmarks/blender_avatar_bench.py [--avatar DIR] [--texture-size 512] [--samples 32] [--size 384] [--no-picture] [--no-denoise]

Builds the astronaut's avatar (skimage.data.astronaut(), ``pnrelight avatar``; or takes --avatar), builds
and installs the extension in a fresh Blender user folder, imports the avatar with every option
(subsurface on, match photo lighting, camera from photo, light stage), renders it with Cycles on the CPU
and prints a table; writes benchmarks/results/blender_avatar.json and (unless --no-picture)
docs/images/blender_avatar.png: the photo, the head under the photo's lighting, under two lights (a warm
key sun and a cool rim sun), under the light stage (all 156 suns on) and one light stage frame (OLAT).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_common import write_result  # noqa: E402 - benchmarks/ is on sys.path when run as a script

import numpy as np

REPO = Path(__file__).resolve().parent.parent
ZOOM = 2.2  # the picture's camera: the photo camera, this much longer lens, centred on the head

# Runs inside Blender's Python (a subprocess): only the extension's bundled wheel, no Pillow.
_WORKER = r'''
import json, sys, time
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__]
sys.path_hooks[:] = [h for h in sys.path_hooks if "editable" not in getattr(h, "__module__", "")]
sys.modules["PIL"] = None
import bpy, numpy as np
from mathutils import Vector
job = json.loads(open(sys.argv[1]).read())
out = job["out"]
res = {"renders": {}}
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.extensions.package_install_files(filepath=job["zip"], repo="user_default", enable_on_install=True)
scene = bpy.context.scene
t0 = time.perf_counter()
bpy.ops.import_scene.pnrelight_avatar(filepath=job["avatar"] + "/avatar.json", texture_size=job["texture_size"],
                                      subsurface=True, match_photo_lighting=True, camera_from_photo=True, light_stage=True)
res["import_call_s"] = time.perf_counter() - t0
obj = bpy.data.objects[job["name"]]
s = obj.pnrelight_avatar
res.update(import_s=s.import_seconds, nodes=s.node_count, texture_size=s.texture_size, faces=len(obj.data.polygons),
           shape_keys=len(obj.data.shape_keys.key_blocks) - 1, materials=[m.name for m in obj.data.materials],
           subsurface_weight=s.subsurface_weight, subsurface_radius_mm=list(s.sss_radius))
stage = next(o for o in bpy.data.objects if "pnrelight_stage" in o.keys())
stage_lights = [c for c in stage.children if c.type == "LIGHT"]
res["stage_lights"] = len(stage_lights)
cam = scene.camera
cam.data.lens *= job["zoom"]
cam.data.shift_x, cam.data.shift_y = job["shift"]
c = scene.cycles
scene.render.engine = "CYCLES"
c.device, c.samples, c.seed = "CPU", job["samples"], 0
c.use_denoising = job["denoise"]  # a picture, not a measurement: subsurface noise denoised (OpenImageDenoise)
scene.render.threads_mode, scene.render.threads = "FIXED", max(1, job["threads"])
scene.render.resolution_x = scene.render.resolution_y = job["size"]
scene.render.resolution_percentage = 100
scene.render.film_transparent = False
scene.view_settings.view_transform, scene.view_settings.look = "Standard", "None"
scene.render.image_settings.file_format, scene.render.image_settings.color_depth = "PNG", "8"
def render(name):
    scene.render.filepath = f"{out}/{name}.png"
    t = time.perf_counter()
    bpy.ops.render.render(write_still=True)
    res["renders"][name] = time.perf_counter() - t
for light in stage_lights:
    light.hide_render = True
render("photo_light")
black = bpy.data.worlds.new("black")
if black.node_tree is None:
    black.use_nodes = True
bg = next(n for n in black.node_tree.nodes if n.type == "BACKGROUND")
bg.inputs["Strength"].default_value = 0.0
scene.world = black
suns = []
for name, d, energy, colour in (("Key", (-0.6, -1.0, 0.5), 3.0, (1.0, 0.85, 0.7)), ("Rim", (1.0, 0.6, 0.35), 4.0, (0.55, 0.7, 1.0))):
    sun = bpy.data.objects.new(name, bpy.data.lights.new(name, "SUN"))
    scene.collection.objects.link(sun)
    sun.data.energy, sun.data.color, sun.data.angle = energy, colour, 0.05
    sun.rotation_euler = Vector((0.0, 0.0, 1.0)).rotation_difference(Vector(d)).to_euler()
    suns.append(sun)
render("two_lights")
for sun in suns:
    sun.hide_render = True
for light in stage_lights:
    light.hide_render = False
    light.data.energy = job["stage_strength"]
render("light_stage")
front = max(stage_lights, key=lambda o: (o.matrix_world.translation - stage.matrix_world.translation).normalized().dot(
    Vector((0.5, -0.8, 0.35)).normalized()))  # the stage light nearest a key light's place
for light in stage_lights:
    light.hide_render = light is not front
front.data.energy = 3.0
render("olat_frame")
res["olat_light"] = front.name
open(out + "/results.json", "w").write(json.dumps(res, indent=1))
'''


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--avatar", type=Path, help="an avatar folder (default: build the astronaut's)")
    parser.add_argument("--texture-size", type=int, default=512)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--size", type=int, default=384, help="pixels of each square render")
    parser.add_argument("--no-picture", action="store_true")
    parser.add_argument("--no-denoise", action="store_true", help="render times without Cycles' denoiser")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="pnrelight_blender_avatar_"))
    try:
        return _run(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run(args, root: Path) -> int:
    from pnrelight.avatar.folder import photo_intrinsics, read_avatar_folder
    from pnrelight.imageio import read_image, write_image

    avatar = args.avatar
    if avatar is None:
        from skimage import data

        photo = write_image(root / "astronaut.png", data.astronaut())
        avatar = root / "astronaut_avatar"
        run = subprocess.run([sys.executable, "-m", "pnrelight_cli", "--no-progress", "avatar", str(photo), "-o", str(avatar),
                              "--texture-size", str(args.texture_size)], capture_output=True, text=True)
        if run.returncode:
            print(run.stderr[-2000:])
            return 1
    av = read_avatar_folder(avatar)
    build = subprocess.run([sys.executable, str(REPO / "blender_addon" / "build.py"), "--output-dir", str(root / "dist")],
                           capture_output=True, text=True)
    if build.returncode:
        print(build.stdout, build.stderr)
        return 1
    # centre the picture on the head: where the model origin projects in the photo
    K = photo_intrinsics(av)
    p = av.translation
    u, v = K[0, 2] + K[0, 0] * p[0] / -p[2], K[1, 2] - K[1, 1] * p[1] / -p[2]
    w, h = av.image_size
    big = max(w, h)
    shift = [ZOOM * (u - K[0, 2]) / big, -ZOOM * (v - K[1, 2]) / big]
    out = root / "out"
    out.mkdir()
    job = {"zip": str(next((root / "dist").glob("pnrelight-*.zip"))), "avatar": str(av.folder), "name": av.folder.name,
           "out": str(out), "texture_size": "FULL", "samples": args.samples, "size": args.size, "zoom": ZOOM, "shift": shift,
           "threads": min(2, os.cpu_count() or 1), "stage_strength": 0.04, "denoise": not args.no_denoise}
    (root / "job.json").write_text(json.dumps(job))
    (root / "worker.py").write_text(_WORKER)
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(root / "blender_user")}
    env.pop("PYTHONPATH", None)
    run = subprocess.run([sys.executable, str(root / "worker.py"), str(root / "job.json")], capture_output=True, text=True, env=env)
    if run.returncode:
        print(run.stdout[-3000:], run.stderr[-3000:])
        return 1
    res = json.loads((out / "results.json").read_text())
    res.update(avatar=str(av.folder), texture_size_arg=args.texture_size, samples=args.samples, size=args.size,
               blender="5.0.1 (bpy)", device="Cycles CPU, 2 threads", denoise=job["denoise"])
    print(f"{'avatar':<28}{'faces':>8}{'keys':>6}{'nodes':>7}{'import':>9}")
    print(f"{av.folder.name:<28}{res['faces']:>8}{res['shape_keys']:>6}{res['nodes']:>7}{res['import_s']:>8.2f}s")
    print(f"(import with photo world, camera and a {res['stage_lights']}-light stage: {res['import_call_s']:.2f} s)")
    print(f"{'render (' + str(args.size) + ' px, ' + str(args.samples) + ' samples)':<40}{'seconds':>8}")
    for name, sec in res["renders"].items():
        print(f"{name:<40}{sec:>8.1f}")
    write_result(REPO / "benchmarks" / "results" / "blender_avatar.json", res)
    if not args.no_picture and av.photo is not None:
        photo = read_image(av.photo)[..., :3]
        # the photo, cropped to the picture's view (same centre and zoom) and resized to the render size
        half = big / (2 * ZOOM)
        r0, c0 = int(round(v - half)), int(round(u - half))
        crop = np.pad(photo, ((big, big), (big, big), (0, 0)), mode="edge")[r0 + big:r0 + big + int(2 * half),
                                                                              c0 + big:c0 + big + int(2 * half)]
        idx = (np.arange(args.size) * crop.shape[0] / args.size).astype(int)
        tiles = [crop[idx][:, idx]] + [read_image(out / f"{n}.png")[..., :3]
                                       for n in ("photo_light", "two_lights", "light_stage", "olat_frame")]
        gap = np.ones((args.size, 6, 3), np.float32)
        row = np.concatenate([x for t in tiles for x in (t, gap)][:-1], axis=1)
        write_image(REPO / "docs" / "images" / "blender_avatar.png", row)
        print("wrote docs/images/blender_avatar.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
