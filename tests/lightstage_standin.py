"""A stand-in light stage renderer for the dataset tests and benchmarks: a Lambertian sphere, analytic.

Same methods as the adapter in :mod:`pnrelight.lightstage.olat` expects from
``pnrelight.lightstage.render``: ``load_subject(path)``, ``prepare_view(mesh, pose, K, (W, H))``,
``render_olat(gbuf, light, shadows=, diffuse_only=)`` and ``passes(gbuf)``. The subject is its
bounding sphere (:func:`pnrelight.lightstage.subjects.inspect_source`) at 0.6 x the radius, coloured
by the subject's albedo texture (textures/albedo.exr or albedo.png, looked up at the sphere
normal's lat-long coordinates; grey for bare meshes). Calibrated like the real renderer: a sun of
strength S gives albedo / pi x S cos(theta); a point light of power P, P / (4 pi r^2) cos(theta).
``LS_STANDIN_DELAY`` (seconds per OLAT frame) slows it down, for the kill-and-resume test.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np


class StandInRenderer:
    name = "standin-lambert-sphere"
    version = "1"
    info = {"samples": 1, "kind": "analytic Lambertian sphere (test stand-in)"}

    def load_subject(self, path):
        from pnrelight.imageio import read_exr, read_image
        from pnrelight.lightstage.subjects import inspect_source

        info = inspect_source(path)
        p = Path(path)
        tex = None
        if p.is_dir() and (p / "textures" / "albedo.exr").is_file():
            tex = read_exr(p / "textures" / "albedo.exr")[..., :3]
        elif p.is_dir():
            from pnrelight.avatar.color import srgb_to_linear

            tex = srgb_to_linear(read_image(p / "textures" / "albedo.png"))
        if tex is None:
            tex = np.full((2, 2, 3), 0.5, np.float32)
        return {"centre": np.asarray(info["centre"]), "radius": 0.6 * info["radius"], "texture": tex}

    def prepare_view(self, mesh, pose, K, size):
        w, h = size
        pose, K = np.asarray(pose, np.float64), np.asarray(K, np.float64)
        u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
        # OpenGL camera: x right, y up, looking down -z; pixel v runs down.
        d_cam = np.stack([(u - K[0, 2]) / K[0, 0], -(v - K[1, 2]) / K[1, 1], -np.ones_like(u)], -1)
        d = d_cam @ pose[:3, :3].T
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        o = pose[:3, 3]
        oc = o - mesh["centre"]
        b = d @ oc
        c = oc @ oc - mesh["radius"] ** 2
        disc = b * b - c
        mask = disc > 0
        t = np.where(mask, -b - np.sqrt(np.maximum(disc, 0)), 0.0)
        pos = o + d * t[..., None]
        n = (pos - mesh["centre"]) / mesh["radius"]
        n[~mask] = 0.0
        tex = mesh["texture"]
        th, tw = tex.shape[:2]
        uu = (0.5 + np.arctan2(n[..., 2], n[..., 0]) / (2 * math.pi)) % 1.0
        vv = np.arccos(np.clip(n[..., 1], -1, 1)) / math.pi
        albedo = tex[np.clip((vv * th).astype(int), 0, th - 1), np.clip((uu * tw).astype(int), 0, tw - 1)]
        albedo = np.where(mask[..., None], albedo, 0.0).astype(np.float32)
        depth = np.where(mask, (pos - o) @ -pose[:3, 2], 0.0)
        return {"mask": mask, "position": pos, "normal": n, "albedo": albedo, "depth": depth.astype(np.float32),
                "normal_cam": (n @ pose[:3, :3]).astype(np.float32)}

    def render_olat(self, gbuf, light, shadows=True, diffuse_only=False):
        delay = float(os.environ.get("LS_STANDIN_DELAY", "0") or 0)
        if delay:
            time.sleep(delay)
        n = gbuf["normal"]
        colour = np.asarray(light.get("colour", (1, 1, 1)), np.float64)
        if light["type"] == "sun":
            l = np.asarray(light["direction"], np.float64)
            e = light["strength"] * np.maximum(n @ l, 0.0)
        else:
            to = np.asarray(light["position"], np.float64) - gbuf["position"]
            r2 = np.maximum((to * to).sum(-1), 1e-12)
            e = light["strength"] / (4 * math.pi * r2) * np.maximum((n * to).sum(-1) / np.sqrt(r2), 0.0)
        out = gbuf["albedo"] / math.pi * e[..., None] * colour
        return np.where(gbuf["mask"][..., None], out, 0.0).astype(np.float32)

    def passes(self, gbuf):
        return {"albedo": gbuf["albedo"], "normal": gbuf["normal_cam"], "depth": gbuf["depth"], "mask": gbuf["mask"]}
