"""Synthetic meshes and renders shared by the avatar texture/pipeline tests (no face model needed)."""
from __future__ import annotations

import numpy as np


def dome_mesh(n: int = 41, height: float = 0.8, size: float = 0.1):
    """A smooth left/right-symmetric cap z = h cos(pi x / 2) cos(pi y / 2) over [-1, 1]^2, scaled to ``size`` metres.

    Returns vertices (V, 3) float32 (model frame, facing +z), triangles (F, 3) int32 counter-clockwise
    seen from +z, uvs (V, 2) float32 with (u, v) = ((x + 1) / 2, (y + 1) / 2), uv_mirror (V,) int32.
    """
    c = np.linspace(-1.0, 1.0, n)
    x, y = np.meshgrid(c, c[::-1])  # row 0 at the top (y = 1)
    z = height * np.cos(np.pi * x / 2) * np.cos(np.pi * y / 2)
    verts = np.stack([x, y, z], -1).reshape(-1, 3) * size
    uvs = np.stack([(x + 1) / 2, (y + 1) / 2], -1).reshape(-1, 2)
    idx = np.arange(n * n).reshape(n, n)
    a, b, cc, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    # a b / c d with rows going down in y: (c, d, b) and (c, b, a) are counter-clockwise from +z.
    tris = np.concatenate([np.stack([cc, d, b], -1).reshape(-1, 3), np.stack([cc, b, a], -1).reshape(-1, 3)])
    mirror = idx[:, ::-1].reshape(-1)
    return verts.astype(np.float32), tris.astype(np.int32), uvs.astype(np.float32), mirror.astype(np.int32)


def ellipsoid_mesh(n_lat: int, n_lon: int, radii: tuple[float, float, float]):
    """A closed latitude/longitude ellipsoid with semi-axes ``radii`` (x, y, z) and a vertex at each pole.

    Returns vertices (V, 3) float64 (poles last: south, north) and triangles (F, 3) int64, outward-facing;
    per band cell (a, b, d), (a, d, c), then one south and one north cap triangle per longitude.
    """
    lat = np.linspace(-np.pi / 2, np.pi / 2, n_lat + 1)[1:-1]
    lon = np.linspace(-np.pi, np.pi, n_lon, endpoint=False)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    rx, ry, rz = radii
    pts = np.stack([rx * np.cos(la) * np.sin(lo), ry * np.sin(la), rz * np.cos(la) * np.cos(lo)], -1).reshape(-1, 3)
    pts = np.concatenate([pts, [[0, -ry, 0], [0, ry, 0]]])
    south, north = len(pts) - 2, len(pts) - 1
    idx = np.arange(n_lat - 1)[:, None] * n_lon + np.arange(n_lon)[None]
    nxt = np.roll(idx, -1, axis=1)  # the next longitude
    a, b, c, d = idx[:-1], nxt[:-1], idx[1:], nxt[1:]
    bands = np.stack([np.stack([a, b, d], -1), np.stack([a, d, c], -1)], 2).reshape(-1, 3)
    caps = np.stack([np.stack([np.full(n_lon, south), nxt[0], idx[0]], -1),
                     np.stack([np.full(n_lon, north), idx[-1], nxt[-1]], -1)], 1).reshape(-1, 3)
    return pts, np.concatenate([bands, caps]).astype(np.int64)


def yaw_matrix(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def place(verts: np.ndarray, yaw_deg: float = 0.0, distance: float = 0.5):
    """Rotate about y and push the mesh ``distance`` metres in front of the camera: (vertices_cam, R, t)."""
    R = yaw_matrix(yaw_deg)
    t = np.array([0.0, 0.0, -distance])
    return (verts @ R.T + t).astype(np.float32), R, t


def smooth_texture(size: int, symmetric: bool = False) -> np.ndarray:
    """(size, size, 3) float32 smooth colour pattern in [0.1, 0.9]; symmetric in u when asked."""
    c = (np.arange(size) + 0.5) / size
    u, v = np.meshgrid(c, 1 - c)
    uu = np.abs(u - 0.5) if symmetric else u
    r = 0.5 + 0.35 * np.sin(2 * np.pi * (1.5 * uu + 0.3 * v))
    g = 0.5 + 0.35 * np.cos(2 * np.pi * (v * 1.2 + 0.2))
    b = 0.5 + 0.3 * np.sin(2 * np.pi * (uu * v * 2.0))
    return np.stack([r, g, b], -1).astype(np.float32)


def sample_texture(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup of (T, T, C) at uv (..., 2) with v up."""
    import cv2

    T = texture.shape[0]
    mx = (uv[..., 0] * T - 0.5).astype(np.float32)
    my = ((1 - uv[..., 1]) * T - 0.5).astype(np.float32)
    return cv2.remap(texture, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


_BLENDER_IMPORT = r"""
import json, sys
import bpy
import numpy as np
bpy.ops.wm.read_factory_settings(use_empty=True)
status = bpy.ops.import_scene.gltf(filepath=sys.argv[1])
meshes = [o for o in bpy.data.objects if o.type == "MESH"]
out = {"status": sorted(status), "meshes": [{"vertices": len(o.data.vertices), "polygons": len(o.data.polygons),
       "nodes": sorted({n.type for n in o.active_material.node_tree.nodes}) if o.active_material else []} for o in meshes],
       "images": {}}
for img in bpy.data.images:
    px = np.asarray(img.pixels[:], dtype=np.float32).reshape(img.size[1], img.size[0], img.channels)
    out["images"][img.name] = {"size": list(img.size), "mean": px[..., :3].mean(axis=(0, 1)).tolist(),
                               "top_left": px[-1, 0, :3].tolist()}
print("RESULT" + json.dumps(out))
"""


def blender_import_glb(path) -> dict:
    """Import a .glb with Blender's own glTF importer (bpy, in a subprocess: bpy loads once per process).

    Returns {"status", "meshes": [{"vertices", "polygons", "nodes"}], "images": {name: {"size", "mean", "top_left"}}}
    (image "top_left" is the first pixel of the top row, Blender stores rows bottom-up).
    """
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _BLENDER_IMPORT, str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])
