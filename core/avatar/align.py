"""Compare a fitted face with a ground-truth one: similarity alignment and point-to-surface distances.

A monocular fit recovers the head only up to the depth/scale ambiguity of the camera, so
geometry errors are measured after a similarity transform (rotation, translation, uniform
scale) that best maps the fitted landmark points onto the ground-truth ones (Umeyama 1991).
"""
from __future__ import annotations

import numpy as np


def similarity_alignment(source: np.ndarray, target: np.ndarray, *, with_scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity (s, R, t) with ``s * source @ R.T + t ~ target`` (Umeyama).

    source, target : (N, 3) corresponding points (rows with a NaN in either are ignored).
    Returns scale s (1.0 when ``with_scale`` is False), rotation R (3, 3) (det +1), translation t (3,).
    """
    src = np.asarray(source, dtype=np.float64)
    dst = np.asarray(target, dtype=np.float64)
    ok = np.isfinite(src).all(1) & np.isfinite(dst).all(1)
    src, dst = src[ok], dst[ok]
    if len(src) < 3:
        raise ValueError(f"need at least 3 corresponding points, got {len(src)}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    U, S, Vt = np.linalg.svd(b.T @ a / len(src))
    D = np.eye(3)
    D[2, 2] = np.sign(np.linalg.det(U) * np.linalg.det(Vt)) or 1.0  # a rotation, never a reflection
    R = U @ D @ Vt
    var_s = (a * a).sum() / len(src)
    s = float(np.trace(np.diag(S) @ D) / var_s) if with_scale else 1.0
    return s, R, mu_d - s * R @ mu_s


def apply_similarity(points: np.ndarray, transform: tuple[float, np.ndarray, np.ndarray]) -> np.ndarray:
    """(N, 3) points mapped by (s, R, t) from :func:`similarity_alignment`."""
    s, R, t = transform
    return s * np.asarray(points, dtype=np.float64) @ np.asarray(R).T + np.asarray(t)


def closest_point_on_triangles(points: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Closest point to each of ``points`` (N, 3) on its triangle (a[n], b[n], c[n]) (each (N, 3)).

    Ericson, Real-Time Collision Detection 5.1.5, vectorised: the Voronoi region of the point
    (a vertex, an edge or the face) decides the answer.
    """
    p = np.asarray(points, dtype=np.float64)
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    bp = p - b
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    cp = p - c
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    eps = 1e-30
    # Face region by default; the tests below overwrite it, most specific last.
    denom = np.maximum(va + vb + vc, eps)
    out = a + ab * (vb / denom)[..., None] + ac * (vc / denom)[..., None]
    bc_t = (d4 - d3) / np.maximum((d4 - d3) + (d5 - d6), eps)
    edge_bc = (va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0)
    out = np.where(edge_bc[..., None], b + (c - b) * bc_t[..., None], out)
    ac_t = d2 / np.where(np.abs(d2 - d6) > eps, d2 - d6, eps)
    edge_ac = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
    out = np.where(edge_ac[..., None], a + ac * ac_t[..., None], out)
    ab_t = d1 / np.where(np.abs(d1 - d3) > eps, d1 - d3, eps)
    edge_ab = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
    out = np.where(edge_ab[..., None], a + ab * ab_t[..., None], out)
    out = np.where(((d6 >= 0) & (d5 <= d6))[..., None], c, out)
    out = np.where(((d3 >= 0) & (d4 <= d3))[..., None], b, out)
    out = np.where(((d1 <= 0) & (d2 <= 0))[..., None], a, out)
    return out


def point_to_mesh_distance(points: np.ndarray, vertices: np.ndarray, triangles: np.ndarray, *, candidates: int = 32) -> np.ndarray:
    """(N,) distance from each of ``points`` (N, 3) to the surface of the mesh (vertices (V, 3), triangles (F, 3)).

    Exact distances to the ``candidates`` triangles whose centroids are nearest (a k-d tree), the
    smallest kept: exact whenever the closest triangle is among them, which holds for meshes whose
    triangles are small and even next to the distances measured (faces fitted to faces).
    """
    from scipy.spatial import cKDTree

    p = np.asarray(points, dtype=np.float64)
    v = np.asarray(vertices, dtype=np.float64)
    tri = np.asarray(triangles, dtype=np.int64)
    k = int(min(candidates, len(tri)))
    _, idx = cKDTree(v[tri].mean(1)).query(p, k=k)
    idx = idx.reshape(len(p), k)
    best = np.full(len(p), np.inf)
    for j in range(k):  # one candidate column at a time keeps memory at O(N)
        t = tri[idx[:, j]]
        q = closest_point_on_triangles(p, v[t[:, 0]], v[t[:, 1]], v[t[:, 2]])
        best = np.minimum(best, np.linalg.norm(p - q, axis=1))
    return best
