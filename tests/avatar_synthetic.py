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


def read_glb(path):
    """(glTF JSON dict, BIN chunk bytes) of a .glb file (two chunks, as export.write_glb writes them)."""
    import json
    import struct

    data = open(path, "rb").read()
    magic, version, total = struct.unpack_from("<4sII", data, 0)
    assert magic == b"glTF" and version == 2 and total == len(data)
    js_len, js_type = struct.unpack_from("<I4s", data, 12)
    assert js_type == b"JSON"
    gltf = json.loads(data[20 : 20 + js_len])
    bin_len, bin_type = struct.unpack_from("<I4s", data, 20 + js_len)
    assert bin_type == b"BIN\x00"
    return gltf, data[28 + js_len : 28 + js_len + bin_len]


_COMPONENTS = {5121: "<u1", 5123: "<u2", 5125: "<u4", 5126: "<f4"}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


def glb_accessor(gltf: dict, binary: bytes, index: int) -> np.ndarray:
    """Decode accessor ``index`` -> (count, width) array: the bufferView data (zeros without one), then sparse values."""

    def view(view_index, dtype, count, width):
        v = gltf["bufferViews"][view_index]
        assert "byteStride" not in v
        return np.frombuffer(binary, dtype=dtype, count=count * width, offset=v["byteOffset"]).reshape(count, width)

    acc = gltf["accessors"][index]
    dtype, width = _COMPONENTS[acc["componentType"]], _WIDTH[acc["type"]]
    out = np.zeros((acc["count"], width), dtype) if "bufferView" not in acc else view(acc["bufferView"], dtype, acc["count"], width).copy()
    if "sparse" in acc:
        sp = acc["sparse"]
        idx = view(sp["indices"]["bufferView"], _COMPONENTS[sp["indices"]["componentType"]], sp["count"], 1)[:, 0]
        assert np.all(np.diff(idx.astype(np.int64)) > 0), "sparse indices must increase strictly"
        out[idx] = view(sp["values"]["bufferView"], dtype, sp["count"], width)
    return out


def head_blendshapes(vertices: np.ndarray, mouth_y: float):
    """Synthetic ARKit-named morph targets for any head-like mesh (metres, y up, face along +z).

    jawOpen: front vertices below ``mouth_y`` move down and back (at least 3 mm), nothing else moves;
    browInnerUp: front vertices in the top fifth of the face move up 4 mm; cheekPuff: every vertex
    moves 1 % outwards from the centre (a target no sparse accessor can shrink).
    Returns deltas (3, V, 3) float32 and the names.
    """
    v = np.asarray(vertices, dtype=np.float64)
    lo, hi = v.min(0), v.max(0)
    front = v[:, 2] > lo[2] + 0.6 * (hi[2] - lo[2])
    jaw = front & (v[:, 1] < mouth_y)
    s = 0.3 + 0.7 * np.clip((mouth_y - v[:, 1]) / (0.5 * (mouth_y - lo[1]) + 1e-9), 0, 1)
    d_jaw = np.where(jaw[:, None], s[:, None] * np.array([0.0, -0.012, -0.004]), 0.0)
    brow = front & (v[:, 1] > hi[1] - 0.2 * (hi[1] - mouth_y))
    d_brow = np.where(brow[:, None], np.array([0.0, 0.004, 0.0]), 0.0)
    d_puff = 0.01 * (v - 0.5 * (lo + hi))
    return np.stack([d_jaw, d_brow, d_puff]).astype(np.float32), ["jawOpen", "browInnerUp", "cheekPuff"]


def ellipsoid_head(n_lat: int = 24, n_lon: int = 40):
    """A head-sized ellipsoid (metres, y up, face along +z) with spherical uvs.

    Returns vertices (V, 3) float32, triangles (F, 3) int32, uvs (V, 2) float32 and the mouth height (m).
    """
    v, tris = ellipsoid_mesh(n_lat, n_lon, (0.075, 0.1, 0.09))
    u = np.arctan2(v[:, 0], v[:, 2]) / (2 * np.pi) + 0.5
    t = np.arcsin(np.clip(v[:, 1] / 0.1, -1, 1)) / np.pi + 0.5
    return v.astype(np.float32), tris.astype(np.int32), np.stack([u, t], 1).astype(np.float32), -0.04


_BLENDER_SHAPE_KEYS = r"""
import json, sys
from pathlib import Path
import bpy
import numpy as np
job = json.loads(Path(sys.argv[1]).read_text())
results = []
for case in job["cases"]:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    status = bpy.ops.import_scene.gltf(filepath=case["glb"])
    (obj,) = [o for o in bpy.data.objects if o.type == "MESH"]
    keys = obj.data.shape_keys.key_blocks
    res = {"status": sorted(status), "names": [k.name for k in keys], "values": [float(k.value) for k in keys]}
    def positions():
        mesh = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh()
        co = np.empty(len(mesh.vertices) * 3, np.float32)
        mesh.vertices.foreach_get("co", co)
        m = np.array(obj.matrix_world, dtype=np.float64)
        return co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3]
    for k in keys[1:]:
        k.value = 0.0
    bpy.context.view_layer.update()
    rest = positions()
    moved = []
    for k in keys[1:]:  # each key alone at 1
        k.value = 1.0
        bpy.context.view_layer.update()
        moved.append(positions())
        k.value = 0.0
    np.save(case["out"] + "_rest.npy", rest)
    np.save(case["out"] + "_moved.npy", np.stack(moved))
    results.append(res)
print("RESULT" + json.dumps(results))
"""


def blender_shape_keys(cases: list[dict], job_dir) -> list[dict]:
    """Import each case's .glb with Blender's glTF importer (bpy, one subprocess) and read its shape keys.

    cases: [{"glb": path}]. Returns per case {"status", "names" (with "Basis"), "values" (as imported),
    "rest" (V, 3), "moved" (K, V, 3)}: world positions of the evaluated mesh (Blender frame, z up) with
    every key at 0, then with key k (in the order of "names", Basis excluded) at 1 and the others at 0.
    """
    import json
    import subprocess
    import sys
    from pathlib import Path

    job_dir = Path(job_dir)
    job = {"cases": [{"glb": str(c["glb"]), "out": str(job_dir / f"case{i}")} for i, c in enumerate(cases)]}
    (job_dir / "job.json").write_text(json.dumps(job))
    proc = subprocess.run([sys.executable, "-c", _BLENDER_SHAPE_KEYS, str(job_dir / "job.json")], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    results = json.loads(line[len("RESULT"):])
    for res, c in zip(results, job["cases"]):
        res["rest"], res["moved"] = np.load(c["out"] + "_rest.npy"), np.load(c["out"] + "_moved.npy")
    return results
