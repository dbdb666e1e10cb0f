"""Vectorised numpy z-buffer rasterizer (image space and texture space).

Pixel convention (shared by the avatar code): pixel (row i, column j) has its
centre at (u, v) = (j + 0.5, i + 0.5); u grows to the right, v downwards.
A pixel is covered by a triangle when its centre lies inside it (edges included).

The rasterizer works on all triangles at once: every triangle enumerates the
pixel centres of its bounding box, barycentrics come from per-triangle affine
edge functions, and the depth test is a ``np.maximum.at`` scatter into the
z-buffer. Candidates are processed in chunks so memory stays bounded.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_CHUNK_CANDIDATES = 1 << 21  # pixel candidates per chunk (~2M: ~100 MB of temporaries)
_EDGE_EPS = 1e-7  # closes hairline cracks along shared edges from rounding


@dataclass
class RasterResult:
    """Per-pixel visibility of a rasterised mesh.

    face_id : (H, W) int32, index of the visible triangle, -1 where empty.
    bary : (H, W, 3) float32 barycentric weights of the triangle's 3 vertices (0 where empty).
    depth : (H, W) float32 interpolated depth (larger is closer), -inf where empty.
    """

    face_id: np.ndarray
    bary: np.ndarray
    depth: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool, True where a triangle is visible."""
        return self.face_id >= 0


def rasterize(
    vertices_px: np.ndarray,
    triangles: np.ndarray,
    height: int,
    width: int,
    *,
    perspective_correct: bool = False,
    cull_backfaces: bool = False,
) -> RasterResult:
    """Rasterise triangles given in pixel coordinates with a z-buffer.

    Parameters
    ----------
    vertices_px : (V, 3) array of (u, v, depth): pixel coordinates (u right, v down,
        pixel centres at integer + 0.5) and a depth where LARGER IS CLOSER
        (camera-frame z works: the camera looks down -z).
    triangles : (F, 3) int vertex indices.
    height, width : output size.
    perspective_correct : when True the third column must be camera-frame z (< 0)
        and barycentrics are corrected for perspective (attributes then interpolate
        linearly on the 3D surface instead of in screen space).
    cull_backfaces : drop triangles that appear clockwise on screen, i.e. that face
        away from the viewer when ``triangles`` are counter-clockwise seen from outside.

    Returns
    -------
    RasterResult with face_id (H, W) int32, bary (H, W, 3) float32, depth (H, W) float32.
    """
    verts = np.asarray(vertices_px, dtype=np.float64)
    tris = np.asarray(triangles, dtype=np.int64).reshape(-1, 3)
    face_id = np.full(height * width, -1, dtype=np.int32)
    zbuf = np.full(height * width, -np.inf, dtype=np.float64)
    bary_out = np.zeros((height * width, 3), dtype=np.float32)
    if tris.size == 0 or height <= 0 or width <= 0:
        return _result(face_id, bary_out, zbuf, height, width)

    p0, p1, p2 = verts[tris[:, 0]], verts[tris[:, 1]], verts[tris[:, 2]]
    x0, y0, x1, y1, x2, y2 = p0[:, 0], p0[:, 1], p1[:, 0], p1[:, 1], p2[:, 0], p2[:, 1]
    # Signed area in (u, v-down) coordinates: negative for triangles counter-clockwise
    # in a y-up view, i.e. front-facing ones.
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    finite = np.isfinite(verts[tris].reshape(len(tris), -1)).all(axis=1)
    keep = finite & (np.abs(area) > 1e-12)
    if cull_backfaces:
        keep &= area < 0
    if perspective_correct:
        keep &= (p0[:, 2] < 0) & (p1[:, 2] < 0) & (p2[:, 2] < 0)

    # Bounding boxes in pixel indices: centres j + 0.5 within [min, max].
    xs = np.stack([x0, x1, x2], 1)
    ys = np.stack([y0, y1, y2], 1)
    with np.errstate(invalid="ignore"):
        jmin = np.clip(np.ceil(np.nan_to_num(xs.min(1)) - 0.5), 0, width).astype(np.int64)
        jmax = np.clip(np.floor(np.nan_to_num(xs.max(1)) - 0.5), -1, width - 1).astype(np.int64)
        imin = np.clip(np.ceil(np.nan_to_num(ys.min(1)) - 0.5), 0, height).astype(np.int64)
        imax = np.clip(np.floor(np.nan_to_num(ys.max(1)) - 0.5), -1, height - 1).astype(np.int64)
    bw = np.maximum(jmax - jmin + 1, 0)
    bh = np.maximum(imax - imin + 1, 0)
    counts = np.where(keep, bw * bh, 0)
    live = np.flatnonzero(counts)
    if live.size == 0:
        return _result(face_id, bary_out, zbuf, height, width)

    # Barycentric weights as affine functions of the pixel centre: w_k = a_k u + b_k v + c_k.
    inv = 1.0 / np.where(keep, area, 1.0)
    a0, b0 = (y1 - y2) * inv, (x2 - x1) * inv
    c0 = (x1 * y2 - x2 * y1) * inv
    a1, b1 = (y2 - y0) * inv, (x0 - x2) * inv
    c1 = (x2 * y0 - x0 * y2) * inv
    z = np.stack([p0[:, 2], p1[:, 2], p2[:, 2]], 1)

    # Chunk the live triangles so each chunk enumerates at most ~_CHUNK_CANDIDATES pixels.
    csum = np.cumsum(counts[live])
    starts = [0]
    while starts[-1] < live.size:
        base = csum[starts[-1] - 1] if starts[-1] else 0
        nxt = int(np.searchsorted(csum, base + _CHUNK_CANDIDATES, side="right"))
        starts.append(max(nxt, starts[-1] + 1))
    for s, e in zip(starts[:-1], starts[1:]):
        t = live[s:e]
        n = counts[t]
        tid = np.repeat(t, n)
        first = np.repeat(np.cumsum(n) - n, n)
        local = np.arange(tid.size, dtype=np.int64) - first
        w_t = bw[tid]
        j = jmin[tid] + local % w_t
        i = imin[tid] + local // w_t
        u = j + 0.5
        v = i + 0.5
        w0 = a0[tid] * u + b0[tid] * v + c0[tid]
        w1 = a1[tid] * u + b1[tid] * v + c1[tid]
        w2 = 1.0 - w0 - w1
        inside = (w0 >= -_EDGE_EPS) & (w1 >= -_EDGE_EPS) & (w2 >= -_EDGE_EPS)
        if not inside.any():
            continue
        tid, i, j = tid[inside], i[inside], j[inside]
        w = np.clip(np.stack([w0[inside], w1[inside], w2[inside]], 1), 0.0, 1.0)
        w /= w.sum(1, keepdims=True)
        zt = z[tid]
        if perspective_correct:
            # 1/z is affine in screen space; weights b_k/z_k renormalised are the surface barycentrics.
            wz = w / zt
            inv_z = wz.sum(1)
            depth = 1.0 / inv_z
            w = wz * depth[:, None]
        else:
            depth = (w * zt).sum(1)
        pix = i * width + j
        np.maximum.at(zbuf, pix, depth)
        win = depth >= zbuf[pix]
        face_id[pix[win]] = tid[win].astype(np.int32)
        bary_out[pix[win]] = w[win].astype(np.float32)
    return _result(face_id, bary_out, zbuf, height, width)


def _result(face_id, bary, zbuf, height, width) -> RasterResult:
    return RasterResult(
        face_id=face_id.reshape(height, width),
        bary=bary.reshape(height, width, 3),
        depth=zbuf.astype(np.float32).reshape(height, width),
    )


def interpolate(attr: np.ndarray, triangles: np.ndarray, raster: RasterResult, *, fill: float = 0.0) -> np.ndarray:
    """Interpolate per-vertex attributes over the visible triangles.

    attr : (V, C) or (V,) per-vertex values. Returns (H, W, C) (or (H, W)) float32,
    ``fill`` where no triangle is visible.
    """
    attr = np.asarray(attr)
    squeeze = attr.ndim == 1
    a = attr.reshape(len(attr), -1).astype(np.float32)
    tris = np.asarray(triangles, dtype=np.int64).reshape(-1, 3)
    h, w = raster.face_id.shape
    out = np.full((h * w, a.shape[1]), fill, dtype=np.float32)
    fid = raster.face_id.reshape(-1)
    sel = np.flatnonzero(fid >= 0)
    if sel.size:
        corners = tris[fid[sel]]  # (N, 3)
        b = raster.bary.reshape(-1, 3)[sel]
        out[sel] = (a[corners[:, 0]] * b[:, 0:1] + a[corners[:, 1]] * b[:, 1:2] + a[corners[:, 2]] * b[:, 2:3])
    out = out.reshape(h, w, -1)
    return out[..., 0] if squeeze else out


def uv_to_pixels(uvs: np.ndarray, size: int) -> np.ndarray:
    """Texture coordinates (V, 2) with v up in [0, 1] -> texel coordinates (V, 2) (u right, v down).

    Texel (row i, column j) of a ``size`` x ``size`` texture is centred at
    uv = ((j + 0.5) / size, 1 - (i + 0.5) / size): row 0 is the top (v = 1), as in glTF images.
    """
    uvs = np.asarray(uvs, dtype=np.float64)
    return np.stack([uvs[:, 0] * size, (1.0 - uvs[:, 1]) * size], axis=1)


def texel_uvs(size: int) -> np.ndarray:
    """(size, size, 2) float32 uv (v up) of every texel centre (see :func:`uv_to_pixels`)."""
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    u, v = np.meshgrid(c, 1.0 - c)
    return np.stack([u, v], axis=-1)


def rasterize_uv(uvs: np.ndarray, triangles: np.ndarray, size: int) -> RasterResult:
    """Rasterise a mesh in texture space: which triangle (and where in it) each texel lies on.

    uvs : (V, 2) texture coordinates, v up, in [0, 1]. triangles : (F, 3).
    Returns a RasterResult of shape (size, size); texel rows run from v = 1 (row 0) down to v = 0.
    Overlapping UV islands resolve to the later triangle index.
    """
    px = uv_to_pixels(uvs, size)
    tris = np.asarray(triangles, dtype=np.int64).reshape(-1, 3)
    # Depth = triangle index makes overlaps deterministic without a real depth.
    order = np.arange(len(tris), dtype=np.float64)
    verts = np.concatenate([px[tris.reshape(-1)], np.repeat(order, 3)[:, None]], axis=1)
    flat = np.arange(tris.size, dtype=np.int64).reshape(-1, 3)
    return rasterize(verts, flat, size, size)
