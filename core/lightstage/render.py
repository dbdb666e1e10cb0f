"""OLAT renderer of the virtual light stage: one light at a time, with cast shadows, on the CPU.

Model (conventions in ``docs/lightstage.md``; world frame = glTF's, metres, y up):

* **Primary visibility** is traced once per view into a :class:`GBuffer` (hit mask, world position,
  shading normal, albedo, specular level, roughness, depth) by :func:`prepare_view`; every light
  then only shades those pixels and casts shadow rays from them (:func:`render_olat`,
  :func:`render_olat_set`).
* **Calibration** as Blender/Cycles: a sun of strength S gives S W/m² on a surface facing it; a point
  light of P watts gives P / (4 pi r²) cos(theta). Rendered values are radiance.
* **BRDF** = Lambert (albedo / pi) + a white GGX microfacet lobe: D_GGX(alpha = roughness²) x
  height-correlated Smith visibility x Schlick Fresnel with F0 = the specular level (the reflectance
  at normal incidence: 0.04 for common dielectrics, ~0.028 for skin, the avatar's ``specular.png``;
  Fresnel rises towards min(1, 50 F0) at grazing angles, so F0 = 0 is a pure Lambertian surface).
  The lobe alone never reflects more than arrives (a single-scattering microfacet model loses energy
  at high roughness, never gains it); diffuse + specular stays below 1 when albedo <= 1 - F0.
* **Shadows**: an occlusion ray per lit pixel towards the light (Embree's occlusion query through
  ``embreex``), from the hit point pushed to the smooth surface the vertex normals describe (so
  coarse triangles do not self-shadow along the terminator) plus a tiny offset along the face normal.
  A light ``size`` (sun: angular diameter in radians, Blender's ``angle``; point: radius in metres,
  Blender's ``shadow_soft_size``) gives soft shadows from ``shadow_samples`` rays per pixel.
* Without ``embreex`` (an optional dependency: ``pip install pnrelight[lightstage]``) primary
  visibility comes from the project's z-buffer rasterizer and shadows from shadow maps (hard
  shadows only), with a one-time warning.

Why Embree for primary visibility too: the G-buffer's hit points then lie on exactly the float32
triangles the shadow rays are tested against (no depth-bias guessing), it clips against the camera
plane for free (the rasterizer drops triangles crossing it), and it is faster (~70 ms at 512²).

Everything is numpy in, numpy out; images are (H, W, C) float32 linear radiance, 0 in the background.
"""
from __future__ import annotations

import hashlib
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..errors import InputError

__all__ = [
    "GBuffer", "prepare_view", "ground_truth_passes", "check_mesh", "check_light", "sun_light", "rotate_suns", "point_light",
    "specular_brdf", "render_olat", "render_olat_set", "render_lights", "environment_to_suns",
    "render_environment", "load_subject", "embree_available", "DEFAULT_ALBEDO", "DEFAULT_SPECULAR", "DEFAULT_ROUGHNESS",
]

DEFAULT_ALBEDO = 0.8  # Blender's default base colour
DEFAULT_SPECULAR = 0.04  # F0 of a common dielectric (IOR 1.5), glTF's default
DEFAULT_ROUGHNESS = 0.5
DEFAULT_SHADOW_SAMPLES = 16  # rays per pixel for a light with a size (soft shadows)
MIN_ROUGHNESS = 0.02  # alpha = 4e-4: sharper lobes only alias at pixel sampling
_OFFSET_SCALE = 1e-4  # shadow-ray origin offset along the face normal, in scene radii
_SHADOW_MAP_SIZE = 2048  # texels per side of the fallback shadow maps
_CHECKED = object()  # marks check_mesh's own output, which prepare_view then takes as it is

# ----------------------------------------------------------------------------- ray casting backends

_EMBREE: dict = {"tried": False, "module": None, "warned": False}


def _embree_modules():
    """(rtcore_scene, mesh_construction) of embreex, or None (warns once per process when missing)."""
    if not _EMBREE["tried"]:
        _EMBREE["tried"] = True
        try:
            from embreex import mesh_construction, rtcore_scene

            _EMBREE["module"] = (rtcore_scene, mesh_construction)
        except Exception as exc:  # noqa: BLE001 - a missing or broken wheel: use the slow path
            _EMBREE["module"] = None
            _EMBREE["error"] = f"{type(exc).__name__}: {exc}"
    if _EMBREE["module"] is None and not _EMBREE["warned"]:
        _EMBREE["warned"] = True
        warnings.warn(f"embreex unavailable ({_EMBREE.get('error')}); the light stage renderer falls back to the "
                      "rasterizer and shadow maps (slower, hard shadows only): pip install 'pnrelight[lightstage]'",
                      RuntimeWarning, stacklevel=3)
    return _EMBREE["module"]


def embree_available() -> bool:
    """True when ``embreex`` imports (the fast ray-cast path); warns once when it does not."""
    return _embree_modules() is not None


class _EmbreeScene:
    """An Embree BVH over (V, 3) vertices and (F, 3) triangles; rebuilt lazily after pickling."""

    def __init__(self, vertices: np.ndarray, triangles: np.ndarray):
        self.vertices = np.ascontiguousarray(vertices, dtype=np.float32)
        self.triangles = np.ascontiguousarray(triangles, dtype=np.int32)
        self._scene = None

    @property
    def scene(self):
        if self._scene is None:
            rtcore_scene, mesh_construction = _embree_modules()
            scene = rtcore_scene.EmbreeScene()
            mesh_construction.TriangleMesh(scene, self.vertices, self.triangles)
            self._scene = scene
        return self._scene

    def __getstate__(self):
        return {"vertices": self.vertices, "triangles": self.triangles, "_scene": None}

    def intersect(self, origins: np.ndarray, dirs: np.ndarray):
        """Closest hits: prim (N,) int32 (-1 = miss), Embree barycentrics u, v (N,) (weights of corners 1 and 2)."""
        out = self.scene.run(np.ascontiguousarray(origins, dtype=np.float32), np.ascontiguousarray(dirs, dtype=np.float32), output=1)
        return out["primID"], out["u"], out["v"]

    def occluded(self, origins: np.ndarray, dirs: np.ndarray, tfar: np.ndarray | None = None) -> np.ndarray:
        """(N,) bool: something lies along origin + t dir for 0 < t < tfar (inf when None)."""
        if len(origins) == 0:
            return np.zeros(0, dtype=bool)
        kwargs = {} if tfar is None else {"dists": np.ascontiguousarray(tfar, dtype=np.float32)}
        hit = self.scene.run(np.ascontiguousarray(origins, dtype=np.float32), np.ascontiguousarray(dirs, dtype=np.float32),
                             query="OCCLUDED", **kwargs)
        return hit == 0  # embreex: 0 = occluded, -1 = free


# ----------------------------------------------------------------------------- input checks


def _finite_array(value, shape_tail: tuple, what: str, fix: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{what} is not numeric ({fix})") from None
    if arr.shape[arr.ndim - len(shape_tail):] != shape_tail or arr.ndim < len(shape_tail):
        raise InputError(f"{what} has shape {arr.shape}, expected (..., {', '.join(map(str, shape_tail))}) ({fix})")
    if not np.isfinite(arr).all():
        raise InputError(f"{what} contains NaN or infinity ({fix})")
    return arr


def _texture_or_scalar(value, name: str, channels: int, default) -> np.ndarray | float:
    """A (T, T[, C]) texture as float32, or a constant (float, or (C,) for colours)."""
    if value is None:
        value = default
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim <= 1:
        if channels == 3:
            arr = np.broadcast_to(arr, (3,)).astype(np.float32)
        elif arr.size != 1:
            raise InputError(f"mesh {name} must be a number or a (T, T) texture, got shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise InputError(f"mesh {name} contains NaN or infinity (fix the material)")
        return arr if channels == 3 else float(arr.reshape(-1)[0])
    if channels == 3 and (arr.ndim != 3 or arr.shape[2] < 3):
        raise InputError(f"mesh {name} texture has shape {arr.shape}, expected (T, T, 3) (give an RGB texture)")
    if channels == 1 and arr.ndim == 3:
        arr = arr[..., 0]
    if channels == 3:
        arr = arr[..., :3]
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InputError(f"mesh {name} texture is empty (give a non-empty texture)")
    if not np.isfinite(arr).all():
        raise InputError(f"mesh {name} texture contains NaN or infinity (fix the texture)")
    return np.ascontiguousarray(arr)


def check_mesh(mesh: dict) -> dict:
    """Validate and normalise a mesh dict (the input of :func:`prepare_view`).

    Keys: vertices (V, 3) world metres; triangles (F, 3) int, counter-clockwise seen from outside;
    optional normals (V, 3) (area-weighted vertex normals when absent); uvs (V, 2) v up (needed by
    textures); albedo: (T, T, 3) linear texture or (3,) / scalar colour (default 0.8);
    specular: F0 texture (T, T) or scalar (default 0.04); roughness: texture (T, T) or scalar
    (default 0.5); normal_map: (T, T, 3) unit normals (decoded, not (n + 1) / 2) with
    normal_map_space "object" (= world) or "tangent" (then tangents (V, 4) as glTF's, computed when absent).
    Returns a new dict with float32 / int32 contiguous arrays. Such a dict is returned as it is (not
    checked again: views of one subject share the work), so change a copy of the input, not it.
    """
    if not isinstance(mesh, dict):
        raise InputError(f"mesh must be a dict with vertices and triangles, got {type(mesh).__name__} (see load_subject)")
    if mesh.get("checked") is _CHECKED:
        return mesh
    if "vertices" not in mesh or "triangles" not in mesh:
        raise InputError("mesh lacks vertices or triangles (give a dict with both, e.g. from load_subject)")
    v = _finite_array(mesh["vertices"], (3,), "mesh vertices", "remove the broken vertices").reshape(-1, 3)
    try:
        t = np.asarray(mesh["triangles"], dtype=np.int64).reshape(-1, 3)
    except (TypeError, ValueError):
        raise InputError("mesh triangles must be (F, 3) integer vertex indices (triangulate the mesh)") from None
    if len(v) == 0 or len(t) == 0:
        raise InputError(f"mesh is empty ({len(v)} vertices, {len(t)} triangles): give a mesh with at least one triangle")
    if t.min() < 0 or t.max() >= len(v):
        raise InputError(f"mesh triangles index vertices outside 0..{len(v) - 1} (fix the triangle list)")
    out = {"vertices": np.ascontiguousarray(v, dtype=np.float32), "triangles": np.ascontiguousarray(t, dtype=np.int32)}
    if mesh.get("normals") is not None:
        n = _finite_array(mesh["normals"], (3,), "mesh normals", "recompute the normals").reshape(-1, 3)
        if len(n) != len(v):
            raise InputError(f"mesh has {len(n)} normals for {len(v)} vertices (give one normal per vertex or none)")
        n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        out["normals"] = n.astype(np.float32)
    else:
        from ..avatar.face_model import vertex_normals

        out["normals"] = vertex_normals(v, t).astype(np.float32)
    textures = [k for k in ("albedo", "specular", "roughness", "normal_map") if np.ndim(mesh.get(k)) >= 2]
    if mesh.get("uvs") is not None:
        uv = _finite_array(mesh["uvs"], (2,), "mesh uvs", "fix the UV layout").reshape(-1, 2)
        if len(uv) != len(v):
            raise InputError(f"mesh has {len(uv)} uvs for {len(v)} vertices (give one uv per vertex)")
        out["uvs"] = uv.astype(np.float32)
    elif textures:
        raise InputError(f"mesh has textures ({', '.join(textures)}) but no uvs (give per-vertex uvs)")
    out["albedo"] = _texture_or_scalar(mesh.get("albedo"), "albedo", 3, DEFAULT_ALBEDO)
    out["specular"] = _texture_or_scalar(mesh.get("specular"), "specular", 1, DEFAULT_SPECULAR)
    out["roughness"] = _texture_or_scalar(mesh.get("roughness"), "roughness", 1, DEFAULT_ROUGHNESS)
    if mesh.get("normal_map") is not None:
        nm = _texture_or_scalar(mesh["normal_map"], "normal_map", 3, None)
        if np.ndim(nm) != 3:
            raise InputError("mesh normal_map must be a (T, T, 3) texture of unit normals")
        space = str(mesh.get("normal_map_space", "tangent"))
        if space not in ("object", "tangent"):
            raise InputError(f"mesh normal_map_space is {space!r} (use 'object' or 'tangent')")
        out["normal_map"] = nm / np.maximum(np.linalg.norm(nm, axis=-1, keepdims=True), 1e-12)
        out["normal_map_space"] = space
        if space == "tangent":
            if mesh.get("tangents") is not None:
                tg = _finite_array(mesh["tangents"], (4,), "mesh tangents", "recompute the tangents").reshape(-1, 4)
                if len(tg) != len(v):
                    raise InputError(f"mesh has {len(tg)} tangents for {len(v)} vertices (give one per vertex or none)")
            else:
                from ..avatar.export import vertex_tangents

                tg = vertex_tangents(v, out["normals"], out["uvs"], t)
            out["tangents"] = np.asarray(tg, dtype=np.float32)
    out["checked"] = _CHECKED
    return out


# ----------------------------------------------------------------------------- G-buffer


@dataclass
class GBuffer:
    """What one camera sees, traced once and reused by every light (N = number of covered pixels).

    height, width : image size. pixels : (N,) int64 flat indices (row * width + col) of covered pixels.
    position : (N, 3) float32 world hit points. normal : (N, 3) shading normals (vertex normals,
    normal map applied, facing the camera). face_normal : (N, 3) geometric normals facing the camera.
    view : (N, 3) unit vectors from the hit point to the camera. shadow_origin : (N, 3) where shadow
    rays start. albedo : (N, 3) linear RGB. specular : (N,) F0. roughness : (N,).
    depth : (H, W) planar depth in metres along the camera's view axis, +inf in the background.
    camera_pose : (4, 4) camera-to-world (OpenGL). K : (3, 3). backend : "embree" or "raster".
    scene_center (3,), scene_radius : the mesh's bounding sphere (shadow maps). offset : shadow-ray
    origin offset along the face normal (metres). vertices (V, 3) float32, triangles (F, 3) int32 : the
    occluders. Pickles without its Embree scene (rebuilt on first use in another process).
    """

    height: int
    width: int
    pixels: np.ndarray
    position: np.ndarray
    normal: np.ndarray
    face_normal: np.ndarray
    view: np.ndarray
    shadow_origin: np.ndarray
    albedo: np.ndarray
    specular: np.ndarray
    roughness: np.ndarray
    depth: np.ndarray
    camera_pose: np.ndarray
    K: np.ndarray
    backend: str
    scene_center: np.ndarray
    scene_radius: float
    offset: float
    vertices: np.ndarray = field(repr=False)
    triangles: np.ndarray = field(repr=False)
    _occluder: object = field(default=None, repr=False)
    _n_dot_v: np.ndarray | None = field(default=None, repr=False)
    _flat_index: tuple | None = field(default=None, repr=False)

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool, True where the mesh is seen."""
        m = np.zeros(self.height * self.width, dtype=bool)
        m[self.pixels] = True
        return m.reshape(self.height, self.width)

    @property
    def n_dot_v(self) -> np.ndarray:
        """(N,) float32 cosine between shading normal and view direction (cached)."""
        if self._n_dot_v is None:
            self._n_dot_v = np.einsum("nc,nc->n", self.normal, self.view).astype(np.float32)
        return self._n_dot_v

    def image(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Scatter per-pixel values (N, C) or (N,) into an (H, W, C) or (H, W) float32 image."""
        values = np.asarray(values, dtype=np.float32)
        tail = values.shape[1:]
        channels = int(np.prod(tail)) if tail else 1
        size = self.height * self.width * channels
        out = np.zeros(size, dtype=np.float32) if fill == 0 else np.full(size, fill, dtype=np.float32)
        if channels == 1:
            out[self.pixels] = values.reshape(-1)
        else:  # one flat scatter beats a row scatter (N, C) by ~2x
            if self._flat_index is None or self._flat_index[0] != channels:
                self._flat_index = (channels, (self.pixels[:, None] * channels + np.arange(channels)).reshape(-1))
            out[self._flat_index[1]] = values.reshape(-1)
        return out.reshape((self.height, self.width) + tail)

    def occluder(self):
        if self._occluder is None and self.backend == "embree":
            self._occluder = _EmbreeScene(self.vertices, self.triangles)
        return self._occluder

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_occluder"] = None  # Embree scenes do not pickle; each process builds its own
        return state


def _camera_rays(camera_pose: np.ndarray, K: np.ndarray, height: int, width: int):
    """World origin (3,) and unnormalised ray directions (H*W, 3) through the pixel centres, with camera z = -1."""
    j, i = np.meshgrid(np.arange(width, dtype=np.float64) + 0.5, np.arange(height, dtype=np.float64) + 0.5)
    pix = np.stack([j.reshape(-1), i.reshape(-1), np.ones(height * width)], axis=1)
    cv = pix @ np.linalg.inv(K).T  # OpenCV camera frame (y down, z forward), z = 1
    d_cam = np.stack([cv[:, 0], -cv[:, 1], -np.ones(len(cv))], axis=1)  # OpenGL frame
    return camera_pose[:3, 3].copy(), d_cam @ camera_pose[:3, :3].T


def _check_camera(camera_pose, K, size) -> tuple[np.ndarray, np.ndarray, int, int]:
    pose = _finite_array(camera_pose, (4, 4), "camera_pose", "give a 4x4 camera-to-world matrix")
    if pose.shape != (4, 4):
        raise InputError(f"camera_pose has shape {pose.shape}, expected (4, 4) (give one camera-to-world matrix)")
    R = pose[:3, :3]
    if abs(abs(np.linalg.det(R)) - 1.0) > 1e-3 or not np.allclose(R.T @ R, np.eye(3), atol=1e-3):
        raise InputError("camera_pose's rotation is not orthonormal (give a rigid camera-to-world pose, no scale)")
    K = _finite_array(K, (3, 3), "K", "give a 3x3 pinhole intrinsics matrix")
    if K.shape != (3, 3) or K[0, 0] <= 0 or K[1, 1] <= 0 or abs(np.linalg.det(K)) < 1e-12:
        raise InputError("K must be a 3x3 pinhole matrix with positive focal lengths (fx = K[0, 0], fy = K[1, 1])")
    try:
        h, w = (int(size), int(size)) if np.ndim(size) == 0 else (int(size[0]), int(size[1]))
    except (TypeError, ValueError, IndexError):
        raise InputError(f"size must be (height, width) in pixels, got {size!r}") from None
    if h < 1 or w < 1 or h * w > 1 << 26:
        raise InputError(f"size {h}x{w} is not a sensible image size (give 1..8192 pixels per side)")
    return pose, K, h, w


def _sample_texture(tex, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup of a texture (T_h, T_w[, C]) (row 0 = v 1) at uvs (N, 2), v up; repeats outside [0, 1].

    A constant (scalar or (C,)) is broadcast. Returns (N[, C]) float32.
    """
    if np.ndim(tex) < 2:
        c = np.asarray(tex, dtype=np.float32)
        return np.broadcast_to(c, (len(uv),) + c.shape).astype(np.float32)
    th, tw = tex.shape[:2]
    u = uv[:, 0].astype(np.float64)
    v = uv[:, 1].astype(np.float64)
    u = np.where((u < 0) | (u > 1), u - np.floor(u), u)
    v = np.where((v < 0) | (v > 1), v - np.floor(v), v)
    x = np.clip(u * tw - 0.5, 0.0, tw - 1.0)
    y = np.clip((1.0 - v) * th - 0.5, 0.0, th - 1.0)
    x0 = np.minimum(np.floor(x).astype(np.int64), tw - 1)
    y0 = np.minimum(np.floor(y).astype(np.int64), th - 1)
    x1, y1 = np.minimum(x0 + 1, tw - 1), np.minimum(y0 + 1, th - 1)
    fx, fy = (x - x0).astype(np.float32), (y - y0).astype(np.float32)
    if tex.ndim == 3:
        fx, fy = fx[:, None], fy[:, None]
    top = tex[y0, x0] * (1 - fx) + tex[y0, x1] * fx
    bottom = tex[y1, x0] * (1 - fx) + tex[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-20)


def prepare_view(mesh: dict, camera_pose: np.ndarray, K: np.ndarray, size, *, backend: str = "auto") -> GBuffer:
    """Trace primary visibility once and gather everything the lights need (the cached G-buffer).

    mesh : dict, see :func:`check_mesh` (e.g. from :func:`load_subject`).
    camera_pose : (4, 4) OpenGL camera-to-world pose (the camera looks down its -z).
    K : (3, 3) pinhole intrinsics in pixels (u right, v down, pixel centres at integer + 0.5).
    size : (height, width) or an int for square images.
    backend : "embree", "raster" (numpy rasterizer + shadow maps) or "auto" (Embree when installed).
    Returns a :class:`GBuffer`.
    """
    if backend not in ("auto", "embree", "raster"):
        raise InputError(f"backend {backend!r} is unknown (use 'auto', 'embree' or 'raster')")
    m = check_mesh(mesh)
    pose, K, h, w = _check_camera(camera_pose, K, size)
    if backend == "auto":
        backend = "embree" if _embree_modules() is not None else "raster"
    elif backend == "embree" and _embree_modules() is None:
        raise InputError("backend 'embree' needs the embreex package (pip install 'pnrelight[lightstage]')")
    verts = m["vertices"].astype(np.float64)
    tris = m["triangles"].astype(np.int64)
    occluder = None
    if backend == "embree":
        origin, dirs = _camera_rays(pose, K, h, w)
        occluder = _EmbreeScene(m["vertices"], m["triangles"])
        prim, bu, bv = occluder.intersect(np.broadcast_to(origin.astype(np.float32), dirs.shape), dirs)
        pixels = np.flatnonzero(prim >= 0)
        face = prim[pixels].astype(np.int64)
        bu, bv = bu[pixels].astype(np.float64), bv[pixels].astype(np.float64)
        bary = np.stack([1.0 - bu - bv, bu, bv], axis=1)
    else:
        pixels, face, bary = _raster_primary(verts, tris, pose, K, h, w)
    corners = tris[face]  # (N, 3)
    vc = verts[corners]  # (N, 3, 3)
    pos = np.einsum("nk,nkc->nc", bary, vc)
    eye = pose[:3, 3]
    view = _normalize(eye - pos)
    ng = _normalize(np.cross(vc[:, 1] - vc[:, 0], vc[:, 2] - vc[:, 0]))
    nv = m["normals"].astype(np.float64)[corners]  # (N, 3, 3)
    ns = _normalize(np.einsum("nk,nkc->nc", bary, nv))
    # Two-sided shading: a back face seen by the camera shades like its front.
    flip = np.where((ng * view).sum(1) < 0, -1.0, 1.0)[:, None]
    ng, ns = ng * flip, ns * flip

    has_uv = "uvs" in m
    uv = np.einsum("nk,nkc->nc", bary, m["uvs"].astype(np.float64)[corners]) if has_uv else np.zeros((len(pixels), 2))
    if "normal_map" in m and has_uv:
        tn = _normalize(_sample_texture(m["normal_map"], uv).astype(np.float64))
        if m["normal_map_space"] == "object":
            ns = tn * flip
        else:
            tg = np.einsum("nk,nkc->nc", bary, m["tangents"].astype(np.float64)[corners])
            t_axis = _normalize(tg[:, :3] - ns * (ns * tg[:, :3]).sum(1, keepdims=True))
            b_axis = np.cross(ns, t_axis) * np.where(tg[:, 3:] < 0, -1.0, 1.0)
            ns = _normalize(tn[:, :1] * t_axis + tn[:, 1:2] * b_axis + tn[:, 2:3] * ns)
    # Interpolated / mapped normals can point away from the camera at silhouettes: bend them back.
    k = (ns * view).sum(1, keepdims=True)
    ns = _normalize(np.where(k < 0.02, ns + (0.02 - k) * view, ns))

    center = 0.5 * (verts.min(0) + verts.max(0))
    radius = float(max(np.linalg.norm(verts - center, axis=1).max(), 1e-6))
    offset = _OFFSET_SCALE * max(radius, float(np.abs(verts).max()) * 0.1)
    # Shadow rays start on the smooth surface of the vertex normals (each corner's tangent plane,
    # blended; only ever moved outwards), so flat triangles do not shadow a smooth-shaded terminator.
    nvf = nv * flip[:, :, None]
    lift = np.minimum(0.0, np.einsum("nkc,nkc->nk", pos[:, None, :] - vc, nvf))  # (N, 3)
    smooth = pos - np.einsum("nk,nk,nkc->nc", bary, lift, nvf)
    origin_shadow = smooth + offset * ng

    w2c = np.linalg.inv(pose)
    depth = np.full(h * w, np.inf, dtype=np.float32)
    depth[pixels] = -(pos @ w2c[:3, :3].T + w2c[:3, 3])[:, 2]
    return GBuffer(
        height=h, width=w, pixels=pixels.astype(np.int64),
        position=np.ascontiguousarray(pos, dtype=np.float32), normal=np.ascontiguousarray(ns, dtype=np.float32),
        face_normal=np.ascontiguousarray(ng, dtype=np.float32), view=np.ascontiguousarray(view, dtype=np.float32),
        shadow_origin=np.ascontiguousarray(origin_shadow, dtype=np.float32),
        albedo=np.clip(_sample_texture(m["albedo"], uv), 0.0, None),
        specular=np.clip(_sample_texture(m["specular"], uv), 0.0, 1.0),
        roughness=np.clip(_sample_texture(m["roughness"], uv), MIN_ROUGHNESS, 1.0),
        depth=depth.reshape(h, w), camera_pose=pose, K=K, backend=backend,
        scene_center=center, scene_radius=radius, offset=offset,
        vertices=m["vertices"], triangles=m["triangles"], _occluder=occluder,
    )


def _project_points(points: np.ndarray, pose: np.ndarray, K: np.ndarray) -> np.ndarray:
    """World points (N, 3) -> (N, 3) of (u, v, camera z) for the rasterizer (camera z < 0 in front)."""
    w2c = np.linalg.inv(pose)
    pc = points @ w2c[:3, :3].T + w2c[:3, 3]
    z = pc[:, 2]
    cv = np.stack([pc[:, 0], -pc[:, 1], -z], axis=1) @ K.T
    zz = np.where(np.abs(cv[:, 2]) < 1e-12, 1e-12, cv[:, 2])
    return np.stack([cv[:, 0] / zz, cv[:, 1] / zz, z], axis=1)


def _raster_primary(verts, tris, pose, K, h, w):
    from ..avatar.raster import rasterize

    r = rasterize(_project_points(verts, pose, K), tris, h, w, perspective_correct=True)
    pixels = np.flatnonzero(r.face_id.reshape(-1) >= 0)
    face = r.face_id.reshape(-1)[pixels].astype(np.int64)
    bary = r.bary.reshape(-1, 3)[pixels].astype(np.float64)
    return pixels, face, bary


def ground_truth_passes(gbuf: GBuffer) -> dict[str, np.ndarray]:
    """The G-buffer as images: albedo (H, W, 3) linear, normal_camera (H, W, 3) unit shading normals in the
    OpenGL camera frame (x right, y up, z towards the camera; 0 in the background), normal_world (H, W, 3),
    position (H, W, 3) world metres, depth (H, W) planar metres (+inf background), mask (H, W) bool,
    specular (H, W) F0 and roughness (H, W)."""
    R = gbuf.camera_pose[:3, :3].astype(np.float32)
    return {
        "albedo": gbuf.image(gbuf.albedo),
        "normal_camera": gbuf.image(gbuf.normal @ R),  # rows: R.T @ n
        "normal_world": gbuf.image(gbuf.normal),
        "position": gbuf.image(gbuf.position),
        "depth": gbuf.depth.copy(),
        "mask": gbuf.mask,
        "specular": gbuf.image(gbuf.specular),
        "roughness": gbuf.image(gbuf.roughness),
    }


# ----------------------------------------------------------------------------- lights


def sun_light(direction, strength=1.0, colour=(1.0, 1.0, 1.0), size: float = 0.0) -> dict:
    """A directional light: ``direction`` (3,) from the subject towards the light, ``strength`` W/m²
    (scalar or per channel (3,)), ``size`` angular diameter in radians (0 = hard shadows)."""
    return {"type": "sun", "direction": direction, "strength": strength, "colour": colour, "size": size}


def rotate_suns(suns: list[dict], rotation: np.ndarray) -> list[dict]:
    """Sun dicts with their directions turned by ``rotation`` (3, 3) (d -> R d): a map turned, or moved between frames."""
    R = np.asarray(rotation, dtype=np.float64)
    return [dict(s, direction=R @ np.asarray(s["direction"], dtype=np.float64)) for s in suns]


def point_light(position, strength=1.0, colour=(1.0, 1.0, 1.0), size: float = 0.0) -> dict:
    """A point light at ``position`` (3,) world metres of ``strength`` watts (scalar or (3,)), ``size`` radius in metres."""
    return {"type": "point", "position": position, "strength": strength, "colour": colour, "size": size}


def check_light(light: dict) -> dict:
    """Validate a light dict; returns {type, direction or position (3,) float64, rgb (3,) float32 = strength x colour, size}."""
    if not isinstance(light, dict):
        raise InputError(f"a light must be a dict (type, direction/position, strength, colour), got {type(light).__name__}")
    kind = light.get("type", "sun")
    if kind not in ("sun", "point"):
        raise InputError(f"light type {kind!r} is unknown (use 'sun' or 'point')")
    strength = _finite_array(light.get("strength", 1.0), (), "light strength", "give a finite number of W/m² or watts")
    colour = _finite_array(light.get("colour", light.get("color", (1.0, 1.0, 1.0))), (), "light colour", "give 3 finite numbers")
    if strength.size not in (1, 3) or colour.size not in (1, 3):
        raise InputError("light strength and colour must be a number or 3 numbers (R, G, B)")
    rgb = (np.broadcast_to(strength.reshape(-1), (3,)) * np.broadcast_to(colour.reshape(-1), (3,))).astype(np.float32)
    if (rgb < 0).any():
        raise InputError("light strength x colour is negative (give non-negative values)")
    size = _finite_array(light.get("size", 0.0) or 0.0, (), "light size", "give a finite size >= 0")
    if size.size != 1 or float(size) < 0:
        raise InputError("light size must be one number >= 0 (sun: angular diameter in radians, point: radius in metres)")
    out = {"type": kind, "rgb": rgb, "size": float(size)}
    if kind == "sun":
        if light.get("direction") is None:
            raise InputError("sun light lacks its direction (give direction=(x, y, z) pointing towards the light)")
        d = _finite_array(light["direction"], (3,), "light direction", "give a finite (x, y, z)").reshape(3)
        if np.linalg.norm(d) < 1e-12:
            raise InputError("light direction is zero (give a non-zero (x, y, z) pointing towards the light)")
        out["direction"] = d / np.linalg.norm(d)
        if out["size"] >= math.pi:
            raise InputError("sun size (angular diameter) must be below pi radians")
    else:
        if light.get("position") is None:
            raise InputError("point light lacks its position (give position=(x, y, z) in metres)")
        out["position"] = _finite_array(light["position"], (3,), "light position", "give a finite (x, y, z)").reshape(3)
    return out


# ----------------------------------------------------------------------------- BRDF


def _ggx(n_dot_l, n_dot_v, n_dot_h, v_dot_h, roughness, f0):
    """GGX specular BRDF value (no cosine): D * V_smith * F, all (N,) float32."""
    a2 = np.square(np.square(roughness))  # alpha = roughness²
    d = n_dot_h * n_dot_h * (a2 - 1.0) + 1.0
    D = a2 / (np.float32(np.pi) * d * d)
    # Height-correlated Smith visibility G2 / (4 n.l n.v) (Heitz 2014).
    gv = n_dot_l * np.sqrt(n_dot_v * n_dot_v * (1.0 - a2) + a2)
    gl = n_dot_v * np.sqrt(n_dot_l * n_dot_l * (1.0 - a2) + a2)
    vis = 0.5 / np.maximum(gv + gl, 1e-12)
    # Schlick's Fresnel towards F90 = min(1, 50 F0): 1 for every real material (F0 >= 0.02), and
    # F0 = 0 switches the lobe off entirely (a pure Lambertian surface, as the calibration assumes).
    f90 = np.minimum(np.float32(50.0) * f0, np.float32(1.0))
    F = f0 + (f90 - f0) * (1.0 - v_dot_h) ** 5
    return D * vis * F


def specular_brdf(normal: np.ndarray, view: np.ndarray, light_dir: np.ndarray, roughness, f0) -> np.ndarray:
    """The specular lobe f_s(l, v) (1/sr, no cosine) for unit vectors (N, 3) (or broadcastable).

    GGX normal distribution with alpha = roughness², height-correlated Smith masking-shadowing,
    Schlick's Fresnel with reflectance ``f0`` at normal incidence. 0 where l or v is below the surface.
    """
    n = np.asarray(normal, dtype=np.float32)
    v = np.asarray(view, dtype=np.float32)
    l = np.asarray(light_dir, dtype=np.float32)
    n, v, l = np.broadcast_arrays(n, v, l)
    h = _normalize(v + l)
    nl, nv = (n * l).sum(-1), (n * v).sum(-1)
    rough = np.clip(np.asarray(roughness, dtype=np.float32), MIN_ROUGHNESS, 1.0)
    val = _ggx(np.maximum(nl, 1e-6), np.maximum(nv, 1e-6), np.clip((n * h).sum(-1), 0, 1), np.clip((v * h).sum(-1), 0, 1),
               rough, np.asarray(f0, dtype=np.float32))
    return np.where((nl > 0) & (nv > 0), val, 0.0).astype(np.float32)


# ----------------------------------------------------------------------------- shading


def _disk_samples(count: int) -> np.ndarray:
    """(count, 2) stratified points in the unit disk (golden-angle spiral, equal area each)."""
    k = np.arange(count, dtype=np.float64) + 0.5
    r = np.sqrt(k / count)
    phi = k * math.pi * (3.0 - math.sqrt(5.0))
    return np.stack([r * np.cos(phi), r * np.sin(phi)], axis=1)


def _frame(d: np.ndarray):
    """Two unit vectors (N, 3) orthogonal to unit vectors d (N, 3) and to each other."""
    helper = np.where(np.abs(d[:, :1]) < 0.9, np.array([[1.0, 0, 0]]), np.array([[0, 1.0, 0]]))
    t1 = _normalize(np.cross(d, helper))
    return t1, np.cross(d, t1)


def _visibility(gbuf: GBuffer, light: dict, sel: np.ndarray, wi: np.ndarray, dist: np.ndarray | None,
                samples: int, seed: int) -> np.ndarray:
    """(n,) float32 fraction of the light seen from the G-buffer pixels ``sel`` (wi: (n, 3) unit directions to it)."""
    if gbuf.backend != "embree":
        if light["size"] > 0 and not _EMBREE.get("warned_soft"):
            _EMBREE["warned_soft"] = True
            warnings.warn("soft shadows need embreex; the shadow-map fallback renders hard shadows "
                          "(pip install 'pnrelight[lightstage]')", RuntimeWarning, stacklevel=4)
        return _shadow_map_visibility(gbuf, light, sel)
    origins = np.take(gbuf.shadow_origin, sel, axis=0)
    occ = gbuf.occluder()
    if light["size"] <= 0 or samples <= 1:
        tfar = None if dist is None else np.maximum(dist - 2.0 * gbuf.offset, 0.0)
        return (~occ.occluded(origins, wi, tfar)).astype(np.float32)
    # Soft shadows: rays to stratified points of the light's disk (sun: cone of the angular diameter;
    # sphere light: its silhouette disk), the pattern turned by a per-pixel angle (noise, not banding).
    n = len(sel)
    wi64 = wi.astype(np.float64)
    t1, t2 = _frame(wi64)
    disk = _disk_samples(samples)
    pix = gbuf.pixels[sel].astype(np.uint64)
    turn = (((pix + np.uint64(seed)) * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)).astype(np.float64) * (2 * math.pi / 2**32)
    c, s = np.cos(turn)[:, None], np.sin(turn)[:, None]
    seen = np.zeros(n, dtype=np.float32)
    if light["type"] == "sun":
        radius = math.tan(0.5 * light["size"])
    else:
        radius = np.minimum(light["size"] / np.maximum(dist.astype(np.float64), 1e-9), 1e3)[:, None]  # tan of the angular radius
    for dx, dy in disk:
        x = dx * c - dy * s
        y = dx * s + dy * c
        vec = wi64 + radius * (x * t1 + y * t2)  # towards a point of the light's disk, in units of dist
        length = np.linalg.norm(vec, axis=1)
        d = (vec / length[:, None]).astype(np.float32)
        tfar = None if dist is None else np.maximum(dist * length - 2.0 * gbuf.offset, 0.0)
        seen += ~occ.occluded(origins, d, tfar)
    return seen / np.float32(samples)


def _shade(gbuf: GBuffer, light: dict, *, shadows: bool, diffuse_only: bool, shadow_samples: int | None, seed: int) -> np.ndarray:
    """(N, 3) float32 radiance of the G-buffer pixels under one checked light."""
    out = np.zeros((len(gbuf.pixels), 3), dtype=np.float32)
    if not len(gbuf.pixels) or not light["rgb"].any():
        return out
    take = lambda a: np.take(a, sel, axis=0)  # noqa: E731 - np.take is ~5x faster than a[sel] on (N, 3)
    if light["type"] == "sun":
        wi_const = light["direction"].astype(np.float32)
        cos = gbuf.normal @ wi_const
        sel = np.flatnonzero(cos > 0)  # only pixels facing the light are shaded and cast shadow rays
        c = take(cos)
        wi = np.broadcast_to(wi_const, (len(sel), 3))
        dist = None
    else:
        to_light = light["position"].astype(np.float32) - gbuf.position
        cos = np.einsum("nc,nc->n", gbuf.normal, to_light)
        sel = np.flatnonzero(cos > 0)
        to_light = take(to_light)
        dist = np.sqrt(np.einsum("nc,nc->n", to_light, to_light))
        wi = to_light / dist[:, None]
        c = take(cos) / dist
    if not len(sel):
        return out
    weight = c
    if shadows:
        samples = DEFAULT_SHADOW_SAMPLES if shadow_samples is None else int(shadow_samples)
        vis = _visibility(gbuf, light, sel, np.ascontiguousarray(wi, dtype=np.float32), dist, samples, seed)
        seen = np.flatnonzero(vis > 0)  # shade only what the light reaches
        sel, c, vis = sel[seen], c[seen], vis[seen]
        wi = wi[seen] if dist is not None else wi[: len(seen)]
        dist = None if dist is None else dist[seen]
        weight = c * vis
        if not len(sel):
            return out
    radiance = take(gbuf.albedo) * (weight * np.float32(1.0 / np.pi))[:, None]
    if not diffuse_only:
        # Half-vector cosines from n.l, n.v and v.l alone: h = (v + l) / |v + l|.
        nv = np.maximum(take(gbuf.n_dot_v), np.float32(1e-4))
        vl = take(gbuf.view @ wi_const) if dist is None else np.einsum("nc,nc->n", take(gbuf.view), wi)
        inv_len = 1.0 / np.sqrt(np.maximum(2.0 + 2.0 * vl, np.float32(1e-12)))
        nh = np.clip((nv + c) * inv_len, 0.0, 1.0)
        vh = np.clip((1.0 + vl) * inv_len, 0.0, 1.0)
        fs = _ggx(c, nv, nh, vh, take(gbuf.roughness), take(gbuf.specular))
        radiance += (fs * weight)[:, None]  # white lobe: dielectric highlights take the light's colour
    if dist is None:
        radiance *= light["rgb"]
    else:
        radiance *= light["rgb"][None, :] / (np.float32(4 * np.pi) * np.square(dist)[:, None])  # P / (4 pi r²)
    out[sel] = radiance
    return out


def render_olat(gbuf: GBuffer, light: dict, *, shadows: bool = True, diffuse_only: bool = False,
                shadow_samples: int | None = None, seed: int = 0) -> np.ndarray:
    """One light on: (H, W, 3) float32 linear radiance (0 in the background).

    light : dict(type="sun" | "point", direction (sun, towards the light) or position (point, metres),
    strength (W/m² for a sun, watts for a point light; scalar or (3,)), colour (3,) (default white),
    size (optional, soft shadows: sun angular diameter in radians, point radius in metres)).
    shadows : cast shadow rays (hard unless the light has a size). diffuse_only : drop the specular lobe.
    shadow_samples : rays per pixel for lights with a size (default 16). seed : soft-shadow noise pattern.
    """
    lt = check_light(light)
    return gbuf.image(_shade(gbuf, lt, shadows=shadows, diffuse_only=diffuse_only, shadow_samples=shadow_samples, seed=seed))


_WORKER: dict = {}


def _worker_init(gbuf: GBuffer, opts: dict) -> None:
    # Forked workers inherit the parent's Embree scene (traversal needs no threads); spawned ones
    # receive a pickled G-buffer without it and build their own on the first light.
    _WORKER["gbuf"], _WORKER["opts"] = gbuf, opts


def _worker_shade(light: dict) -> np.ndarray:
    return _shade(_WORKER["gbuf"], light, **_WORKER["opts"])


def _windowed(submit, items: list, window: int) -> Iterator:
    """Results of submit(item).result() / .get() in order, with at most ``window`` items in flight
    (a slow consumer, e.g. one writing EXRs, must not pile up finished frames in memory)."""
    from collections import deque

    pending: deque = deque()
    for item in items:
        pending.append(submit(item))
        if len(pending) >= window:
            yield pending.popleft()
    while pending:
        yield pending.popleft()


def render_olat_set(gbuf: GBuffer, lights: Iterable[dict], *, shadows: bool = True, diffuse_only: bool = False,
                    shadow_samples: int | None = None, seed: int = 0, workers: int = 1, threads: int = 1) -> Iterator[np.ndarray]:
    """Yield one (H, W, 3) float32 frame per light, in order, from one G-buffer (primary rays traced once).

    workers > 1 shades lights in that many processes (forked ones share the parent's Embree scene,
    frames come back through pipes); threads > 1 shades them in threads of this process instead
    (Embree and numpy's large array operations release the GIL; no copies). All lights are checked
    before the first frame; at most 2 x workers (threads) frames are in flight.
    """
    checked = [check_light(lt) for lt in lights]
    opts = dict(shadows=shadows, diffuse_only=diffuse_only, shadow_samples=shadow_samples, seed=seed)
    workers, threads = max(1, int(workers)), max(1, int(threads))
    if workers > 1 and threads > 1:
        raise InputError("give workers (processes) or threads, not both")
    if len(checked) <= 1:
        workers = threads = 1
    if workers == 1 and threads == 1:
        for lt in checked:
            yield gbuf.image(_shade(gbuf, lt, **opts))
        return
    gbuf.occluder()  # build the Embree scene once, before any thread or process needs it
    if threads > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads) as ex:
            for fut in _windowed(lambda lt: ex.submit(lambda x: gbuf.image(_shade(gbuf, x, **opts)), lt), checked, 2 * threads):
                yield fut.result()
        return
    import multiprocessing as mp

    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(min(workers, len(checked)), initializer=_worker_init, initargs=(gbuf, opts)) as pool:
        for res in _windowed(lambda lt: pool.apply_async(_worker_shade, (lt,)), checked, 2 * workers):
            yield gbuf.image(res.get())


def render_lights(gbuf: GBuffer, lights: Iterable[dict], *, shadows: bool = True, diffuse_only: bool = False,
                  shadow_samples: int | None = None, seed: int = 0, workers: int = 1, threads: int = 1) -> np.ndarray:
    """All ``lights`` on at once: (H, W, 3) float32, the sum of their OLAT frames (light is additive)."""
    total = np.zeros((gbuf.height, gbuf.width, 3), dtype=np.float64)
    for frame in render_olat_set(gbuf, lights, shadows=shadows, diffuse_only=diffuse_only,
                                 shadow_samples=shadow_samples, seed=seed, workers=workers, threads=threads):
        total += frame
    return total.astype(np.float32)


# ----------------------------------------------------------------------------- environment lighting


def environment_to_suns(env_latlong: np.ndarray, rows: int = 16) -> list[dict]:
    """Split a lat-long environment into rows x 2 rows cells, one sun per cell with its irradiance.

    Lat-long layout: :mod:`pnrelight.envmap` (Cycles' convention, ``docs/lightstage.md``).
    Each sun points at its cell's radiance-weighted mean direction with per-channel strength
    sum(L x solid angle) (W/m² on a surface facing it); empty cells are dropped.
    """
    env = _finite_array(env_latlong, (3,), "environment map", "give a finite (H, 2H, 3) lat-long radiance map")
    if env.ndim != 3 or env.shape[1] != 2 * env.shape[0]:
        raise InputError(f"environment map has shape {env.shape}, expected a (H, 2H, 3) lat-long map")
    if (env < 0).any():
        raise InputError("environment map has negative radiance (clip it to >= 0)")
    rows = int(rows)
    if rows < 1:
        raise InputError("rows must be >= 1")
    h, w = env.shape[:2]
    rows = min(rows, h)
    from ..envmap import latlong_directions, solid_angles

    dirs = latlong_directions(h, w)  # the project's one lat-long convention (Cycles')
    omega = solid_angles(h, w)[:, 0]  # (H,) exact texel solid angles
    power = env * omega[:, None, None]  # (H, W, 3) W/m² per texel
    cell = ((np.arange(h) * rows) // h)[:, None] * (2 * rows) + ((np.arange(w) * 2 * rows) // w)[None, :]
    cell = cell.reshape(-1)
    ncell = rows * 2 * rows
    sums = np.stack([np.bincount(cell, power[..., c].reshape(-1), ncell) for c in range(3)], axis=1)
    weight = power.sum(-1).reshape(-1)
    mean_dir = np.stack([np.bincount(cell, weight * dirs[..., c].reshape(-1), ncell) for c in range(3)], axis=1)
    lights = []
    for k in range(ncell):
        if sums[k].max() <= 0:
            continue
        lights.append(sun_light(mean_dir[k] / np.linalg.norm(mean_dir[k]), strength=sums[k].astype(np.float32)))
    return lights


def render_environment(gbuf: GBuffer, env_latlong, *, rows: int = 16, shadows: bool = True, diffuse_only: bool = False,
                       workers: int = 1, threads: int = 1) -> np.ndarray:
    """Direct render under an environment: (H, W, 3) float32.

    env_latlong : (H, 2H, 3) linear radiance (Cycles' equirectangular layout), or a list of lights
    (e.g. suns with per-channel strengths) to switch on together. The map becomes one sun per cell of
    a rows x 2 rows grid (:func:`environment_to_suns`), so the render equals the sum of those suns'
    OLAT frames to float precision; finer grids converge to the map (a uniform world of radiance L
    renders albedo x L).
    """
    if isinstance(env_latlong, (list, tuple)) and (not env_latlong or isinstance(env_latlong[0], dict)):
        lights = list(env_latlong)
    else:
        lights = environment_to_suns(env_latlong, rows)
    return render_lights(gbuf, lights, shadows=shadows, diffuse_only=diffuse_only, workers=workers, threads=threads)


# ----------------------------------------------------------------------------- fallback shadow maps


def _light_views(gbuf: GBuffer, light: dict):
    """Shadow-map views for a light: list of (world-to-light (4, 4), K (3, 3) or None for orthographic, extent info)."""
    c, r = gbuf.scene_center, gbuf.scene_radius * 1.02
    if light["type"] == "sun":
        z = light["direction"]
        x, y = _frame(z[None, :])
        pose = np.eye(4)
        pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x[0], y[0], z, c + z * 2 * r
        return [(pose, None, r)]
    p = light["position"]
    dist = float(np.linalg.norm(c - p))
    if dist > 1.05 * r:  # outside the bounding sphere: one frustum around it
        z = (p - c) / dist
        x, y = _frame(z[None, :])
        pose = np.eye(4)
        pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x[0], y[0], z, p
        half = math.asin(min(r / dist, 0.999))
        return [(pose, half, None)]
    views = []  # inside: a cube map (six 90-degree frusta)
    for axis in np.concatenate([np.eye(3), -np.eye(3)]):
        z = -axis  # each camera looks down its -z = along +axis
        x, y = _frame(z[None, :])
        pose = np.eye(4)
        pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x[0], y[0], z, p
        views.append((pose, math.pi / 4, None))
    return views


def _shadow_map_visibility(gbuf: GBuffer, light: dict, sel: np.ndarray) -> np.ndarray:
    """Hard-shadow visibility (n,) float32 of pixels ``sel`` from depth maps rendered from the light."""
    from ..avatar.raster import rasterize

    S = _SHADOW_MAP_SIZE
    verts = gbuf.vertices.astype(np.float64)
    pts = gbuf.shadow_origin[sel].astype(np.float64)
    ng = gbuf.face_normal[sel].astype(np.float64)
    vis = np.ones(len(sel), dtype=np.float32)
    views = _light_views(gbuf, light)
    if len(views) > 1:  # cube map: each point goes to the face its direction falls into
        d = pts - light["position"]
        axis = np.argmax(np.abs(d), axis=1) + 3 * (np.take_along_axis(d, np.argmax(np.abs(d), axis=1)[:, None], 1)[:, 0] < 0)
    for k, (pose, half, ortho_r) in enumerate(views):
        idx = np.arange(len(sel)) if len(views) == 1 else np.flatnonzero(axis == k)
        if not len(idx):
            continue
        w2l = np.linalg.inv(pose)
        if ortho_r is not None:
            texel = 2 * ortho_r / S
            def proj(q):
                lc = q @ w2l[:3, :3].T + w2l[:3, 3]
                return np.stack([(lc[:, 0] + ortho_r) / texel, (ortho_r - lc[:, 1]) / texel, lc[:, 2]], axis=1)
            raster = rasterize(proj(verts), gbuf.triangles, S, S)
        else:
            f = (S / 2) / math.tan(half)
            Kl = np.array([[f, 0, S / 2], [0, f, S / 2], [0, 0, 1.0]])
            def proj(q):
                return _project_points(q, pose, Kl)
            raster = rasterize(proj(verts), gbuf.triangles, S, S, perspective_correct=True)
            texel = None
        q = pts[idx]
        # Normal-offset lookup (a texel and a half along the face normal) against acne on slopes.
        if texel is None:
            dist = np.linalg.norm(q - pose[:3, 3], axis=1)
            tx = dist * 2 * math.tan(half) / S
        else:
            tx = texel
        q = q + ng[idx] * (1.5 * np.asarray(tx))[..., None] if np.ndim(tx) else q + ng[idx] * 1.5 * tx
        pq = proj(q)
        col = np.floor(pq[:, 0]).astype(np.int64)
        row = np.floor(pq[:, 1]).astype(np.int64)
        inside = (col >= 0) & (col < S) & (row >= 0) & (row < S)
        zmap = np.full(len(idx), -np.inf)
        zmap[inside] = raster.depth[row[inside], col[inside]]
        bias = 0.5 * (tx if np.ndim(tx) == 0 else tx)
        shadowed = zmap > pq[:, 2] + bias
        vis[idx[shadowed]] = 0.0
    return vis


# ----------------------------------------------------------------------------- subjects


def load_subject(path: str | os.PathLike) -> dict:
    """Load a subject to render: a mesh dict for :func:`prepare_view`.

    path : an avatar folder (``avatar.glb`` + ``textures/albedo.exr`` or ``albedo.png``, optional
    ``normal_object.png``, ``specular.png``, ``roughness_metallic.png``), its ``avatar.json``, or any
    ``.glb`` / ``.gltf`` / ``.obj`` with a base colour texture (sRGB, decoded to linear) or material colour.
    The avatar's fitted expression (glb morph weights) is applied. Returns dict(vertices, triangles,
    uvs, normals, albedo, specular, roughness[, normal_map, normal_map_space, tangents], source).
    """
    p = Path(path)
    if p.name == "avatar.json" and p.is_file():
        p = p.parent
    if p.is_dir():
        return _load_avatar_folder(p)
    if not p.is_file():
        raise InputError(f"subject not found: {p} (give an avatar folder or a .glb/.obj file)")
    if p.suffix.lower() not in (".glb", ".gltf", ".obj"):
        raise InputError(f"subject {p} is not an avatar folder, .glb, .gltf or .obj (convert it to glTF)")
    return _load_mesh_file(p)


def _load_avatar_folder(folder: Path) -> dict:
    from ..imageio import read_image

    glb = folder / "avatar.glb"
    if not glb.is_file():
        raise InputError(f"{folder} has no avatar.glb (give an avatar folder made by `pnrelight avatar`)")
    mesh = _load_mesh_file(glb, need_texture=False)
    tdir = folder / "textures"
    if (tdir / "albedo.exr").is_file():
        albedo = read_image(tdir / "albedo.exr")
    elif (tdir / "albedo.png").is_file():
        from ..avatar.color import srgb_to_linear

        albedo = srgb_to_linear(read_image(tdir / "albedo.png"))
    else:
        raise InputError(f"avatar folder {folder} lacks textures/albedo.exr and textures/albedo.png (rebuild the avatar)")
    albedo = np.asarray(albedo, dtype=np.float32)
    if albedo.ndim == 2:
        albedo = np.repeat(albedo[..., None], 3, axis=2)
    mesh["albedo"] = np.ascontiguousarray(np.clip(albedo[..., :3], 0.0, None))
    if (tdir / "normal_object.png").is_file():
        n = read_image(tdir / "normal_object.png")[..., :3] * 2.0 - 1.0
        mesh["normal_map"] = _normalize(n).astype(np.float32)  # model frame = the glb's world frame
        mesh["normal_map_space"] = "object"
        mesh.pop("tangents", None)
    if (tdir / "specular.png").is_file():
        spec = read_image(tdir / "specular.png")
        mesh["specular"] = np.asarray(spec if spec.ndim == 2 else spec[..., 0], dtype=np.float32)
    if (tdir / "roughness_metallic.png").is_file():
        mesh["roughness"] = np.asarray(read_image(tdir / "roughness_metallic.png")[..., 1], dtype=np.float32)
    elif np.ndim(mesh.get("specular")) == 2:
        from ..avatar.export import roughness_metallic_from_specular

        mesh["roughness"] = roughness_metallic_from_specular(mesh["specular"])[..., 1]
    mesh["source"] = str(folder)
    return mesh


def _pil_to_array(img) -> np.ndarray:
    arr = np.asarray(img.convert("RGB") if img.mode not in ("RGB", "L", "I;16") else img)
    scale = 65535.0 if arr.dtype == np.uint16 or img.mode == "I;16" else 255.0
    arr = arr.astype(np.float32) / scale
    return arr if arr.ndim == 3 else np.repeat(arr[..., None], 3, axis=2)


def _check_obj_textures(path: Path) -> None:
    """InputError when an .obj's material library or a texture it names is missing (trimesh only warns)."""
    text = path.read_text(errors="replace")
    for line in text.splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) == 2 and parts[0] == "mtllib":
            mtl = path.parent / parts[1].strip()
            if not mtl.is_file():
                raise InputError(f"{path} names material library {parts[1].strip()}, which is missing (put it next to the .obj)")
            for mline in mtl.read_text(errors="replace").splitlines():
                mparts = mline.strip().split()
                if mparts and mparts[0].lower() in ("map_kd", "map_ka", "map_bump", "bump", "norm", "map_pr"):
                    tex = mtl.parent / mparts[-1]
                    if not tex.is_file():
                        raise InputError(f"texture {mparts[-1]} named by {mtl.name} is missing (put it next to the .mtl)")


def _load_mesh_file(path: Path, need_texture: bool = True) -> dict:
    try:
        import trimesh
    except ImportError:
        raise InputError("loading meshes needs trimesh (pip install 'pnrelight[lightstage]')") from None
    if path.suffix.lower() == ".obj":
        _check_obj_textures(path)
    try:
        loaded = trimesh.load(str(path), process=False, force="scene")
    except Exception as exc:  # noqa: BLE001 - any parser failure is bad input
        raise InputError(f"cannot read {path}: {type(exc).__name__}: {exc} (is it a valid mesh file?)") from None
    geoms = []
    for node in loaded.graph.nodes_geometry:
        transform, name = loaded.graph[node]
        g = loaded.geometry[name]
        if not isinstance(g, trimesh.Trimesh) or len(g.faces) == 0:
            continue
        g = g.copy()
        g.apply_transform(transform)
        geoms.append(g)
    if not geoms:
        raise InputError(f"{path} holds no triangles (give a mesh file with at least one triangle)")
    images, colours, parts = {}, [], []
    rough_tex, normal_tex, rough_val = None, None, DEFAULT_ROUGHNESS
    for g in geoms:
        vis = g.visual
        mat = getattr(vis, "material", None)
        img, colour = None, None
        if mat is not None:
            if hasattr(mat, "baseColorTexture"):  # glTF PBR
                img = mat.baseColorTexture
                colour = mat.baseColorFactor
                factor = 1.0 if getattr(mat, "roughnessFactor", None) is None else float(mat.roughnessFactor)
                if getattr(mat, "metallicRoughnessTexture", None) is not None:
                    rough_tex = _pil_to_array(mat.metallicRoughnessTexture)[..., 1] * factor  # glTF: G = roughness
                else:
                    rough_val = factor
                if getattr(mat, "normalTexture", None) is not None:
                    normal_tex = _pil_to_array(mat.normalTexture) * 2.0 - 1.0
            else:  # SimpleMaterial (.obj)
                img = getattr(mat, "image", None)
                colour = getattr(mat, "diffuse", None)
        uv = getattr(vis, "uv", None)
        if img is not None and (uv is None or len(uv) != len(g.vertices)):
            raise InputError(f"{path} has a texture but no per-vertex uvs (export it with UVs)")
        if img is not None:  # by content: primitives sharing one atlas (e.g. a material per part) are one texture
            images[(img.size, img.mode, hashlib.sha1(img.tobytes()).hexdigest())] = img
        if colour is not None:  # trimesh keeps material colours as uint8
            colour = np.asarray(colour)
            colour = colour.astype(np.float64).reshape(-1)[:3] / (255.0 if colour.dtype == np.uint8 else 1.0)
        colours.append(colour)
        parts.append((g, uv, img))
    if len(images) > 1 or (images and any(img is None for _, _, img in parts)):
        raise InputError(f"{path} has {len(parts)} meshes with {len(images)} base colour textures: the renderer takes one "
                         "texture atlas (join the meshes and bake one texture)")
    verts, tris, uvs, normals, offset = [], [], [], [], 0
    for g, uv, _ in parts:
        verts.append(np.asarray(g.vertices, dtype=np.float64))
        normals.append(np.asarray(g.vertex_normals, dtype=np.float64))  # the file's normals when it has them
        tris.append(np.asarray(g.faces, dtype=np.int64) + offset)
        uvs.append(np.zeros((len(g.vertices), 2)) if uv is None else np.asarray(uv, dtype=np.float64))
        offset += len(g.vertices)
    mesh = {"vertices": np.concatenate(verts).astype(np.float32), "triangles": np.concatenate(tris).astype(np.int32),
            "uvs": np.concatenate(uvs).astype(np.float32), "source": str(path)}
    mesh["normals"] = np.concatenate(normals).astype(np.float32)
    if path.suffix.lower() == ".glb":
        morph = _glb_morph_offset(path, [len(g.vertices) for g, _, _ in parts])
        if morph.any():  # the fitted expression: the base mesh's normals no longer fit
            from ..avatar.face_model import vertex_normals

            mesh["vertices"] = (mesh["vertices"] + morph).astype(np.float32)
            mesh["normals"] = vertex_normals(mesh["vertices"], mesh["triangles"])
    if images:
        from ..avatar.color import srgb_to_linear

        tex = srgb_to_linear(_pil_to_array(next(iter(images.values()))))
        factor = next((c for c in colours if c is not None), None)
        mesh["albedo"] = (tex * (1.0 if factor is None else factor.astype(np.float32))).astype(np.float32)
    elif any(c is not None for c in colours):
        mesh["albedo"] = next(c for c in colours if c is not None).astype(np.float32)
    elif need_texture:
        raise InputError(f"{path} has no base colour texture or material colour (export it with its textures)")
    if rough_tex is not None and len(parts) == 1:
        mesh["roughness"] = rough_tex.astype(np.float32)
    else:
        mesh["roughness"] = rough_val
    if normal_tex is not None and len(parts) == 1:
        mesh["normal_map"] = _normalize(normal_tex).astype(np.float32)
        mesh["normal_map_space"] = "tangent"
    mesh["specular"] = DEFAULT_SPECULAR
    return mesh


def _glb_morph_offset(path: Path, counts: list[int]) -> np.ndarray:
    """(V, 3) sum of weight x POSITION target of a one-mesh .glb, its primitives' offsets in order (V = sum of
    ``counts``, the loaded parts' vertex counts); zeros without morphs or when the parts are not its primitives."""
    from ..formats.glb import read_glb, read_vec3_accessor

    zero = np.zeros((int(sum(counts)), 3), dtype=np.float64)
    try:
        gltf, binary = read_glb(path)
    except (OSError, ValueError):
        return zero
    meshes = gltf.get("meshes", [])
    prims = meshes[0].get("primitives", []) if len(meshes) == 1 else []
    try:
        if [int(gltf["accessors"][p["attributes"]["POSITION"]]["count"]) for p in prims] != [int(c) for c in counts]:
            return zero
    except (KeyError, IndexError, TypeError):
        return zero
    parts = []
    for prim, count in zip(prims, counts):
        targets = prim.get("targets", [])
        weights = meshes[0].get("weights", [0.0] * len(targets))
        out = np.zeros((int(count), 3), dtype=np.float64)
        for target, weight in zip(targets, weights):
            if not weight or "POSITION" not in target:
                continue
            delta = read_vec3_accessor(gltf, binary, target["POSITION"])
            if delta.shape == out.shape:
                out += float(weight) * delta
        parts.append(out)
    return np.concatenate(parts) if parts else zero
