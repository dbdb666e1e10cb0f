"""Blender side of the lat-long convention test (tests/test_lightstage_layouts.py), run in a subprocess.

``python tests/blender_latlong_worker.py job.json``: a Cycles scene (CPU, 1 sample, pixel-centre
rays) whose world is an Environment Texture (equirectangular, Closest) of ``job["envmap"]`` (an
OpenEXR written top row first), seen by a square perspective camera (``job["size"]`` px, 90 degree
field of view) at the origin, one render per view of ``job["views"]``:
{"rotation": 3 x 3 camera-to-world rotation (Blender frame; the camera looks down its -Z, +Y up),
"mapping_z_deg": a} where a turns a Mapping node (type Point, rotation about Z) between the
texture coordinates and the texture. Writes ``job["out"]`` (.npy, (views, size, size, 3) float32,
top row first).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import bpy  # noqa: E402
import numpy as np  # noqa: E402
from mathutils import Matrix  # noqa: E402



def setup(envmap: str, size: int, interpolation: str = "Linear"):
    scene = bpy.context.scene
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj, do_unlink=True)
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 1
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.use_denoising = False
    scene.cycles.pixel_filter_type = "BOX"
    scene.cycles.filter_width = 0.01  # the pixel-centre ray only
    scene.render.threads_mode = "FIXED"
    scene.render.threads = 1
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.view_settings.view_transform = "Raw"
    scene.view_settings.look = "None"
    scene.render.image_settings.file_format = "OPEN_EXR"
    scene.render.image_settings.color_depth = "32"

    world = bpy.data.worlds.new("latlong")
    if world.node_tree is None:  # Blender < 5 creates worlds without nodes
        world.use_nodes = True
    nodes, links = world.node_tree.nodes, world.node_tree.links
    nodes.clear()
    coord = nodes.new("ShaderNodeTexCoord")
    mapping = nodes.new("ShaderNodeMapping")
    mapping.vector_type = "POINT"
    tex = nodes.new("ShaderNodeTexEnvironment")
    tex.projection = "EQUIRECTANGULAR"
    tex.interpolation = interpolation
    image = bpy.data.images.load(envmap)
    image.colorspace_settings.name = "Non-Color"  # the stored numbers, no colour transform
    tex.image = image
    background = nodes.new("ShaderNodeBackground")
    background.inputs["Strength"].default_value = 1.0
    output = nodes.new("ShaderNodeOutputWorld")
    links.new(coord.outputs["Generated"], mapping.inputs["Vector"])
    links.new(mapping.outputs["Vector"], tex.inputs["Vector"])
    links.new(tex.outputs["Color"], background.inputs["Color"])
    links.new(background.outputs["Background"], output.inputs["Surface"])
    scene.world = world

    cam_data = bpy.data.cameras.new("cam")
    cam_data.lens_unit = "FOV"
    cam_data.sensor_fit = "HORIZONTAL"
    cam_data.angle = np.radians(90.0)
    cam = bpy.data.objects.new("cam", cam_data)
    scene.collection.objects.link(cam)
    scene.camera = cam
    return scene, cam, mapping


def main(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    size = int(job["size"])
    scene, cam, mapping = setup(job["envmap"], size, job.get("interpolation", "Linear"))
    out = Path(job["out"])
    seen = []
    for k, view in enumerate(job["views"]):
        cam.matrix_world = Matrix(view["rotation"]).to_4x4()
        mapping.inputs["Rotation"].default_value = (0.0, 0.0, np.radians(view["mapping_z_deg"]))
        path = out.with_name(f"{out.stem}_{k:02d}.exr")
        scene.render.filepath = str(path)
        bpy.ops.render.render(write_still=True)
        img = bpy.data.images.load(str(path))
        buf = np.empty(size * size * 4, np.float32)
        img.pixels.foreach_get(buf)
        seen.append(buf.reshape(size, size, 4)[::-1, :, :3].copy())  # Blender's pixels start at the bottom row
        bpy.data.images.remove(img)
    np.save(out, np.asarray(seen, np.float32))


if __name__ == "__main__":
    main(sys.argv[1])
