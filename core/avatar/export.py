"""glTF 2.0 binary (.glb) export of a textured face mesh with a PBR material.

The .glb is written by hand (JSON chunk + BIN chunk, spec: registry.khronos.org/glTF):
one mesh, one primitive with POSITION, NORMAL, TANGENT, TEXCOORD_0 and uint32 indices,
optional morph targets (POSITION deltas only, sparse where few vertices move; names in the
mesh's ``extras.targetNames``, which Blender's importer turns into shape keys),
and a metallic-roughness material with three PNG textures embedded in the binary chunk:
baseColorTexture (sRGB), normalTexture (tangent space, linear) and
metallicRoughnessTexture (linear; G = roughness, B = metalness).

glTF normal maps are tangent-space, so :func:`tangent_space_normal_map` converts the
baked object-space (model-frame) normal map with the same per-vertex tangents that we
store in the TANGENT attribute (bitangent = cross(normal, tangent) * w, as glTF defines it).
Our uvs have v up; glTF texture coordinates have v down, so TEXCOORD_0 = (u, 1 - v) and the
textures are stored with row 0 at v = 1, exactly as :mod:`pnrelight.avatar.raster` lays them out.
"""
from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path

import numpy as np

from .raster import interpolate, rasterize_uv

_FLOAT, _UINT, _USHORT = 5126, 5125, 5123
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963


def vertex_tangents(vertices: np.ndarray, normals: np.ndarray, uvs: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Per-vertex tangents (V, 4): xyz along increasing u, w = +-1 handedness so that
    cross(normal, tangent) * w points along increasing v (v up). Gram-Schmidt against the normal.
    """
    v = np.asarray(vertices, dtype=np.float64)
    n = np.asarray(normals, dtype=np.float64)
    uv = np.asarray(uvs, dtype=np.float64)
    t = np.asarray(triangles, dtype=np.int64)
    e1, e2 = v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]]
    d1, d2 = uv[t[:, 1]] - uv[t[:, 0]], uv[t[:, 2]] - uv[t[:, 0]]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    r = np.where(np.abs(det) > 1e-20, 1.0 / np.where(det == 0, 1.0, det), 0.0)[:, None]
    tan = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) * r  # dP/du
    bit = (e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) * r  # dP/dv
    T = np.zeros_like(v)
    B = np.zeros_like(v)
    for k in range(3):
        np.add.at(T, t[:, k], tan)
        np.add.at(B, t[:, k], bit)
    T -= n * (n * T).sum(1, keepdims=True)
    norm = np.linalg.norm(T, axis=1, keepdims=True)
    # Degenerate tangent: any unit vector orthogonal to the normal.
    fallback = np.cross(n, np.where(np.abs(n[:, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]]))
    T = np.where(norm > 1e-12, T / np.maximum(norm, 1e-30), fallback / np.maximum(np.linalg.norm(fallback, axis=1, keepdims=True), 1e-30))
    w = np.where((np.cross(n, T) * B).sum(1) < 0, -1.0, 1.0)
    return np.concatenate([T, w[:, None]], axis=1).astype(np.float32)


def tangent_space_normal_map(
    normal_object: np.ndarray, vertices: np.ndarray, normals: np.ndarray, tangents: np.ndarray, uvs: np.ndarray, triangles: np.ndarray,
    *, uv_raster=None,
) -> np.ndarray:
    """Object-space unit normal texture (T, T, 3) -> tangent-space unit normals (T, T, 3) (x = tangent, y = bitangent, z = normal).

    Texels outside the UV islands get (0, 0, 1) (flat). ``uv_raster``: ``rasterize_uv(uvs, triangles, T)`` if already computed.
    """
    size = normal_object.shape[0]
    r = rasterize_uv(uvs, triangles, size) if uv_raster is None else uv_raster
    N = interpolate(normals, triangles, r).astype(np.float64)
    Tw = interpolate(tangents, triangles, r).astype(np.float64)
    N /= np.maximum(np.linalg.norm(N, axis=-1, keepdims=True), 1e-12)
    Tt = Tw[..., :3] - N * (N * Tw[..., :3]).sum(-1, keepdims=True)
    Tt /= np.maximum(np.linalg.norm(Tt, axis=-1, keepdims=True), 1e-12)
    B = np.cross(N, Tt) * np.where(Tw[..., 3:] < 0, -1.0, 1.0)
    n = np.asarray(normal_object, dtype=np.float64)
    out = np.stack([(n * Tt).sum(-1), (n * B).sum(-1), (n * N).sum(-1)], axis=-1)
    out[..., 2] = np.maximum(out[..., 2], 1e-3)  # a tangent-space normal never points into the surface
    out /= np.linalg.norm(out, axis=-1, keepdims=True)
    out[~r.mask] = (0.0, 0.0, 1.0)
    return out.astype(np.float32)


def roughness_metallic_from_specular(specular: np.ndarray, *, full_shine: float = 0.5, rough_min: float = 0.35,
                                     rough_max: float = 0.9) -> np.ndarray:
    """glTF metallicRoughness texture (T, T, 3) from a specular reflectance map k_s (T, T) (``intrinsics.specular_map``).

    Stronger highlights mean a smoother (shinier) surface: with s = clip(k_s / full_shine, 0, 1),
    roughness = rough_max - (rough_max - rough_min) * s (skin: ~0.8 matte, ~0.45 on oily highlights);
    skin is a dielectric so metalness = 0. Channels: R unused (1), G roughness, B metalness.
    """
    s = np.asarray(specular, dtype=np.float32)
    if s.ndim == 3:
        s = s.mean(-1)
    s = np.clip(s / full_shine, 0.0, 1.0)
    rough = rough_max - (rough_max - rough_min) * s
    return np.stack([np.ones_like(rough), rough, np.zeros_like(rough)], axis=-1)


def encode_png(image: np.ndarray, *, compress_level: int = 1) -> bytes:
    """8-bit PNG bytes of a (H, W, 3) image in [0, 1] (fast zlib level: textures are large, files are temporary-ish)."""
    from PIL import Image

    from ..imageio import to_uint8

    buf = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def write_glb(
    path: str | os.PathLike,
    vertices: np.ndarray,
    triangles: np.ndarray,
    uvs: np.ndarray,
    normals: np.ndarray,
    base_color_tex: np.ndarray,
    normal_tex_tangent_space: np.ndarray,
    roughness_metallic_tex: np.ndarray,
    *,
    tangents: np.ndarray | None = None,
    name: str = "avatar",
    double_sided: bool = True,
    morph_targets: np.ndarray | None = None,
    morph_target_names: list[str] | None = None,
    morph_weights: np.ndarray | None = None,
    morph_epsilon: float = 1e-6,
) -> Path:
    """Write a glTF 2.0 binary file.

    vertices (V, 3) metres, y up; triangles (F, 3) counter-clockwise seen from outside; uvs (V, 2) v up;
    normals (V, 3) unit; base_color_tex (T, T, 3) sRGB-encoded in [0, 1];
    normal_tex_tangent_space (T, T, 3) unit tangent-space normals (encoded to (n + 1) / 2 here);
    roughness_metallic_tex (T, T, 3) linear (G roughness, B metalness);
    tangents (V, 4) as from :func:`vertex_tangents` (computed when None; must be the ones the normal map used).
    morph_targets (E, V, 3) position deltas in metres (same frame as ``vertices``); morph_target_names
    (E,) strings (mesh ``extras.targetNames``); morph_weights (E,) default weights (0 when None).
    Delta components with |d| <= ``morph_epsilon`` are written as 0; a target is stored as a sparse
    accessor (indices + values of the moving vertices only) when that is smaller than a dense one.
    The file appears atomically.
    """
    from ..atomic import atomic_output_file

    v = np.ascontiguousarray(vertices, dtype=np.float32)
    f = np.ascontiguousarray(triangles, dtype=np.uint32).reshape(-1)
    n = np.asarray(normals, dtype=np.float32)
    n = np.ascontiguousarray(n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12))
    tg = vertex_tangents(v, n, uvs, triangles) if tangents is None else np.asarray(tangents, dtype=np.float32)
    tg = np.ascontiguousarray(tg, dtype=np.float32)
    uv_gl = np.ascontiguousarray(np.stack([uvs[:, 0], 1.0 - uvs[:, 1]], 1), dtype=np.float32)

    blobs: list[bytes] = []
    views: list[dict] = []
    accessors: list[dict] = []

    def add_view(data: bytes, target: int | None = None) -> int:
        offset = sum(len(b) for b in blobs)
        blobs.append(data + b"\x00" * (-len(data) % 4))
        view = {"buffer": 0, "byteOffset": offset, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        views.append(view)
        return len(views) - 1

    def add_accessor(arr: np.ndarray, kind: str, component: int, target: int, with_bounds: bool = False) -> int:
        acc = {"bufferView": add_view(arr.tobytes(), target), "componentType": component, "count": int(arr.shape[0]), "type": kind}
        if with_bounds:
            acc["min"] = [float(x) for x in arr.min(0)]
            acc["max"] = [float(x) for x in arr.max(0)]
        accessors.append(acc)
        return len(accessors) - 1

    attrs = {
        "POSITION": add_accessor(v, "VEC3", _FLOAT, _ARRAY_BUFFER, with_bounds=True),
        "NORMAL": add_accessor(n, "VEC3", _FLOAT, _ARRAY_BUFFER),
        "TANGENT": add_accessor(tg, "VEC4", _FLOAT, _ARRAY_BUFFER),
        "TEXCOORD_0": add_accessor(uv_gl, "VEC2", _FLOAT, _ARRAY_BUFFER),
    }
    idx = add_accessor(f, "SCALAR", _UINT, _ELEMENT_ARRAY_BUFFER)
    targets, weights, names = _morph_targets(morph_targets, morph_target_names, morph_weights, len(v), morph_epsilon)
    target_ids = []
    for delta in targets:
        accessors.append(_target_accessor(delta, add_view))
        target_ids.append(len(accessors) - 1)
    if not isinstance(normal_tex_tangent_space, bytes):
        normal_tex_tangent_space = (np.asarray(normal_tex_tangent_space, dtype=np.float32) + 1.0) * 0.5
    images = []
    for label, tex in (("base_color", base_color_tex), ("normal", normal_tex_tangent_space), ("metallic_roughness", roughness_metallic_tex)):
        png = tex if isinstance(tex, bytes) else encode_png(tex)
        images.append({"bufferView": add_view(png), "mimeType": "image/png", "name": label})
    binary = b"".join(blobs)
    primitive = {"attributes": attrs, "indices": idx, "material": 0, "mode": 4}
    mesh = {"name": name, "primitives": [primitive]}
    if target_ids:
        primitive["targets"] = [{"POSITION": k} for k in target_ids]
        mesh["weights"] = weights
        if names is not None:
            mesh["extras"] = {"targetNames": names}
    gltf = {
        "asset": {"version": "2.0", "generator": "pnrelight avatar"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": name}],
        "meshes": [mesh],
        "materials": [
            {
                "name": f"{name}_skin",
                "doubleSided": bool(double_sided),
                "pbrMetallicRoughness": {
                    "baseColorTexture": {"index": 0},
                    "metallicRoughnessTexture": {"index": 2},
                    "metallicFactor": 1.0,
                    "roughnessFactor": 1.0,
                },
                "normalTexture": {"index": 1, "scale": 1.0},
            }
        ],
        "samplers": [{"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}],
        "textures": [{"source": i, "sampler": 0} for i in range(3)],
        "images": images,
        "accessors": accessors,
        "bufferViews": views,
        "buffers": [{"byteLength": len(binary)}],
    }
    js = json.dumps(gltf, separators=(",", ":")).encode("utf-8")
    js += b" " * (-len(js) % 4)
    total = 12 + 8 + len(js) + 8 + len(binary)
    path = Path(path)
    with atomic_output_file(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(struct.pack("<4sII", b"glTF", 2, total))
            fh.write(struct.pack("<I4s", len(js), b"JSON") + js)
            fh.write(struct.pack("<I4s", len(binary), b"BIN\x00") + binary)
    return path


def _morph_targets(deltas, names, weights, num_vertices: int, epsilon: float):
    """Checked morph inputs: list of (V, 3) float32 deltas (tiny components zeroed), (E,) weights, names or None."""
    if deltas is None:
        if names is not None or weights is not None:
            raise ValueError("morph_target_names / morph_weights given without morph_targets")
        return [], [], None
    d = np.asarray(deltas, dtype=np.float32)
    if d.ndim != 3 or d.shape[1:] != (num_vertices, 3):
        raise ValueError(f"morph_targets must be (E, {num_vertices}, 3), got {d.shape}")
    if not np.isfinite(d).all():
        raise ValueError("morph_targets contain NaN or infinity")
    count = d.shape[0]
    w = np.zeros(count) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if len(w) != count or not np.isfinite(w).all():
        raise ValueError(f"morph_weights must be {count} finite numbers")
    if names is not None:
        names = [str(x) for x in names]
        if len(names) != count:
            raise ValueError(f"morph_target_names must have {count} names, got {len(names)}")
    d = np.where(np.abs(d) > epsilon, d, np.float32(0.0))
    return [np.ascontiguousarray(x) for x in d], [float(x) for x in w], names


def _target_accessor(delta: np.ndarray, add_view) -> dict:
    """POSITION morph-target accessor of (V, 3) deltas: dense, or sparse over the moving vertices when smaller.

    A sparse accessor without a bufferView starts as zeros (glTF 2.0, section 3.6.2.3); min/max are required for
    POSITION targets and describe the values after substitution.
    """
    count = len(delta)
    moving = np.flatnonzero(np.any(delta != 0, axis=1))
    index_type, index_dtype = (_USHORT, "<u2") if count <= 65536 else (_UINT, "<u4")
    index_bytes = np.dtype(index_dtype).itemsize
    acc = {"componentType": _FLOAT, "count": count, "type": "VEC3"}
    if len(moving) * (12 + index_bytes) < 12 * count:
        if len(moving):  # sparse.count must be >= 1; no moving vertex: no data at all (all zeros)
            acc["sparse"] = {"count": int(len(moving)),
                             "indices": {"bufferView": add_view(moving.astype(index_dtype).tobytes()), "componentType": index_type},
                             "values": {"bufferView": add_view(delta[moving].tobytes())}}
    else:
        acc["bufferView"] = add_view(delta.tobytes(), _ARRAY_BUFFER)
    acc["min"] = [float(x) for x in delta.min(0)]  # over every vertex: the zeros of a sparse target count
    acc["max"] = [float(x) for x in delta.max(0)]
    return acc
