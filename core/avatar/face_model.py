"""The parametric face model behind every avatar fit: one small interface for all models.

A :class:`FaceModel` is a triangle mesh template (metres, OpenGL frame: x right,
y up, z towards the viewer, the face looking along +z) with a UV layout, the
surface point of each of the 478 mediapipe landmarks, optional linear shape and
expression bases and a left/right mirror map.

Two models implement it: the default one, built by
``python -m pnrelight.avatar.build_default_face_model`` from what the mediapipe
wheel ships and stored in ``assets/face_model/default_face.npz``
(:func:`load_default_face_model`), and FLAME (:func:`pnrelight.avatar.flame.load_flame`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..paths import ASSETS_DIR

NUM_MEDIAPIPE_LANDMARKS = 478
DEFAULT_FACE_MODEL_PATH = ASSETS_DIR / "face_model" / "default_face.npz"
ICT_HEAD_PATH = ASSETS_DIR / "face_model" / "ict_head.npz"
# Where mediapipe's detector puts each landmark on the ICT head (built by calibrate_landmarks.py).
ICT_LANDMARK_CALIBRATION_PATH = ASSETS_DIR / "face_model" / "ict_landmark_calibration.npz"


@dataclass
class FaceModel:
    """A face mesh template and what the fit and texturing need to know about it.

    Attributes
    ----------
    name : str
    vertices : (V, 3) float32 template in metres (OpenGL frame, face towards +z).
    triangles : (F, 3) int32, counter-clockwise seen from outside.
    uvs : (V, 2) float32 in [0, 1], v up (glTF flips as needed).
    landmark_faces : (L,) int32 triangle holding each mediapipe landmark, -1 where none (L = 478).
    landmark_bary : (L, 3) float32 barycentric coordinates of each landmark in its triangle.
    shape_basis : (V, 3, S) float32 or None, metres per unit coefficient.
    expression_basis : (V, 3, E) float32 or None.
    uv_mirror : (V,) int32 index of each vertex's left/right mirror vertex, or None.
    expression_names : (E,) names of the expression components (ARKit names for ICT-FaceKit), or None.
    expression_range : (lo, hi) bounds of every expression coefficient (ICT-FaceKit: blendshape
        weights in [0, 1]), or None for unbounded coefficients in units of the basis (FLAME).
    vertex_part : (V,) int8 part label of each vertex (see ``part_names``), or None: one part.
    part_names : names of the part labels (e.g. "skin", "eyes", "teeth", "mouth").
    extras : dict of model-specific arrays (e.g. FLAME joints); not used by the pipeline.
    """

    name: str
    vertices: np.ndarray
    triangles: np.ndarray
    uvs: np.ndarray
    landmark_faces: np.ndarray
    landmark_bary: np.ndarray
    shape_basis: np.ndarray | None = None
    expression_basis: np.ndarray | None = None
    uv_mirror: np.ndarray | None = None
    expression_names: list[str] | None = None
    expression_range: tuple[float, float] | None = None
    vertex_part: np.ndarray | None = None
    part_names: list[str] | None = None
    extras: dict = field(default_factory=dict)

    @property
    def num_shape(self) -> int:
        return 0 if self.shape_basis is None else int(self.shape_basis.shape[2])

    @property
    def num_expression(self) -> int:
        return 0 if self.expression_basis is None else int(self.expression_basis.shape[2])

    @property
    def landmark_mask(self) -> np.ndarray:
        """(L,) bool: landmarks that have a point on this model."""
        return self.landmark_faces >= 0

    def shaped_vertices(self, shape: np.ndarray | None = None, expression: np.ndarray | None = None) -> np.ndarray:
        """(V, 3) template plus the basis combinations (coefficients may be shorter than the bases)."""
        v = self.vertices.astype(np.float64)
        for basis, coeffs in ((self.shape_basis, shape), (self.expression_basis, expression)):
            if basis is not None and coeffs is not None and len(coeffs):
                c = np.asarray(coeffs, dtype=np.float64)
                v = v + basis[:, :, : len(c)] @ c
        return v.astype(np.float32)

    def landmark_points(self, vertices: np.ndarray | None = None) -> np.ndarray:
        """(L, 3) landmark surface points of ``vertices`` (default: the template); NaN where none."""
        return landmark_points(self.vertices if vertices is None else vertices, self.triangles,
                               self.landmark_faces, self.landmark_bary)


def landmark_points(vertices: np.ndarray, triangles: np.ndarray, landmark_faces: np.ndarray,
                    landmark_bary: np.ndarray) -> np.ndarray:
    """(L, 3) barycentric surface points; rows without a triangle (-1) are NaN."""
    ok = landmark_faces >= 0
    out = np.full((len(landmark_faces), 3), np.nan, dtype=np.float32)
    corners = vertices[triangles[landmark_faces[ok]]]  # (n, 3, 3)
    out[ok] = np.einsum("nk,nkc->nc", landmark_bary[ok], corners)
    return out


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals.

    Parameters
    ----------
    vertices : (V, 3) or (B, V, 3) float
    triangles : (F, 3) int, counter-clockwise seen from outside.

    Returns
    -------
    normals : same shape as ``vertices``, float32 unit vectors (0 for isolated vertices).
    """
    v = np.asarray(vertices, dtype=np.float64)
    a, b, c = (v[..., triangles[:, k], :] for k in range(3))
    face_n = np.cross(b - a, c - a)  # length = 2 * area: area weighting for free
    n = np.zeros_like(v)
    for k in range(3):
        if v.ndim == 2:
            np.add.at(n, triangles[:, k], face_n)
        else:
            for i in range(v.shape[0]):
                np.add.at(n[i], triangles[:, k], face_n[i])
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    return (n / np.maximum(norm, 1e-20)).astype(np.float32)


def mesh_edges(triangles: np.ndarray) -> np.ndarray:
    """(E, 2) int64 unique undirected edges (sorted pairs) of a triangle list."""
    e = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    return np.unique(np.sort(e, axis=1), axis=0).astype(np.int64)


def subdivide(model: FaceModel, levels: int = 1, *, smooth: float = 0.75) -> FaceModel:
    """Split every triangle into four, ``levels`` times, keeping every existing vertex in place.

    Each new edge vertex is the edge midpoint pulled towards the surface implied by
    the end-point normals (Phong tessellation with shape factor ``smooth``), so the
    refined mesh is curved, gives smooth normals, and the original vertices (and so
    the mediapipe landmarks, which sit on them) do not move. Everything else is
    carried linearly: UVs (midpoints: one chart, so no seams), shape/expression
    bases, the landmark embedding (exact barycentric remapping into the child
    triangles) and the mirror map (the new vertex of edge (a, b) mirrors to the new
    vertex of edge (mirror[a], mirror[b])). Original vertex indices are kept; new
    vertices are appended.
    """
    if levels <= 0:
        return model
    base = model.extras.get("base_model", model)
    done = int(model.extras.get("subdivision_levels", 0))
    for _ in range(int(levels)):
        model = _subdivide_once(model, smooth)
    # Remember the unrefined mesh so that per-vertex edits of it can be re-subdivided (fit refinement).
    model.extras = {**model.extras, "base_model": base, "subdivision_levels": done + int(levels),
                    "subdivision_smooth": smooth}
    return model


def _subdivide_once(model: FaceModel, smooth: float) -> FaceModel:
    tri = model.triangles.astype(np.int64)
    nv = len(model.vertices)
    edges = mesh_edges(tri)
    edge_key = edges[:, 0] * nv + edges[:, 1]
    order = np.argsort(edge_key)
    edge_key_sorted = edge_key[order]

    def edge_index(a, b, missing_ok=False):
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        key = lo * nv + hi
        pos = np.minimum(np.searchsorted(edge_key_sorted, key), len(edge_key_sorted) - 1)
        found = edge_key_sorted[pos] == key
        if not missing_ok and not found.all():
            raise ValueError("edge lookup failed")
        return np.where(found, order[pos], -1)

    ab = nv + edge_index(tri[:, 0], tri[:, 1])
    bc = nv + edge_index(tri[:, 1], tri[:, 2])
    ca = nv + edge_index(tri[:, 2], tri[:, 0])
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    new_tri = np.concatenate([
        np.stack([a, ab, ca], 1), np.stack([ab, b, bc], 1),
        np.stack([ca, bc, c], 1), np.stack([ab, bc, ca], 1),
    ]).astype(np.int32)

    v = model.vertices.astype(np.float64)
    p, q = v[edges[:, 0]], v[edges[:, 1]]
    mid = 0.5 * (p + q)
    n = vertex_normals(v, tri).astype(np.float64)
    npn, nqn = n[edges[:, 0]], n[edges[:, 1]]
    proj_p = mid - np.sum((mid - p) * npn, axis=1, keepdims=True) * npn
    proj_q = mid - np.sum((mid - q) * nqn, axis=1, keepdims=True) * nqn
    new_pos = (1.0 - smooth) * mid + smooth * 0.5 * (proj_p + proj_q)
    vertices = np.concatenate([v, new_pos]).astype(np.float32)
    uvs = np.concatenate([model.uvs, 0.5 * (model.uvs[edges[:, 0]] + model.uvs[edges[:, 1]])]).astype(np.float32)

    def carry(basis):
        if basis is None:
            return None
        return np.concatenate([basis, 0.5 * (basis[edges[:, 0]] + basis[edges[:, 1]])]).astype(np.float32)

    mirror = None
    if model.uv_mirror is not None:
        m = model.uv_mirror.astype(np.int64)
        mirror_edges = edge_index(m[edges[:, 0]], m[edges[:, 1]], missing_ok=True)
        # A mirror map that is not a mesh automorphism (e.g. FLAME's nearest-vertex one) may send an
        # edge to a non-edge: its new vertex then mirrors to the mirror of the edge's first end.
        mirror_new = np.where(mirror_edges >= 0, nv + mirror_edges, m[edges[:, 0]])
        mirror = np.concatenate([m, mirror_new]).astype(np.int32)

    lf, lb = _remap_landmarks(model.landmark_faces, model.landmark_bary, len(tri))
    extras = dict(model.extras)
    part = None if model.vertex_part is None else np.concatenate([model.vertex_part, model.vertex_part[edges[:, 0]]])
    return replace(model, vertices=vertices, triangles=new_tri, uvs=uvs, landmark_faces=lf, landmark_bary=lb,
                   shape_basis=carry(model.shape_basis), expression_basis=carry(model.expression_basis),
                   uv_mirror=mirror, vertex_part=part, extras=extras)


def _remap_landmarks(faces: np.ndarray, bary: np.ndarray, num_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric coordinates in the parent triangle -> (child triangle, coordinates) after a 1-to-4 split.

    Children (see ``_subdivide_once``): 0 = (a, ab, ca), 1 = (ab, b, bc), 2 = (ca, bc, c), 3 = (ab, bc, ca).
    """
    faces = faces.astype(np.int32).copy()
    bary = bary.astype(np.float64)
    out_b = np.zeros_like(bary)
    l0, l1, l2 = bary[:, 0], bary[:, 1], bary[:, 2]
    child = np.full(len(faces), 3)
    child[l0 >= 0.5] = 0
    child[l1 >= 0.5] = 1
    child[l2 >= 0.5] = 2
    for k, (nb0, nb1, nb2) in enumerate([
        (l0 - l1 - l2, 2 * l1, 2 * l2),
        (2 * l0, l1 - l0 - l2, 2 * l2),
        (2 * l0, 2 * l1, l2 - l0 - l1),
        (l0 + l1 - l2, l1 + l2 - l0, l0 + l2 - l1),
    ]):
        sel = child == k
        out_b[sel] = np.stack([nb0, nb1, nb2], 1)[sel]
    ok = faces >= 0
    new_faces = np.where(ok, faces + child * num_faces, -1).astype(np.int32)
    out_b[~ok] = 0.0
    return new_faces, out_b.astype(np.float32)


def save_face_model(path: str | os.PathLike, model: FaceModel, *, basis_dtype=np.float32, **metadata: str) -> Path:
    """Write a model as a compressed ``.npz`` (atomically); ``metadata`` strings are stored alongside.

    basis_dtype : storage type of the shape/expression bases (float16 halves a large model's asset).
    """
    arrays = dict(vertices=model.vertices.astype(np.float32), triangles=model.triangles.astype(np.int32),
                  uvs=model.uvs.astype(np.float32), landmark_faces=model.landmark_faces.astype(np.int32),
                  landmark_bary=model.landmark_bary.astype(np.float32), name=np.array(model.name))
    if model.uv_mirror is not None:
        arrays["uv_mirror"] = model.uv_mirror.astype(np.int32)
    if model.shape_basis is not None:
        arrays["shape_basis"] = model.shape_basis.astype(basis_dtype)
    if model.expression_basis is not None:
        arrays["expression_basis"] = model.expression_basis.astype(basis_dtype)
    if model.expression_names is not None:
        arrays["expression_names"] = np.array(model.expression_names, dtype=str)
    if model.expression_range is not None:
        arrays["expression_range"] = np.array(model.expression_range, dtype=np.float32)
    if model.vertex_part is not None:
        arrays["vertex_part"] = model.vertex_part.astype(np.int8)
        arrays["part_names"] = np.array(model.part_names or [], dtype=str)
    return write_asset_npz(path, arrays, **metadata)


def write_asset_npz(path: str | os.PathLike, arrays: dict, **metadata: str) -> Path:
    """Write ``arrays`` (plus ``meta_<key>`` strings) as a compressed ``.npz`` asset, atomically, mode 0644."""
    from ..atomic import atomic_output_file

    arrays = {**arrays, **{f"meta_{k}": np.array(str(v)) for k, v in metadata.items()}}
    path = Path(path)
    with atomic_output_file(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.chmod(tmp, 0o644)  # a shipped asset, not a private temp file
    return path


def load_face_model_npz(path: str | os.PathLike) -> FaceModel:
    """Read a model written by :func:`save_face_model`; a missing or broken file is an InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"face model not found: {path} (run `python -m pnrelight.avatar.build_default_face_model` "
                         "or pass an existing --face-model)")
    try:
        with np.load(path, allow_pickle=False) as z:
            get = lambda k: z[k] if k in z.files else None  # noqa: E731
            model = FaceModel(
                name=str(z["name"]) if "name" in z.files else path.stem,
                vertices=z["vertices"].astype(np.float32), triangles=z["triangles"].astype(np.int32),
                uvs=z["uvs"].astype(np.float32), landmark_faces=z["landmark_faces"].astype(np.int32),
                landmark_bary=z["landmark_bary"].astype(np.float32),
                shape_basis=None if get("shape_basis") is None else z["shape_basis"].astype(np.float32),
                expression_basis=None if get("expression_basis") is None else z["expression_basis"].astype(np.float32),
                uv_mirror=get("uv_mirror"),
                expression_names=None if get("expression_names") is None else [str(x) for x in z["expression_names"]],
                expression_range=None if get("expression_range") is None else tuple(float(x) for x in z["expression_range"]),
                vertex_part=get("vertex_part"),
                part_names=None if get("part_names") is None else [str(x) for x in z["part_names"]],
                extras={k[5:]: str(z[k]) for k in z.files if k.startswith("meta_")})
    except (KeyError, ValueError, OSError) as exc:
        raise InputError(f"cannot read face model {path}: {exc} (rebuild it with "
                         "`python -m pnrelight.avatar.build_default_face_model`)") from None
    return model


def load_default_face_model(subdivisions: int = 1) -> FaceModel:
    """The shipped default model (mediapipe topology, 468 vertices), subdivided ``subdivisions`` times.

    Level 0 has 468 vertices / 898 triangles, ``subdivisions=1`` gives 1,833 / 3,592, ``2`` gives 7,257 / 14,368.
    Landmark i (i < 468) sits on vertex i at every level; the 10 iris landmarks have no point (-1).
    """
    model = load_face_model_npz(DEFAULT_FACE_MODEL_PATH)
    return subdivide(model, subdivisions) if subdivisions > 0 else model


def load_ict_face_model(path: str | os.PathLike | None = None, *, calibrated: bool = True) -> FaceModel:
    """The default head: ICT-FaceKit (MIT, USC ICT) head and neck, eyes, teeth, gums and tongue.

    ``calibrated``: the landmark embedding is the detector-calibrated one
    (``ict_landmark_calibration.npz``, :mod:`pnrelight.avatar.calibrate_landmarks`: where mediapipe
    finds each landmark on rendered ICT heads) when that file is present and ``path`` is the shipped
    head; False keeps the geometric registration of the build script (synthetic subjects use it, so
    their ground truth does not depend on the calibration).

    Built by ``python -m pnrelight.avatar.build_ict_face_model`` into ``assets/face_model/ict_head.npz``:
    ~25k vertices in metres (y up, face along +z), a single 0-1 UV atlas, 50 identity components
    (~N(0, 1) coefficients) and 53 ARKit-named expression blendshapes (weights in [0, 1]).
    The asset stores positions and bases once per upstream vertex; UV-seam copies are expanded here.
    """
    path = Path(path or ICT_HEAD_PATH)
    if not path.is_file():
        raise InputError(f"head model not found: {path} (run `python -m pnrelight.avatar.build_ict_face_model "
                         "ict_facekit_light.npz`, or pass --face-model mediapipe)")
    try:
        with np.load(path, allow_pickle=False) as z:
            src = z["vertex_source"].astype(np.int64)
            model = FaceModel(
                name=str(z["name"]), vertices=z["vertices_source"][src].astype(np.float32),
                triangles=z["triangles"].astype(np.int32), uvs=z["uvs"].astype(np.float32),
                landmark_faces=z["landmark_faces"].astype(np.int32), landmark_bary=z["landmark_bary"].astype(np.float32),
                shape_basis=z["shape_basis"][src].astype(np.float32),
                expression_basis=z["expression_basis"][src].astype(np.float32),
                uv_mirror=z["uv_mirror"].astype(np.int32), expression_names=[str(x) for x in z["expression_names"]],
                expression_range=tuple(float(x) for x in z["expression_range"]), vertex_part=z["vertex_part"].astype(np.int8),
                part_names=[str(x) for x in z["part_names"]],
                extras={k[5:]: str(z[k]) for k in z.files if k.startswith("meta_")})
    except (KeyError, ValueError, OSError) as exc:
        raise InputError(f"cannot read head model {path}: {exc} (rebuild it with "
                         "`python -m pnrelight.avatar.build_ict_face_model`)") from None
    if calibrated and path.resolve() == ICT_HEAD_PATH.resolve() and ICT_LANDMARK_CALIBRATION_PATH.is_file():
        faces, bary = load_landmark_calibration(ICT_LANDMARK_CALIBRATION_PATH, len(model.triangles))
        model = replace(model, landmark_faces=faces, landmark_bary=bary)
    return model


def load_landmark_calibration(path: str | os.PathLike, num_triangles: int) -> tuple[np.ndarray, np.ndarray]:
    """(landmark_faces (478,) int32, landmark_bary (478, 3) float32) of a calibration file for a head of
    ``num_triangles`` triangles; a broken or mismatched file is an InputError."""
    try:
        with np.load(path, allow_pickle=False) as z:
            faces, bary = z["landmark_faces"].astype(np.int32), z["landmark_bary"].astype(np.float32)
    except (KeyError, ValueError, OSError) as exc:
        raise InputError(f"cannot read landmark calibration {path}: {exc} (rebuild it with "
                         "`python -m pnrelight.avatar.calibrate_landmarks`)") from None
    if faces.shape != (478,) or bary.shape != (478, 3) or faces.max() >= num_triangles:
        raise InputError(f"landmark calibration {path} does not fit this head (rebuild it with "
                         "`python -m pnrelight.avatar.calibrate_landmarks`)")
    return faces, bary


FACE_MODEL_CHOICES = ("ict", "mediapipe")


def load_face_model(spec: str | os.PathLike | None = None) -> FaceModel:
    """The face model named by ``--face-model``: None or "ict" (the default ICT-FaceKit head),
    "mediapipe" (the face-only mesh of mediapipe's topology, subdivided once), a ``.npz`` written by
    :func:`save_face_model`, or a FLAME model file (``generic_model.pkl``, FLAME 2020/2023)."""
    if spec is None or str(spec) == "ict":
        return load_ict_face_model()
    if str(spec) == "mediapipe":
        return load_default_face_model()
    path = Path(spec)
    if path.suffix.lower() == ".npz":
        return load_face_model_npz(path)
    from .flame import load_flame

    return load_flame(path)


def face_part_triangles(model: FaceModel) -> np.ndarray:
    """(F,) bool: triangles of the face proper (the part a photo textures); all of them for one-part models."""
    if model.vertex_part is None or not model.part_names or "face" not in model.part_names:
        return np.ones(len(model.triangles), dtype=bool)
    face = model.part_names.index("face")
    return (model.vertex_part[model.triangles] == face).all(1)
