"""Cycles as the light stage's renderer: ``pnrelight olat ... --renderer blender``.

Each call of :func:`render_olat_set` (one task's camera: all its lights) runs in a fresh Python process
with ``bpy`` (``pip install bpy==5.0.1``, Python 3.11), :mod:`pnrelight.lightstage.blender_worker`:
Blender's memory grows render after render, so no Blender process outlives its task. The scene is
built from the same mesh dict the core renders (``render.load_subject``), in Blender's frame
(``layouts.to_blender``), with the same camera (K, pose) and the same calibrated lights (a sun of
strength 1 = 1 W/m²; a point light's watts).

What Cycles renders: direct light only (max bounces 0, like the core; no interreflection), a
Principled BSDF with the albedo texture as base colour, GGX roughness as the core's (alpha =
roughness²) and the core's F0 through IOR 1.5 and "Specular IOR Level" = F0 / 0.08 (so F0 = 0.04 is
Blender's default 0.5; ``diffuse_only`` sets it to 0), hard shadows (suns of angle 0; point lights
of radius 0) or none. Not carried over: normal maps (the geometric vertex normals shade) and the
mean of a specular / roughness texture stands for the texture. The ground-truth passes (albedo,
normals, depth, mask) come from the core's ray-cast G-buffer of the same mesh and camera: geometry
both renderers agree on.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["renderer", "BlenderView", "CYCLES_SAMPLES"]

CYCLES_SAMPLES = 64  # per pixel; direct light from one hard light converges well below 1 % noise
WORKER_TIMEOUT_S = 3600


@dataclass
class BlenderView:
    """One camera of a subject: the core's G-buffer (passes, mask) and what the Blender process needs."""

    gbuf: object  # its camera_pose (4, 4) and K (3, 3) are the view's camera
    mesh: dict
    size: tuple  # (W, H)


def _bpy_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bpy")
    except PackageNotFoundError:
        raise InputError("--renderer blender needs the bpy module (pip install bpy==5.0.1, Python 3.11); "
                         "or use --renderer pnrelight") from None


def renderer():
    """The :class:`pnrelight.lightstage.olat.Renderer` of Cycles (see the module's docstring)."""
    from . import render
    from .olat import Renderer, renderer_backend

    core = renderer_backend("pnrelight")

    def prepare_view(mesh, pose, K, size):
        checked = render.check_mesh(mesh)
        size = (int(size[0]), int(size[1]))
        return BlenderView(render.prepare_view(checked, pose, K, (size[1], size[0])), checked, size)

    def render_olat(view, light, *, shadows=True, diffuse_only=False):
        return next(iter(render_olat_set(view, [light], shadows=shadows, diffuse_only=diffuse_only)))

    return Renderer(name="blender-cycles", version=_bpy_version(), load_subject=render.load_subject,
                    prepare_view=prepare_view, render_olat=render_olat, passes=lambda view: core.passes(view.gbuf),
                    info={"engine": "CYCLES", "device": "CPU", "samples": CYCLES_SAMPLES, "max_bounces": 0,
                          "process": "one fresh Python + bpy process per task camera",
                          "passes": "the core's ray-cast G-buffer of the same mesh and camera"},
                    render_olat_set=render_olat_set)


def render_olat_set(view: BlenderView, lights, *, shadows: bool = True, diffuse_only: bool = False):
    """Frames (H, W, 3) float32 linear radiance, one per light dict (the core's), rendered by Cycles in a
    fresh process; yields them in order."""
    from .render import check_light

    lights = [check_light(light) for light in lights]
    mesh = view.mesh
    albedo = np.asarray(mesh["albedo"], np.float32)
    arrays = {"vertices": np.asarray(mesh["vertices"], np.float32), "triangles": np.asarray(mesh["triangles"], np.int32),
              "normals": np.asarray(mesh["normals"], np.float32), "albedo": albedo}
    if mesh.get("uvs") is not None:
        arrays["uvs"] = np.asarray(mesh["uvs"], np.float32)
    meta = {"pose": view.gbuf.camera_pose.tolist(), "K": view.gbuf.K.tolist(), "size": list(view.size), "samples": CYCLES_SAMPLES,
            "shadows": bool(shadows), "specular_f0": 0.0 if diffuse_only else float(np.mean(mesh["specular"])),  # check_mesh sets both
            "roughness": float(np.mean(mesh["roughness"])),
            "lights": [{"type": lt["type"], "rgb": [float(c) for c in lt["rgb"]],
                        **({"direction": lt["direction"].tolist()} if lt["type"] == "sun" else {"position": lt["position"].tolist()})}
                       for lt in lights]}
    with tempfile.TemporaryDirectory(prefix="pnrelight-cycles-") as tmp:
        job = Path(tmp) / "job.npz"
        np.savez(job, meta=np.asarray(json.dumps(meta)), **arrays)
        proc = subprocess.run([sys.executable, "-m", "pnrelight.lightstage.blender_worker", str(job), tmp],
                              capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
        if proc.returncode != 0:
            lines = [line for line in (proc.stderr or proc.stdout).strip().splitlines() if line.strip()]
            raise RuntimeError(f"the Blender render process failed: {lines[-1] if lines else 'no output'}")
        frames = np.load(Path(tmp) / "frames.npy")
    yield from frames
