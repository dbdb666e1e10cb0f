"""The Blender process of :mod:`pnrelight.lightstage.blender_olat` (needs ``bpy``; never imported by the core).

``python -m pnrelight.lightstage.blender_worker JOB.npz OUT_DIR``: builds the job's mesh, material,
camera and lights in an empty Cycles scene, renders each light alone and writes ``OUT_DIR/frames.npy``
((lights, H, W, 3) float32, top row first). Conventions: :mod:`pnrelight.lightstage.blender_olat`.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .layouts import node_tree, pose_to_blender, to_blender


def _mesh(bpy, arrays: dict):
    verts = to_blender(arrays["vertices"].astype(np.float64))
    tris = arrays["triangles"].astype(np.int64)
    mesh = bpy.data.meshes.new("subject")
    mesh.from_pydata(verts.tolist(), [], tris.tolist())
    mesh.update()
    mesh.polygons.foreach_set("use_smooth", np.ones(len(mesh.polygons), bool))
    loop_vertex = np.empty(len(mesh.loops), np.int64)
    mesh.loops.foreach_get("vertex_index", loop_vertex)
    # The core's vertex normals (not Blender's recomputed ones) shade, as in the core.
    mesh.normals_split_custom_set_from_vertices(to_blender(arrays["normals"].astype(np.float64)).tolist())
    if "uvs" in arrays:
        layer = mesh.uv_layers.new(name="UVMap")
        layer.data.foreach_set("uv", arrays["uvs"][loop_vertex].astype(np.float32).ravel())
    return mesh


def _material(bpy, arrays: dict, meta: dict):
    mat = bpy.data.materials.new("subject")
    tree = node_tree(mat, clear=True)
    nodes, links = tree.nodes, tree.links
    out = nodes.new("ShaderNodeOutputMaterial")
    bsdf = nodes.new("ShaderNodeBsdfPrincipled")
    links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])
    albedo = arrays["albedo"]
    if albedo.ndim == 3 and "uvs" in arrays:
        h, w = albedo.shape[:2]
        image = bpy.data.images.new("albedo", w, h, alpha=True, float_buffer=True)
        image.colorspace_settings.name = "Non-Color"  # the linear numbers as they are
        rgba = np.concatenate([albedo[::-1], np.ones((h, w, 1), np.float32)], axis=2)  # Blender's rows start at the bottom
        image.pixels.foreach_set(rgba.astype(np.float32).ravel())
        tex = nodes.new("ShaderNodeTexImage")
        tex.image = image
        tex.interpolation = "Linear"
        links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    else:
        colour = np.broadcast_to(np.asarray(albedo, np.float32).reshape(-1), (3,))
        bsdf.inputs["Base Color"].default_value = (*map(float, colour), 1.0)
    bsdf.inputs["Roughness"].default_value = float(meta["roughness"])
    bsdf.inputs["IOR"].default_value = 1.5  # F0 = 0.04 at "Specular IOR Level" 0.5
    bsdf.inputs["Specular IOR Level"].default_value = float(meta["specular_f0"]) / 0.08
    return mat


def _camera(bpy, Matrix, meta: dict):
    w, h = meta["size"]
    K = np.asarray(meta["K"], np.float64)
    data = bpy.data.cameras.new("camera")
    data.sensor_fit = "HORIZONTAL"
    data.sensor_width = 36.0
    data.lens = K[0, 0] * 36.0 / w
    big = max(w, h)
    data.shift_x = (w / 2.0 - K[0, 2]) / big
    data.shift_y = (K[1, 2] - h / 2.0) / big
    cam = bpy.data.objects.new("camera", data)
    cam.matrix_world = Matrix(pose_to_blender(meta["pose"]).tolist())
    return cam


def _light(bpy, Vector, spec: dict, shadows: bool, k: int):
    rgb = np.asarray(spec["rgb"], np.float64)
    energy = float(rgb.max())
    data = bpy.data.lights.new(f"light {k}", "SUN" if spec["type"] == "sun" else "POINT")
    data.energy = energy
    data.color = tuple(float(c) for c in (rgb / energy if energy > 0 else np.ones(3)))
    if spec["type"] == "sun":
        data.angle = 0.0
    else:
        data.shadow_soft_size = 0.0
    data.use_shadow = shadows
    obj = bpy.data.objects.new(f"light {k}", data)
    if spec["type"] == "sun":
        # A sun shines along its local -Z: +Z points at the light.
        obj.rotation_euler = Vector(to_blender(np.asarray(spec["direction"], np.float64))).to_track_quat("Z", "Y").to_euler()
    else:
        obj.location = tuple(to_blender(np.asarray(spec["position"], np.float64)))
    return obj


def main(job_path: str, out_dir: str) -> None:
    import bpy
    from mathutils import Matrix, Vector

    from ..imageio import read_exr

    job = np.load(job_path, allow_pickle=False)
    meta = json.loads(str(job["meta"]))
    arrays = {k: job[k] for k in job.files if k != "meta"}
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    obj = bpy.data.objects.new("subject", _mesh(bpy, arrays))
    obj.data.materials.append(_material(bpy, arrays, meta))
    scene.collection.objects.link(obj)
    cam = _camera(bpy, Matrix, meta)
    scene.collection.objects.link(cam)
    scene.camera = cam
    world = bpy.data.worlds.new("black")
    world.color = (0.0, 0.0, 0.0)
    scene.world = world
    lights = [_light(bpy, Vector, spec, meta["shadows"], k) for k, spec in enumerate(meta["lights"])]
    for light in lights:
        scene.collection.objects.link(light)
    w, h = meta["size"]
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = int(meta["samples"])
    scene.cycles.use_denoising = False
    scene.cycles.max_bounces = 0  # direct light only, as the core
    scene.cycles.seed = 0
    scene.render.resolution_x, scene.render.resolution_y = int(w), int(h)
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = True
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.render.image_settings.file_format = "OPEN_EXR"
    scene.render.image_settings.color_depth = "32"
    frames = np.zeros((len(lights), int(h), int(w), 3), np.float32)
    for k, light in enumerate(lights):
        for other in lights:
            other.hide_render = other is not light
        scene.render.filepath = str(Path(out_dir) / f"light_{k}.exr")
        bpy.ops.render.render(write_still=True)
        frames[k] = read_exr(scene.render.filepath)[..., :3]
        Path(scene.render.filepath).unlink()
    np.save(Path(out_dir) / "frames.npy", frames)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
