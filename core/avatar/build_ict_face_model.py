"""Build the default head model (``assets/face_model/ict_head.npz``) from ICT-FaceKit "Light".

Run: ``python -m pnrelight.avatar.build_ict_face_model SOURCE.npz [--out PATH] [--figures DIR]``,
where SOURCE is the lossless repack of ICT-FaceKit's ``FaceXModel/`` OBJs
(``ict_facekit_light.npz``: neutral mesh in centimetres, quads, multi-tile UVs, 100 identity
and 53 expression deltas; MIT licence, USC Institute for Creative Technologies).

Steps (each a function below, all deterministic):

1. Parts: the faces of the skin (``M_Face``, ``M_BackHead``: face, skull, neck, mouth and eye
   sockets), gums and tongue, teeth, scleras and irises are kept; the transparent overlays
   (eye blend, eye occlusion, lacrimal fluid, lashes) are dropped. Quads become two triangles.
2. Atlas: every upstream UV tile is scaled into its own cell of a single 0-1 square
   (:data:`ATLAS_CELLS`); both eyes share the sclera and the iris cells (one eye texture).
   Vertices are split where a position carries several UVs (glTF needs one UV per vertex);
   ``source_index`` maps each output vertex to its upstream vertex, so the bases are stored
   once per upstream vertex.
3. Units and frame: metres, y up, the face looking along +z (glTF's frame: Blender's importer
   turns it into +Z up, facing -Y, like Blender's own heads).
4. Bases: the first :data:`NUM_IDENTITY` identity components (their share of the identity
   variance is printed) and all 53 ARKit-named expressions, float16.
5. Landmarks: the mediapipe canonical face (the default model's 468 vertices) is registered to
   the ICT face: an affine map from :data:`LANDMARK_PAIRS` (ICT's 68-point indices against
   mediapipe indices of the same anatomical points; affine because mediapipe's canonical depth is
   not metric), then a non-rigid fit of ICT identity and
   expression coefficients to the 468 points (closest points on the ICT face, alternated with a
   regularised least-squares solve, and the affine map refitted). Each mediapipe vertex then lands on its closest point of the
   registered ICT face (triangle + barycentric coordinates, which hold for every identity).
   The eye contours (upper and lower lid, 16 landmarks per eye) are matched to ICT's eyelid margins
   by arc length instead (:func:`eyelid_correspondence`). The 36 face-oval landmarks and the iris
   landmarks (468-477) have no point: the oval follows the visible outline, not fixed surface points.
6. Mirror map: each vertex's mirror is the nearest vertex of the same part to its reflection
   in x = 0.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from .face_model import NUM_MEDIAPIPE_LANDMARKS, FaceModel

ICT_HEAD_PATH_NAME = "ict_head.npz"
NUM_IDENTITY = 50
CM = 0.01

# Part labels of the output (index = label).
PART_NAMES = ["face", "head", "mouth_socket", "eye_socket", "gums_tongue", "teeth", "sclera", "iris"]
SKIN_PARTS = ("face", "head", "mouth_socket", "eye_socket")
# Upstream vertex ranges of the skin parts (ICT-FaceKit's README), end exclusive.
SKIN_VERTEX_RANGES = {"face": (0, 9409), "head": (9409, 11248), "mouth_socket": (11248, 13294), "eye_socket": (13294, 14062)}
KEPT_MATERIALS = {"M_Face": "face", "M_BackHead": None, "M_GumsTongue": "gums_tongue", "M_Teeth": "teeth",
                  "M_ScleraLeft": "sclera", "M_ScleraRight": "sclera", "M_IrisLeft": "iris", "M_IrisRight": "iris"}
# Atlas cell (u0, v0, size) of each upstream UV source: (tile index, part group).
ATLAS_CELLS = {
    "face": (0.0, 0.375, 0.625),      # tile 0: the face, the part the photo textures: the largest cell
    "head": (0.625, 0.625, 0.375),    # tile 1: skull, neck, mouth and eye sockets
    "teeth": (0.625, 0.25, 0.375),    # tile 3
    "gums_tongue": (0.75, 0.0, 0.25),  # tile 2
    "sclera": (0.0, 0.0, 0.3125),     # tile 0 of the eyeball meshes
    "iris": (0.3125, 0.0, 0.3125),
}
CELL_MARGIN = 0.004  # of the cell, on each side
PAIR_WEIGHT = 4.0  # weight of the anatomical landmark pairs against the closest-point terms

# (ICT 68-point index, mediapipe index) of the same anatomical points.
LANDMARK_PAIRS = [
    (36, 33), (39, 133), (42, 362), (45, 263),  # eye corners
    (30, 1), (33, 2), (27, 168),                # nose tip, subnasale, bridge
    (48, 61), (54, 291), (51, 0), (57, 17),     # mouth corners, lip midpoints
    (62, 13), (66, 14), (8, 152),               # inner lips, chin
]


def load_ict_source(path: str | os.PathLike) -> dict:
    """The upstream arrays (see the shared data's README)."""
    with np.load(path, allow_pickle=False) as z:
        out = {k: z[k] for k in ("neutral", "uv", "faces", "face_uv", "face_material", "identity", "expression")}
        out["material_names"] = [str(x) for x in z["material_names"]]
        out["expression_names"] = [str(x) for x in z["expression_names"]]
    vi = Path(path).with_name("vertex_indices.json")
    out["landmarks68"] = np.array(json.loads(vi.read_text())["idx_to_landmark_verts"], dtype=np.int64)
    return out


def _face_parts(src: dict) -> tuple[np.ndarray, np.ndarray]:
    """(kept face mask (Q,), part label per face (Q,) int, -1 where dropped)."""
    names = src["material_names"]
    mat = src["face_material"]
    quads = src["faces"]
    part = np.full(len(quads), -1, dtype=np.int64)
    for i, name in enumerate(names):
        if name not in KEPT_MATERIALS:
            continue
        sel = mat == i
        fixed = KEPT_MATERIALS[name]
        if fixed is not None:
            part[sel] = PART_NAMES.index(fixed)
            continue
        # The rest of the skin: the part (not the face) whose vertex range holds most of the corners.
        others = [p for p in SKIN_VERTEX_RANGES if p != "face"]
        for q in np.flatnonzero(sel):
            vs = quads[q][quads[q] >= 0]
            votes = [np.sum((vs >= SKIN_VERTEX_RANGES[p][0]) & (vs < SKIN_VERTEX_RANGES[p][1])) for p in others]
            part[q] = PART_NAMES.index(others[int(np.argmax(votes))])
    return part >= 0, part


def _cell_of(part: int, tile: int) -> str:
    name = PART_NAMES[part]
    if name in ("sclera", "iris", "teeth", "gums_tongue"):
        return name
    return "face" if tile == 0 else "head"


def build_mesh(src: dict) -> dict:
    """Triangles, split vertices, atlas UVs, part labels and ``source_index`` (see the module doc)."""
    keep, part = _face_parts(src)
    quads, quv = src["faces"][keep], src["face_uv"][keep]
    part = part[keep]
    uv_src = src["uv"].astype(np.float64)
    tile = np.floor(uv_src[:, 0]).astype(np.int64)
    cell_names = list(ATLAS_CELLS)
    corner_v, corner_uv, corner_cell, corner_part = [], [], [], []
    tri_corners = []
    for q in range(len(quads)):
        n = 4 if quads[q, 3] >= 0 else 3
        fan = [(0, 1, 2), (0, 2, 3)] if n == 4 else [(0, 1, 2)]
        for t in fan:
            tri_corners.append([(quads[q, k], quv[q, k], part[q]) for k in t])
    tri_corners = np.array(tri_corners, dtype=np.int64)  # (F, 3, 3): vertex, uv, part
    flat = tri_corners.reshape(-1, 3)
    cells = np.array([cell_names.index(_cell_of(p, tile[u])) for _, u, p in flat], dtype=np.int64)
    key = np.stack([flat[:, 0], flat[:, 1], cells], 1)
    uniq, inverse = np.unique(key, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    source_index = uniq[:, 0]
    # Part of an output vertex: of the first triangle corner that made it.
    first = np.full(len(uniq), -1, dtype=np.int64)
    order = np.arange(len(flat))[::-1]
    first[inverse[order]] = order
    vertex_part = flat[first, 2].astype(np.int8)
    uvs = np.empty((len(uniq), 2))
    for ci, name in enumerate(cell_names):
        sel = uniq[:, 2] == ci
        u0, v0, size = ATLAS_CELLS[name]
        frac = uv_src[uniq[sel, 1]] - np.stack([tile[uniq[sel, 1]], np.zeros(sel.sum())], 1)
        frac = np.clip(frac, 0.0, 1.0)
        inner = size * (1.0 - 2.0 * CELL_MARGIN)
        uvs[sel] = np.stack([u0 + size * CELL_MARGIN + inner * frac[:, 0], v0 + size * CELL_MARGIN + inner * frac[:, 1]], 1)
    triangles = inverse.reshape(-1, 3).astype(np.int32)
    return dict(triangles=triangles, uvs=uvs.astype(np.float32), source_index=source_index.astype(np.int32),
                vertex_part=vertex_part, cells=uniq[:, 2])


def mirror_map(vertices: np.ndarray, vertex_part: np.ndarray) -> np.ndarray:
    """(V,) index of the vertex nearest to each vertex's reflection in x = 0, within its part."""
    from scipy.spatial import cKDTree

    out = np.arange(len(vertices), dtype=np.int32)
    refl = vertices * np.array([-1.0, 1.0, 1.0])
    for p in np.unique(vertex_part):
        idx = np.flatnonzero(vertex_part == p)
        _, j = cKDTree(vertices[idx]).query(refl[idx])
        out[idx] = idx[j]
    return out


def _closest_points_on_triangles(points: np.ndarray, v: np.ndarray, tris: np.ndarray, candidates: int = 24):
    """Closest surface point of each query point: (triangle index (n,), barycentric (n, 3), point (n, 3))."""
    from scipy.spatial import cKDTree

    centroids = v[tris].mean(1)
    _, cand = cKDTree(centroids).query(points, k=candidates)
    best_d = np.full(len(points), np.inf)
    best_t = np.zeros(len(points), dtype=np.int64)
    best_b = np.zeros((len(points), 3))
    for j in range(candidates):
        t = cand[:, j]
        b = _closest_bary(points, v[tris[t, 0]], v[tris[t, 1]], v[tris[t, 2]])
        p = np.einsum("nk,nkc->nc", b, v[tris[t]])
        d = np.linalg.norm(p - points, axis=1)
        better = d < best_d
        best_d[better], best_t[better], best_b[better] = d[better], t[better], b[better]
    pts = np.einsum("nk,nkc->nc", best_b, v[tris[best_t]])
    return best_t, best_b, pts


def _closest_bary(p, a, b, c):
    """Barycentric coordinates of the closest point of triangles (a, b, c) to p (all (n, 3)), vectorised."""
    ab, ac, ap = b - a, c - a, p - a
    d00, d01, d11 = (ab * ab).sum(1), (ab * ac).sum(1), (ac * ac).sum(1)
    d20, d21 = (ap * ab).sum(1), (ap * ac).sum(1)
    den = np.maximum(d00 * d11 - d01 * d01, 1e-30)
    v = (d11 * d20 - d01 * d21) / den
    w = (d00 * d21 - d01 * d20) / den
    bary = np.stack([1 - v - w, v, w], 1)
    outside = (bary < 0).any(1)
    if outside.any():
        # Clamp to the nearest edge: project on each edge segment and keep the closest.
        best = None
        for (i, j) in ((0, 1), (1, 2), (2, 0)):
            P = [a, b, c]
            e0, e1 = P[i][outside], P[j][outside]
            d = e1 - e0
            t = np.clip(((p[outside] - e0) * d).sum(1) / np.maximum((d * d).sum(1), 1e-30), 0, 1)
            q = e0 + t[:, None] * d
            dist = np.linalg.norm(q - p[outside], axis=1)
            b3 = np.zeros((outside.sum(), 3))
            b3[:, i], b3[:, j] = 1 - t, t
            if best is None:
                best, best_b = dist, b3
            else:
                better = dist < best
                best, best_b = np.where(better, dist, best), np.where(better[:, None], b3, best_b)
        bary[outside] = best_b
    return bary


def register_mediapipe(src: dict, mesh: dict, neutral_m: np.ndarray, identity_m: np.ndarray, expression_m: np.ndarray,
                       mediapipe_vertices: np.ndarray, iterations: int = 8) -> dict:
    """Landmark correspondence: mediapipe vertex i -> (triangle, barycentric) on the ICT face (module doc, step 5).

    neutral_m (N, 3), identity_m (K, N, 3), expression_m (E, N, 3): upstream-vertex arrays in metres.
    mediapipe_vertices : (468, 3) canonical mediapipe face, metres, same frame.
    Returns dict(landmark_faces (478,), landmark_bary (478, 3), residual_mm (468,), identity, expression).
    """
    tris_out = mesh["triangles"]
    face_label = PART_NAMES.index("face")
    face_tris = np.flatnonzero((mesh["vertex_part"][tris_out] == face_label).all(1))
    si = mesh["source_index"]
    lm68 = src["landmarks68"]
    ict_idx = np.array([lm68[a] for a, _ in LANDMARK_PAIRS])
    mp_idx = np.array([b for _, b in LANDMARK_PAIRS])
    # Mediapipe's canonical depth is not metric (its mesh is ~1.5x too deep and sheared in y-z against
    # real heads), so it is moved into the ICT frame by an affine map; ICT stays fixed (its bases live there).
    ones = np.ones((len(mediapipe_vertices), 1))
    mp_h = np.concatenate([mediapipe_vertices, ones], 1)
    affine, *_ = np.linalg.lstsq(mp_h[mp_idx], neutral_m[ict_idx], rcond=None)
    mp = mp_h @ affine
    K, E = len(identity_m), len(expression_m)
    coeff = np.zeros(K + E)
    basis = np.concatenate([identity_m, expression_m], 0)  # (K+E, N, 3)
    reg = np.concatenate([np.full(K, 1e-5), np.full(E, 3e-5)])
    for _ in range(iterations):
        shaped = neutral_m + np.tensordot(coeff, basis, axes=1)
        tri, bary, pts = _closest_points_on_triangles(mp, shaped[si], tris_out[face_tris])
        # Linearised: the closest point moves with the basis as the barycentric blend of its corners.
        corners = si[tris_out[face_tris[tri]]]  # (n, 3) upstream vertices
        A = np.einsum("nk,bnkc->ncb", bary, basis[:, corners])  # (n, 3, K+E)
        # The anatomical pairs weigh more: they fix the anatomy where closest points may slide.
        A_lm = basis[:, ict_idx].transpose(1, 2, 0)
        rhs = np.concatenate([(mp - pts).reshape(-1), PAIR_WEIGHT * (mp[mp_idx] - shaped[ict_idx]).reshape(-1)])
        A_all = np.concatenate([A.reshape(-1, K + E), PAIR_WEIGHT * A_lm.reshape(-1, K + E)])
        lhs = A_all.T @ A_all + np.diag(reg * len(mp))
        coeff = coeff + np.linalg.solve(lhs, A_all.T @ rhs - reg * len(mp) * coeff)
        coeff[K:] = np.clip(coeff[K:], 0.0, 1.0)
        # Re-fit the affine map to the pairs and to every point's closest point on the updated shape.
        shaped = neutral_m + np.tensordot(coeff, basis, axes=1)
        _, _, pts = _closest_points_on_triangles(mp, shaped[si], tris_out[face_tris])
        src_pts = np.concatenate([mp_h, PAIR_WEIGHT * mp_h[mp_idx]])
        dst_pts = np.concatenate([pts, PAIR_WEIGHT * shaped[ict_idx]])
        affine, *_ = np.linalg.lstsq(src_pts, dst_pts, rcond=None)
        mp = mp_h @ affine
    shaped = neutral_m + np.tensordot(coeff, basis, axes=1)
    tri, bary, pts = _closest_points_on_triangles(mp, shaped[si], tris_out[face_tris])
    pair_mm = np.linalg.norm(np.einsum("nk,nkc->nc", bary[mp_idx], shaped[si][tris_out[face_tris[tri[mp_idx]]]])
                             - shaped[ict_idx], axis=1) * 1000
    faces = -np.ones(NUM_MEDIAPIPE_LANDMARKS, dtype=np.int32)
    bary_out = np.zeros((NUM_MEDIAPIPE_LANDMARKS, 3), dtype=np.float32)
    faces[: len(mp)] = face_tris[tri]
    bary_out[: len(mp)] = bary
    return dict(landmark_faces=faces, landmark_bary=bary_out, residual_mm=np.linalg.norm(pts - mp, axis=1) * 1000,
                pair_mm=pair_mm, identity=coeff[:K], expression=coeff[K:], affine=affine, mediapipe_in_ict=mp)


def _loop_order(edges: list[tuple[int, int]]) -> list[int]:
    """Vertices of a closed edge loop in walking order."""
    nbr: dict[int, list[int]] = {}
    for a, b in edges:
        nbr.setdefault(a, []).append(b)
        nbr.setdefault(b, []).append(a)
    start = min(nbr)
    order, prev = [start], None
    while True:
        nxt = [n for n in nbr[order[-1]] if n != prev]
        if not nxt or nxt[0] == start:
            break
        prev = order[-1]
        order.append(nxt[0])
    return order


def _arcs(loop: list[int], points: np.ndarray, corner_a: int, corner_b: int) -> tuple[list[int], list[int]]:
    """The two paths of a closed loop from corner_a to corner_b, upper (larger mean y) first."""
    i, j = loop.index(corner_a), loop.index(corner_b)
    n = len(loop)
    one = [loop[(i + k) % n] for k in range((j - i) % n + 1)]
    two = [loop[(i - k) % n] for k in range((i - j) % n + 1)]
    return (one, two) if points[one, 1].mean() >= points[two, 1].mean() else (two, one)


def _arc_param(points: np.ndarray) -> np.ndarray:
    """Normalised arc length (0 at the first point, 1 at the last) of a polyline (n, 3)."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    t = np.concatenate([[0.0], np.cumsum(seg)])
    return t / max(t[-1], 1e-12)


def eyelid_correspondence(vertices: np.ndarray, triangles: np.ndarray, vertex_part: np.ndarray,
                          mediapipe_vertices: np.ndarray) -> dict[int, tuple[int, np.ndarray]]:
    """Mediapipe's eye contour landmarks -> points on the ICT eyelid margins (landmark -> (triangle, bary)).

    Closest points fail here: mediapipe's canonical eyes are nearly closed while ICT's are open
    (a 14 mm opening), so both lids' landmarks landed on the lower lid. Instead each contour (upper
    and lower lid, from corner to corner) is matched to the same lid of the boundary loop of ICT's
    face part around that eye at equal normalised arc length.
    """
    from mediapipe.python.solutions import face_mesh_connections as fmc

    from .build_default_face_model import boundary_loops

    face = PART_NAMES.index("face")
    face_tris = np.flatnonzero((vertex_part[triangles] == face).all(1))
    # Weld UV-seam copies so the boundary is the geometric one.
    _, first, inv = np.unique(np.round(vertices, 7), axis=0, return_index=True, return_inverse=True)
    welded = first[inv.reshape(-1)]
    wt = welded[triangles[face_tris]]
    out: dict[int, tuple[int, np.ndarray]] = {}
    loops = [L for L in boundary_loops(wt) if len(L) < 100]
    for edges, (outer, inner) in ((fmc.FACEMESH_RIGHT_EYE, (33, 133)), (fmc.FACEMESH_LEFT_EYE, (263, 362))):
        mp_loop = _loop_order(sorted(edges))
        centre = mediapipe_vertices[mp_loop].mean(0)
        # The ICT loop of this eye: the small loop whose centre has the same side (sign of x) and eye height.
        cands = [L for L in loops if np.sign(vertices[L, 0].mean()) == np.sign(centre[0])
                 and abs(vertices[L, 1].mean() - centre[1]) < 0.02 and np.ptp(vertices[L, 0]) < 0.05]
        if len(cands) != 1:
            raise ValueError(f"expected one ICT eye loop near x = {centre[0]:.3f}, found {len(cands)}")
        L = cands[0]
        ict_outer = L[int(np.argmax(np.abs(vertices[L, 0])))]
        ict_inner = L[int(np.argmin(np.abs(vertices[L, 0])))]
        for mp_arc, ict_arc in zip(_arcs(mp_loop, mediapipe_vertices, outer, inner), _arcs(L, vertices, ict_outer, ict_inner)):
            t_mp = _arc_param(mediapipe_vertices[mp_arc])
            t_ict = _arc_param(vertices[ict_arc])
            for lm, t in zip(mp_arc, t_mp):
                k = int(np.clip(np.searchsorted(t_ict, t) - 1, 0, len(ict_arc) - 2))
                a, b = ict_arc[k], ict_arc[k + 1]
                s = float(np.clip((t - t_ict[k]) / max(t_ict[k + 1] - t_ict[k], 1e-12), 0.0, 1.0))
                # The boundary edge (a, b) belongs to one face triangle: express the point in it.
                rows = np.flatnonzero((wt == a).any(1) & (wt == b).any(1))
                tri = int(face_tris[rows[0]])
                bary = np.zeros(3)
                bary[list(wt[rows[0]]).index(a)] = 1.0 - s
                bary[list(wt[rows[0]]).index(b)] = s
                out[int(lm)] = (tri, bary)
    return out


def build_ict_head(source: str | os.PathLike, num_identity: int = NUM_IDENTITY) -> tuple[FaceModel, dict, dict]:
    """(model, arrays to store, build facts)."""
    from .face_model import load_default_face_model

    src = load_ict_source(source)
    mesh = build_mesh(src)
    si = mesh["source_index"]
    used = np.unique(si)
    neutral = src["neutral"].astype(np.float64) * CM
    identity = src["identity"][:num_identity].astype(np.float64) * CM
    expression = src["expression"].astype(np.float64) * CM
    energy = (src["identity"].reshape(len(src["identity"]), -1).astype(np.float64) ** 2).sum(1)
    mp_vertices = load_default_face_model(0).vertices.astype(np.float64)
    reg = register_mediapipe(src, mesh, neutral, identity, expression, mp_vertices)
    vertices = neutral[si]
    for lm, (tri, bary) in eyelid_correspondence(vertices, mesh["triangles"], mesh["vertex_part"], mp_vertices).items():
        reg["landmark_faces"][lm], reg["landmark_bary"][lm] = tri, bary
    # Mediapipe's face-oval points follow the visible outline, not fixed points of the head: on
    # synthetic ICT heads they sat 14 px (at 512 px) from any fixed embedding, so the fit ignores them.
    from mediapipe.python.solutions import face_mesh_connections as fmc

    oval = sorted({i for edge in fmc.FACEMESH_FACE_OVAL for i in edge})
    reg["landmark_faces"][oval] = -1
    reg["landmark_bary"][oval] = 0.0
    mirror = mirror_map(vertices, mesh["vertex_part"])
    model = FaceModel(
        name="ict-facekit-head", vertices=vertices.astype(np.float32), triangles=mesh["triangles"], uvs=mesh["uvs"],
        landmark_faces=reg["landmark_faces"], landmark_bary=reg["landmark_bary"],
        shape_basis=identity[:, si].transpose(1, 2, 0).astype(np.float32),
        expression_basis=expression[:, si].transpose(1, 2, 0).astype(np.float32),
        uv_mirror=mirror, expression_names=src["expression_names"], expression_range=(0.0, 1.0),
        vertex_part=mesh["vertex_part"], part_names=list(PART_NAMES))
    # Stored per upstream vertex actually used (the split copies share their bases).
    remap = np.searchsorted(used, si).astype(np.int32)
    arrays = dict(
        name=np.array(model.name), vertices_source=neutral[used].astype(np.float32), vertex_source=remap,
        triangles=mesh["triangles"], uvs=mesh["uvs"], landmark_faces=reg["landmark_faces"], landmark_bary=reg["landmark_bary"],
        shape_basis=identity[:, used].transpose(1, 2, 0).astype(np.float16),
        expression_basis=expression[:, used].transpose(1, 2, 0).astype(np.float16),
        uv_mirror=mirror.astype(np.int32), expression_names=np.array(src["expression_names"]),
        expression_range=np.array([0.0, 1.0], dtype=np.float32), vertex_part=mesh["vertex_part"],
        part_names=np.array(PART_NAMES), upstream_vertex=used.astype(np.int32))
    facts = dict(vertices=len(vertices), triangles=len(mesh["triangles"]), upstream_vertices=len(used),
                 identity_components=num_identity, identity_variance_kept=float(energy[:num_identity].sum() / energy.sum()),
                 expressions=len(src["expression_names"]),
                 landmark_residual_mm_mean=float(reg["residual_mm"].mean()),
                 landmark_residual_mm_max=float(reg["residual_mm"].max()),
                 pair_distance_mm_mean=float(reg["pair_mm"].mean()), pair_distance_mm_max=float(reg["pair_mm"].max()),
                 parts={n: int((mesh["vertex_part"] == i).sum()) for i, n in enumerate(PART_NAMES)},
                 height_mm=float(np.ptp(vertices[:, 1]) * 1000), width_mm=float(np.ptp(vertices[:, 0]) * 1000))
    return model, arrays, dict(facts, registration=reg)


def save_ict_head(path: str | os.PathLike, arrays: dict, **metadata: str) -> Path:
    from .face_model import write_asset_npz

    return write_asset_npz(path, arrays, **metadata)


def draw_figures(model: FaceModel, reg: dict, out_dir: str | os.PathLike, size: int = 1024) -> list[Path]:
    """``ict_uv_atlas.png`` (parts coloured) and ``ict_landmarks.png`` (front view, mediapipe
    landmarks on the ICT face: dots = correspondences, crosses = the registered mediapipe points)."""
    from PIL import Image, ImageDraw

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    colours = [(220, 150, 120), (170, 110, 90), (200, 60, 60), (120, 60, 160), (230, 120, 150), (240, 240, 200),
               (90, 160, 230), (40, 90, 200)]
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    px = np.stack([model.uvs[:, 0] * size, (1.0 - model.uvs[:, 1]) * size], 1)
    part_t = model.vertex_part[model.triangles[:, 0]]
    for t, p in zip(model.triangles, part_t):
        draw.polygon([tuple(px[i]) for i in t], fill=colours[p], outline=tuple(int(c * 0.6) for c in colours[p]))
    for name, (u0, v0, s) in ATLAS_CELLS.items():
        draw.rectangle([u0 * size, (1 - v0 - s) * size, (u0 + s) * size - 1, (1 - v0) * size - 1], outline=(0, 0, 0))
        draw.text((u0 * size + 4, (1 - v0 - s) * size + 4), name, fill=(0, 0, 0))
    paths = [out_dir / "ict_uv_atlas.png"]
    img.save(paths[0])

    # Front view, orthographic, Lambert-shaded face part.
    from .face_model import vertex_normals
    from .raster import interpolate, rasterize

    v = model.vertices.astype(np.float64)
    face = model.vertex_part == PART_NAMES.index("face")
    lo, hi = v[face].min(0), v[face].max(0)
    scale = 0.9 * size / max(hi[0] - lo[0], hi[1] - lo[1])
    centre = (lo + hi) / 2
    to_px = lambda p: np.stack([(p[:, 0] - centre[0]) * scale + size / 2, size / 2 - (p[:, 1] - centre[1]) * scale], 1)  # noqa: E731
    proj = np.concatenate([to_px(v), v[:, 2:3]], 1)
    tris = model.triangles[model.vertex_part[model.triangles].max(1) <= PART_NAMES.index("head")]
    r = rasterize(proj, tris, size, size, perspective_correct=False)
    n = interpolate(vertex_normals(v, model.triangles), tris, r)
    shade = np.clip(0.25 + 0.75 * (n @ np.array([0.3, 0.4, 0.87])), 0, 1)
    grey = np.where(r.mask, shade, 1.0)
    img = Image.fromarray((np.stack([grey] * 3, -1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    lm = model.landmark_points()
    ok = np.isfinite(lm[:, 0])
    p = to_px(lm[ok])
    mp = to_px(reg["mediapipe_in_ict"])
    for (x, y), (a, b) in zip(p, mp):
        draw.line([x, y, a, b], fill=(255, 140, 0))
        draw.ellipse([x - 2.5, y - 2.5, x + 2.5, y + 2.5], fill=(0, 170, 60))
    paths.append(out_dir / "ict_landmarks.png")
    img.save(paths[1])
    return paths


def main(argv: list[str] | None = None) -> int:
    from .face_model import ICT_HEAD_PATH

    parser = argparse.ArgumentParser(prog="python -m pnrelight.avatar.build_ict_face_model", description=__doc__.split("\n")[0])
    parser.add_argument("source", help="ict_facekit_light.npz (lossless repack of ICT-FaceKit FaceXModel/)")
    parser.add_argument("--out", default=str(ICT_HEAD_PATH), help="output .npz (default: %(default)s)")
    parser.add_argument("--identity", type=int, default=NUM_IDENTITY, help="identity components kept (default: %(default)s)")
    parser.add_argument("--figures", default=None, help="also draw the UV atlas and the landmark correspondence here")
    args = parser.parse_args(argv)
    model, arrays, facts = build_ict_head(args.source, args.identity)
    reg = facts.pop("registration")
    save_ict_head(args.out, arrays, source="ICT-FaceKit FaceXModel (MIT), USC Institute for Creative Technologies",
                  builder="pnrelight.avatar.build_ict_face_model")
    if args.figures:
        for p in draw_figures(model, reg, args.figures):
            print(f"wrote {p}")
    for k, v in facts.items():
        print(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}")
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
