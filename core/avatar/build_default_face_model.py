"""Build the default face model (``assets/face_model/default_face.npz``) from what mediapipe ships.

Run: ``python -m pnrelight.avatar.build_default_face_model [--out PATH] [--uv-png PATH] [--canonical-obj OBJ]``.

Steps (each a function below, all deterministic):

1. Triangles: :func:`triangles_from_edges` finds the 3-cliques of the edge graph
   ``mediapipe.solutions.face_mesh_connections.FACEMESH_TESSELATION``, drops the
   cliques that are not faces (all three of their edges would be shared by three
   triangles), and :func:`orient_triangles` makes the orientation consistent
   (counter-clockwise seen from outside).
2. Canonical shape: mediapipe's ``canonical_face_model.obj`` when the installed
   wheel ships it (or ``--canonical-obj``). The 0.10.21 wheel does not; then the
   shape is the mean mesh stored in the face-landmark network itself: the bias of
   its mesh-regression layer (``conv2d_21/Bias`` in ``face_landmark.tflite``,
   468 x 3 in crop units, read with the flatbuffer schema the wheel also ships).
   No image is run through any network.
3. Mirror map: :func:`mirror_map` matches the mesh graph to itself (anchored on
   midline and left/right landmark pairs, neighbours voting); the tessellation is
   symmetric except for a few quads whose diagonal runs the other way, which
   :func:`symmetrise_triangulation` flips, so the mirror map is an exact
   orientation-reversing automorphism. The shape is then rotated so that the
   symmetry plane is x = 0 and symmetrised (each vertex averaged with its
   reflected mirror vertex; vertices on the midline get x = 0 exactly).
4. Scale: metres, with the outer eye corners (landmarks 33 and 263) 88 mm apart.
5. UVs: :func:`cylindrical_uvs`, a cylindrical unwrap about a vertical axis behind
   the face: u = 0.5 + k * angle, v = k' * height, same scale on both axes, a 3 %
   margin; mirror vertices get u' = 1 - u exactly (checked), no folded triangles.
6. Holes: the eye and mouth openings are closed by :func:`fill_holes` (ear
   clipping in UV space, mirrored), so the texture covers the eyes and the mouth.
7. Landmarks: landmark i sits on vertex i (i < 468); the 10 iris landmarks
   (468-477) have no surface point (-1).
"""
from __future__ import annotations

import argparse
import itertools
import os
from collections import Counter, deque
from pathlib import Path

import numpy as np

from .face_model import DEFAULT_FACE_MODEL_PATH, NUM_MEDIAPIPE_LANDMARKS, FaceModel, save_face_model

NUM_MESH_VERTICES = 468
OUTER_EYE_CORNERS = (33, 263)  # mediapipe indices: right / left eye outer corner
EYE_CORNER_DISTANCE_M = 0.088  # adult mean biocular (ex-ex) width, about 86-91 mm
UV_MARGIN = 0.03


# ----------------------------------------------------------------------------- triangles
def tessellation_edges() -> np.ndarray:
    """(E, 2) unique sorted edges of mediapipe's face-mesh tessellation."""
    from mediapipe.python.solutions import face_mesh_connections

    edges = {tuple(sorted(e)) for e in face_mesh_connections.FACEMESH_TESSELATION}
    return np.array(sorted(edges), dtype=np.int64)


def triangles_from_edges(edges: np.ndarray) -> np.ndarray:
    """(F, 3) triangles (unoriented, sorted) of a triangulated surface given only its edges.

    Every 3-clique of the edge graph is a candidate; a clique whose three edges
    would each be used by three candidates is a non-face (a 'separating' triangle
    of the graph) and is dropped, so every edge ends up with at most two faces.
    """
    adjacency: dict[int, set[int]] = {}
    for a, b in edges:
        adjacency.setdefault(int(a), set()).add(int(b))
        adjacency.setdefault(int(b), set()).add(int(a))
    cliques = set()
    for a, b in edges:
        for c in adjacency[int(a)] & adjacency[int(b)]:
            cliques.add(tuple(sorted((int(a), int(b), int(c)))))
    cliques = sorted(cliques)
    use = Counter(e for t in cliques for e in itertools.combinations(t, 2))
    faces = [t for t in cliques if not all(use[e] > 2 for e in itertools.combinations(t, 2))]
    use = Counter(e for t in faces for e in itertools.combinations(t, 2))
    if max(use.values()) > 2:
        raise ValueError("edge graph is not a manifold triangulation (an edge has more than two faces)")
    return np.array(faces, dtype=np.int32)


def orient_triangles(triangles: np.ndarray, vertices: np.ndarray | None = None) -> np.ndarray:
    """Consistently orient a connected manifold triangle list (breadth-first over shared edges).

    With ``vertices`` the result is made counter-clockwise seen from +z (the
    summed face normal points along +z: the face looks at the viewer).
    """
    tri = [list(t) for t in triangles]
    edge_faces: dict[tuple[int, int], list[int]] = {}
    for f, t in enumerate(tri):
        for k in range(3):
            edge_faces.setdefault(tuple(sorted((t[k], t[(k + 1) % 3]))), []).append(f)
    done = np.zeros(len(tri), bool)
    done[0] = True
    queue = deque([0])
    while queue:
        f = queue.popleft()
        t = tri[f]
        for k in range(3):
            a, b = t[k], t[(k + 1) % 3]
            for g in edge_faces[tuple(sorted((a, b)))]:
                if g == f:
                    continue
                s = tri[g]
                directed = {(s[i], s[(i + 1) % 3]) for i in range(3)}
                if done[g]:
                    if (a, b) in directed:
                        raise ValueError("mesh is not orientable")
                    continue
                if (a, b) in directed:  # neighbour must run the shared edge the other way
                    s.reverse()
                done[g] = True
                queue.append(g)
    if not done.all():
        raise ValueError("mesh is not connected")
    out = np.array(tri, dtype=np.int32)
    if vertices is not None:
        v = np.asarray(vertices, dtype=np.float64)
        n = np.cross(v[out[:, 1]] - v[out[:, 0]], v[out[:, 2]] - v[out[:, 0]]).sum(0)
        if n[2] < 0:
            out = out[:, ::-1].copy()
    return out


def boundary_loops(triangles: np.ndarray) -> list[list[int]]:
    """Boundary loops (vertex lists) of an oriented manifold triangle list."""
    directed = Counter()
    for t in triangles:
        for k in range(3):
            directed[(int(t[k]), int(t[(k + 1) % 3]))] += 1
    nxt = {a: b for (a, b) in directed if (b, a) not in directed}
    loops, seen = [], set()
    for start in nxt:
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen:
            seen.add(v)
            loop.append(v)
            v = nxt[v]
        loops.append(loop)
    return loops


# ----------------------------------------------------------------------------- canonical shape
def find_canonical_obj() -> Path | None:
    """mediapipe's canonical_face_model.obj if the installed wheel ships it (0.10.21 does not)."""
    try:
        import mediapipe
    except ImportError:
        return None
    root = Path(mediapipe.__file__).parent
    for p in sorted(root.rglob("canonical_face_model.obj")):
        return p
    return None


def read_obj_vertices(path: str | os.PathLike) -> np.ndarray:
    """(N, 3) ``v`` lines of a Wavefront OBJ."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("v "):
                rows.append([float(x) for x in line.split()[1:4]])
    return np.array(rows, dtype=np.float64)


def network_mean_mesh() -> np.ndarray:
    """(468, 3) mean mesh of mediapipe's face-landmark network, image axes (x right, y down, z away).

    The mesh head regresses landmarks as ``kernel * features + bias``; its bias
    (``conv2d_21/Bias``, float16) is the mesh the network starts from.
    """
    import mediapipe
    from mediapipe.tasks.metadata import schema_py_generated as tflite

    path = Path(mediapipe.__file__).parent / "modules" / "face_landmark" / "face_landmark.tflite"
    buf = path.read_bytes()
    model = tflite.Model.GetRootAsModel(buf, 0)
    graph = model.Subgraphs(0)
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        if t.Name() == b"conv2d_21/Bias":
            data = model.Buffers(t.Buffer()).DataAsNumpy().tobytes()
            dtype = {1: np.float16, 0: np.float32}[t.Type()]
            return np.frombuffer(data, dtype).astype(np.float64).reshape(NUM_MESH_VERTICES, 3)
    raise RuntimeError(f"mesh bias tensor not found in {path}")


def canonical_shape(canonical_obj: str | os.PathLike | None = None) -> tuple[np.ndarray, str]:
    """(468, 3) raw canonical vertices in the OpenGL frame (x right, y up, z to the viewer) and their source."""
    obj = Path(canonical_obj) if canonical_obj else find_canonical_obj()
    if obj is not None:
        v = read_obj_vertices(obj)[:NUM_MESH_VERTICES]  # already y up, z towards the viewer
        return v, f"canonical_face_model.obj ({obj.name})"
    v = network_mean_mesh() * np.array([1.0, -1.0, -1.0])
    return v, "mediapipe 0.10.21 face_landmark.tflite mesh-head bias conv2d_21/Bias"


# ----------------------------------------------------------------------------- symmetry
# Anchors from mediapipe's landmark semantics: vertices on the facial midline and
# a few unambiguous left/right pairs (eye corners, mouth corners, face oval).
MIDLINE_VERTICES = (10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 164, 0, 11, 12, 13, 14, 15, 16,
                    17, 18, 200, 199, 175, 152)
MIRROR_PAIRS = ((33, 263), (133, 362), (61, 291), (234, 454), (127, 356), (93, 323), (132, 361), (58, 288),
                (172, 397), (136, 365), (150, 379), (149, 378), (176, 400), (148, 377), (338, 109), (297, 67),
                (332, 103), (284, 54), (251, 21), (389, 162))


def mirror_map(vertices: np.ndarray, edges: np.ndarray, max_iter: int = 50) -> np.ndarray:
    """Left/right mirror map of the mediapipe mesh: (V,) int64 involution.

    A graph matching: the anchors above are fixed, every other vertex is assigned
    (Hungarian algorithm) to the vertex nearest its reflection about the plane of
    the midline anchors, then re-assigned so that as many of its neighbours as
    possible map to neighbours of its image (edge preservation), until nothing
    changes. Geometry alone is not enough: the shipped mean shape is noticeably
    asymmetric (up to a quarter face width along the jaw).
    """
    from scipy.optimize import linear_sum_assignment

    v = np.asarray(vertices, dtype=np.float64)
    v = (v - v.mean(0)) / np.ptp(v[:, 0])
    n_v = len(v)
    mid = v[list(MIDLINE_VERTICES)]
    centre = mid.mean(0)
    normal = np.linalg.svd(mid - centre)[2][-1]
    refl = v - 2.0 * ((v - centre) @ normal)[:, None] * normal
    dist = ((v[:, None] - refl[None]) ** 2).sum(-1)
    adj = np.zeros((n_v, n_v))
    adj[edges[:, 0], edges[:, 1]] = adj[edges[:, 1], edges[:, 0]] = 1.0
    anchors = {k: k for k in MIDLINE_VERTICES}
    for a, b in MIRROR_PAIRS:
        anchors[a], anchors[b] = b, a
    fixed = np.zeros((n_v, n_v))
    rows = np.array(list(anchors))
    fixed[rows] = 1e6
    fixed[rows, [anchors[r] for r in rows]] = 0.0
    m = linear_sum_assignment(dist + fixed)[1]
    for _ in range(max_iter):
        perm = np.zeros((n_v, n_v))
        perm[np.arange(n_v), m] = 1.0
        votes = adj @ perm @ adj  # votes[i, k] = neighbours j of i with m[j] a neighbour of k
        m_new = linear_sum_assignment(5.0 * dist - votes + fixed)[1]
        if np.array_equal(m_new, m):
            break
        m = m_new
    if not np.array_equal(m[m], np.arange(n_v)):
        raise ValueError("mirror map is not an involution")
    return m.astype(np.int64)


def symmetrise_triangulation(triangles: np.ndarray, mirror: np.ndarray) -> tuple[np.ndarray, int]:
    """Flip the few edges whose mirror is not an edge (diagonals of quads split the other way).

    Returns the oriented triangles, now mapped onto themselves by ``mirror``, and the number of flips.
    """
    tri = [tuple(int(x) for x in t) for t in triangles]
    flips = 0
    for _ in range(len(tri)):
        edge_faces: dict[tuple[int, int], list[int]] = {}
        for f, t in enumerate(tri):
            for k in range(3):
                edge_faces.setdefault(tuple(sorted((t[k], t[(k + 1) % 3]))), []).append(f)
        bad = sorted(e for e in edge_faces if tuple(sorted((mirror[e[0]], mirror[e[1]]))) not in edge_faces)
        if not bad:
            return np.array(tri, dtype=np.int32), flips
        p, q = bad[0]
        f, g = edge_faces[(p, q)]
        t = tri[f]
        if (t.index(p) + 1) % 3 != t.index(q):  # make f the face running p -> q
            f, g = g, f
            t = tri[f]
        r = [x for x in tri[f] if x not in (p, q)][0]
        s = [x for x in tri[g] if x not in (p, q)][0]
        tri[f], tri[g] = (p, s, r), (s, q, r)
        flips += 1
    raise ValueError("could not make the triangulation symmetric")


def _plane_from_pairs(v: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, float]:
    d = v - v[m]
    w, u = np.linalg.eigh(d.T @ d)
    n = u[:, -1] * (1.0 if u[0, -1] >= 0 else -1.0)
    return n, float(np.mean(((v + v[m]) / 2) @ n))


def symmetrise(vertices: np.ndarray, mirror: np.ndarray, plane_normal: np.ndarray) -> np.ndarray:
    """Rotate the symmetry plane onto x = 0 (keeping +y up) and average each vertex with its reflected mirror."""
    v = np.asarray(vertices, dtype=np.float64)
    n = plane_normal / np.linalg.norm(plane_normal)
    offset = float(np.mean(((v + v[mirror]) / 2) @ n))
    v = v - offset * n
    # Rotation taking n to +x with the least change (Rodrigues).
    x = np.array([1.0, 0.0, 0.0])
    axis = np.cross(n, x)
    s, c = np.linalg.norm(axis), float(n @ x)
    if s > 1e-12:
        k = axis / s
        K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        R = np.eye(3) + s * K + (1 - c) * K @ K
        v = v @ R.T
    flip = np.array([-1.0, 1.0, 1.0])
    sym = 0.5 * (v + v[mirror] * flip)
    sym[mirror == np.arange(len(v)), 0] = 0.0
    return sym


# ----------------------------------------------------------------------------- UVs
def cylindrical_uvs(vertices: np.ndarray, mirror: np.ndarray, margin: float = UV_MARGIN) -> np.ndarray:
    """(V, 2) UVs from a cylinder about the vertical axis behind the face (x = 0, z = z_axis).

    The axis sits half a face width behind the deepest vertex so that the sides
    of the face keep texels; u and v share one scale (no stretch at the centre).
    """
    v = np.asarray(vertices, dtype=np.float64)
    width = np.ptp(v[:, 0])
    z_axis = v[:, 2].min() - 0.5 * width
    radius = np.median(v[:, 2]) - z_axis
    theta = np.arctan2(v[:, 0], v[:, 2] - z_axis)
    u = radius * theta
    u = 0.5 * (u - u[mirror])  # exact antisymmetry: u(mirror) = -u
    vv = v[:, 1]
    half_extent = max(np.abs(u).max(), 0.5 * np.ptp(vv))
    scale = (0.5 - margin) / half_extent
    uv = np.stack([0.5 + u * scale, 0.5 + (vv - 0.5 * (vv.max() + vv.min())) * scale], axis=1)
    return uv.astype(np.float32)


def untangle_uvs(uvs: np.ndarray, triangles: np.ndarray, mirror: np.ndarray, max_iter: int = 500) -> np.ndarray:
    """Remove UV fold-overs (the inner lip corners fold in a cylindrical unwrap) by local Laplacian smoothing.

    Only the vertices of folded triangles move, each to the mean of its
    neighbours, then the layout is re-symmetrised (u' = 1 - u, v' = v); repeat
    until no triangle has a non-positive UV area.
    """
    uv = uvs.astype(np.float64).copy()
    nbrs: dict[int, set[int]] = {}
    for t in triangles:
        for k in range(3):
            nbrs.setdefault(int(t[k]), set()).update(int(x) for x in t if x != t[k])
    for _ in range(max_iter):
        bad = uv_signed_areas(uv, triangles) <= 1e-9
        if not bad.any():
            return uv.astype(np.float32)
        move = np.unique(triangles[bad])
        move = np.unique(np.concatenate([move, mirror[move]]))
        uv[move] = np.array([uv[list(nbrs[i])].mean(0) for i in move])
        uv = 0.5 * (uv + np.stack([1.0 - uv[mirror, 0], uv[mirror, 1]], 1))
    raise ValueError("could not untangle the UV layout")


def uv_signed_areas(uvs: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(F,) signed UV areas (positive = counter-clockwise in the u-right, v-up plane)."""
    a, b, c = (uvs[triangles[:, k]].astype(np.float64) for k in range(3))
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))


# ----------------------------------------------------------------------------- hole filling
def _ear_clip(poly: list[int], uv: np.ndarray) -> list[tuple[int, int, int]]:
    """Triangulate a simple polygon (vertex indices, counter-clockwise in ``uv``) by ear clipping."""
    poly = list(poly)
    out = []

    def area(a, b, c):
        return (uv[b, 0] - uv[a, 0]) * (uv[c, 1] - uv[a, 1]) - (uv[b, 1] - uv[a, 1]) * (uv[c, 0] - uv[a, 0])

    def inside(p, a, b, c):
        return area(a, b, p) > 0 and area(b, c, p) > 0 and area(c, a, p) > 0

    guard = 0
    while len(poly) > 3:
        guard += 1
        if guard > 10000:
            raise ValueError("ear clipping did not converge")
        best = None
        for i in range(len(poly)):
            a, b, c = poly[i - 1], poly[i], poly[(i + 1) % len(poly)]
            if area(a, b, c) <= 1e-12:
                continue
            if any(inside(p, a, b, c) for p in poly if p not in (a, b, c)):
                continue
            # Prefer the fattest ear (smallest largest angle is costly; area / perimeter^2 is enough).
            per = sum(np.linalg.norm(uv[x] - uv[y]) for x, y in ((a, b), (b, c), (c, a)))
            score = area(a, b, c) / per ** 2
            if best is None or score > best[0]:
                best = (score, i)
        if best is None:
            raise ValueError("polygon has no ear (not simple?)")
        i = best[1]
        out.append((poly[i - 1], poly[i], poly[(i + 1) % len(poly)]))
        poly.pop(i)
    out.append(tuple(poly))
    return out


def fill_holes(triangles: np.ndarray, uvs: np.ndarray, mirror: np.ndarray) -> tuple[np.ndarray, int]:
    """Close the eye and mouth openings with triangles on the existing vertices, left/right symmetric.

    Each hole is ear-clipped in UV space (so the new UV triangles never fold); the
    holes on the left (u < 0.5) are filled and mirrored onto the right; a hole
    crossing the midline (the mouth) is split by the chord between its two
    midline vertices and its left half mirrored. Returns triangles and the number of holes filled.
    """
    loops = boundary_loops(triangles)
    uv = uvs.astype(np.float64)

    def loop_area(loop):
        p = uv[loop]
        return 0.5 * np.sum(p[:, 0] * np.roll(p[:, 1], -1) - np.roll(p[:, 0], -1) * p[:, 1])

    # The outer boundary runs counter-clockwise; holes run clockwise.
    holes = [lp for lp in loops if loop_area(lp) < 0]
    new = []
    done = set()
    for loop in holes:
        key = frozenset(loop)
        if key in done:
            continue
        poly = loop[::-1]  # counter-clockwise: the fill's orientation
        mirrored = frozenset(int(mirror[v]) for v in loop)
        if mirrored == key:  # crosses the midline
            mids = [i for i, v in enumerate(poly) if mirror[v] == v]
            if len(mids) != 2:
                raise ValueError("a midline hole must cross the midline at two vertices")
            i, j = mids
            half_a, half_b = poly[i:j + 1], poly[j:] + poly[:i + 1]
            left = half_a if uv[half_a[1:-1], 0].mean() < 0.5 else half_b
            tris = _ear_clip(left, uv)
        else:
            if uv[loop, 0].mean() > 0.5:
                continue  # filled as the mirror of its left twin
            tris = _ear_clip(poly, uv)
            done.add(mirrored)
        done.add(key)
        new += tris
        new += [(int(mirror[c]), int(mirror[b]), int(mirror[a])) for a, b, c in tris]
    if not new:
        return triangles, 0
    return np.concatenate([triangles, np.array(new, dtype=np.int32)]), len(holes)


# ----------------------------------------------------------------------------- build
def build_default_face_model(canonical_obj: str | os.PathLike | None = None) -> tuple[FaceModel, dict]:
    """The default model (not subdivided) and a dict of build facts for the README/report."""
    edges = tessellation_edges()
    raw, source = canonical_shape(canonical_obj)
    faces = triangles_from_edges(edges)
    triangles = orient_triangles(faces, raw)
    mirror = mirror_map(raw, edges)
    triangles, flips = symmetrise_triangulation(triangles, mirror)
    normal, _ = _plane_from_pairs(raw, mirror)
    sym = symmetrise(raw, mirror, normal)
    if np.cross(sym[triangles[:, 1]] - sym[triangles[:, 0]], sym[triangles[:, 2]] - sym[triangles[:, 0]]).sum(0)[2] < 0:
        triangles = triangles[:, ::-1].copy()
    a, b = OUTER_EYE_CORNERS
    scale = EYE_CORNER_DISTANCE_M / np.linalg.norm(sym[a] - sym[b])
    sym = sym * scale
    sym[:, 1:] -= sym[:, 1:].mean(0)  # x = 0 is already the symmetry plane
    uvs = untangle_uvs(cylindrical_uvs(sym, mirror), triangles, mirror)
    open_loops = len(boundary_loops(triangles))
    triangles, holes = fill_holes(triangles, uvs, mirror)
    areas = uv_signed_areas(uvs, triangles)
    if (areas <= 0).any():
        raise ValueError(f"UV layout folds {int((areas <= 0).sum())} triangles")
    landmark_faces = -np.ones(NUM_MEDIAPIPE_LANDMARKS, dtype=np.int32)
    landmark_bary = np.zeros((NUM_MEDIAPIPE_LANDMARKS, 3), dtype=np.float32)
    for i in range(NUM_MESH_VERTICES):  # landmark i <-> vertex i
        f, k = np.argwhere(triangles == i)[0]
        landmark_faces[i] = f
        landmark_bary[i, k] = 1.0
    model = FaceModel(name="mediapipe-default", vertices=sym.astype(np.float32), triangles=triangles.astype(np.int32),
                      uvs=uvs, landmark_faces=landmark_faces, landmark_bary=landmark_bary, uv_mirror=mirror.astype(np.int32))
    raw_refl = raw - 2.0 * ((raw @ normal) - np.mean(((raw + raw[mirror]) / 2) @ normal))[:, None] * normal
    facts = dict(source=source, vertices=len(sym), triangles=len(triangles), edges=len(edges), edge_flips=flips,
                 tessellation_triangles=len(faces), boundary_loops_before_filling=open_loops, holes_filled=holes,
                 boundary_loops=len(boundary_loops(triangles)),
                 midline_vertices=int((mirror == np.arange(len(mirror))).sum()),
                 raw_asymmetry_mm=float(np.mean(np.linalg.norm(raw_refl[mirror] - raw, axis=1)) * scale * 1000.0),
                 width_mm=float(np.ptp(sym[:, 0]) * 1000), height_mm=float(np.ptp(sym[:, 1]) * 1000),
                 depth_mm=float(np.ptp(sym[:, 2]) * 1000))
    return model, facts


def draw_uv_layout(model: FaceModel, path: str | os.PathLike, size: int = 1024) -> Path:
    """PNG of the UV layout: wireframe, left half blue, right half red, midline vertices black, v up."""
    from PIL import Image, ImageDraw

    from ..atomic import atomic_output_file

    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    px = np.stack([model.uvs[:, 0] * size, (1.0 - model.uvs[:, 1]) * size], 1)
    for t in model.triangles:
        centre_u = model.uvs[t, 0].mean()
        colour = (40, 80, 200) if centre_u < 0.5 else (200, 60, 40)
        draw.polygon([tuple(px[i]) for i in t], outline=colour)
    if model.uv_mirror is not None:
        for i in np.flatnonzero(model.uv_mirror == np.arange(len(model.uv_mirror))):
            x, y = px[i]
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(0, 0, 0))
    draw.rectangle([0, 0, size - 1, size - 1], outline=(128, 128, 128))
    path = Path(path)
    with atomic_output_file(path) as tmp:
        img.save(tmp, format="PNG")
        os.chmod(tmp, 0o644)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pnrelight.avatar.build_default_face_model", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_FACE_MODEL_PATH), help="output .npz (default: %(default)s)")
    parser.add_argument("--uv-png", default=None, help="also draw the UV layout to this PNG")
    parser.add_argument("--canonical-obj", default=None, help="use this canonical_face_model.obj for the shape")
    args = parser.parse_args(argv)
    model, facts = build_default_face_model(args.canonical_obj)
    save_face_model(args.out, model, source=facts["source"], builder="pnrelight.avatar.build_default_face_model")
    if args.uv_png:
        draw_uv_layout(model, args.uv_png)
    for k, v in facts.items():
        print(f"{k}: {v:.2f}" if isinstance(v, float) else f"{k}: {v}")
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
