"""FLAME (2020 / 2023) as a :class:`~pnrelight.avatar.face_model.FaceModel`, read without chumpy.

FLAME model files (``generic_model.pkl``, ``flame2023.pkl``, ...) are Python 2
pickles (read with ``encoding="latin1"``) of a dict holding ``v_template`` (V, 3),
``f`` (F, 3), ``shapedirs`` (V, 3, 300 shape + 100 expression), ``posedirs``,
``J_regressor`` (scipy sparse), ``weights``, ``kintree_table`` and, in some
releases, ``vt``/``ft`` texture coordinates. Several arrays are ``chumpy.ch.Ch``
objects. Unpickling goes through :class:`SafeUnpickler`: an allow-list of numpy
and scipy.sparse reconstructors, with every ``chumpy.*`` class replaced by
:class:`ChumpyStandIn`, whose ``__setstate__`` keeps the wrapped array (``x``,
else ``r``). Nothing else can be instantiated, so a file can not run code.

The landmark embedding maps FLAME's landmarks to surface points: a ``.npy``
(pickled dict, as shipped with DECA/RingNet: ``static_lmk_faces_idx`` /
``static_lmk_bary_coords`` for 51 points or ``full_lmk_faces_idx`` /
``full_lmk_bary_coords`` for 68, dynamic contour parts ignored), a ``.npz`` or
``.pkl`` with ``lmk_face_idx`` and ``lmk_b_coords`` (51 or 68 rows), or
``landmark_indices`` giving mediapipe indices directly (the 105-point mediapipe
embedding). 68 / 51 iBUG points go to mediapipe indices with
:data:`pnrelight.avatar.landmarks.IBUG68_TO_MEDIAPIPE` (documented in ``docs/face_model.md``).
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np

from ..errors import InputError
from .face_model import FaceModel
from .landmarks import IBUG68_TO_MEDIAPIPE, NUM_LANDMARKS

EMBEDDING_NAMES = ("landmark_embedding.npy", "flame_static_embedding.pkl", "flame_static_embedding.npz",
                   "mediapipe_landmark_embedding.npz", "landmark_embedding.npz")


class ChumpyStandIn:
    """Receives the state of a pickled ``chumpy`` object; :meth:`array` returns the array it wrapped."""

    def __init__(self, *args, **kwargs):
        self.state = {}

    def __setstate__(self, state):
        if isinstance(state, tuple) and state and isinstance(state[0], dict):  # (dict, slots)
            state = state[0]
        self.state = state if isinstance(state, dict) else {"x": state}

    def array(self) -> np.ndarray:
        for key in ("x", "r", "a"):
            value = self.state.get(key)
            if isinstance(value, ChumpyStandIn):
                return value.array()
            if value is not None:
                return np.asarray(value)
        raise ValueError(f"chumpy object without an array (state keys: {sorted(self.state)})")


_ALLOWED = {
    ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"), ("__builtin__", "object"), ("builtins", "object"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "slice"), ("builtins", "complex"),
    ("builtins", "list"), ("builtins", "dict"), ("builtins", "tuple"), ("builtins", "int"), ("builtins", "float"),
    ("builtins", "bool"), ("builtins", "bytearray"), ("collections", "OrderedDict"), ("collections", "defaultdict"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),  # protocol-2 bytes from Python 3
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
}
_SPARSE = {"csc_matrix", "csr_matrix", "coo_matrix", "csc_array", "csr_array", "coo_array"}


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that builds only numpy arrays, scipy sparse matrices and chumpy stand-ins."""

    def find_class(self, module, name):
        if module == "chumpy" or module.startswith("chumpy."):
            return ChumpyStandIn
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if module.startswith("scipy.sparse") and name in _SPARSE:
            import scipy.sparse

            return getattr(scipy.sparse, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def safe_pickle_load(data: bytes):
    return SafeUnpickler(io.BytesIO(data), encoding="latin1").load()


def _as_array(value, name: str, path: Path) -> np.ndarray:
    if isinstance(value, ChumpyStandIn):
        value = value.array()
    if hasattr(value, "toarray"):
        return value
    try:
        return np.asarray(value)
    except Exception:  # noqa: BLE001
        raise InputError(f"{path}: field {name!r} is not an array (is this a FLAME model file?)") from None


def _read_pickle(path: Path, what: str):
    if not path.is_file():
        raise InputError(f"{what} not found: {path} (check the path)")
    try:
        return safe_pickle_load(path.read_bytes())
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoding failure is a bad file
        raise InputError(f"cannot read {what} {path}: {exc} (expected a FLAME .pkl file)") from None


def _read_npy_safely(path: Path):
    """A ``.npy`` that may hold a pickled object (DECA's landmark_embedding.npy), via :class:`SafeUnpickler`."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        shape, fortran, dtype = np.lib.format._read_array_header(f, version)
        if dtype.hasobject:
            obj = safe_pickle_load(f.read())
            return obj[()] if isinstance(obj, np.ndarray) and obj.shape == () else obj
    return np.load(path, allow_pickle=False)


def load_flame_dict(model_path: str | os.PathLike) -> dict:
    """The FLAME pickle as a dict of numpy arrays (sparse ``J_regressor`` kept sparse)."""
    path = Path(model_path)
    raw = _read_pickle(path, "FLAME model")
    if not isinstance(raw, dict):
        raise InputError(f"{path} holds a {type(raw).__name__}, not a FLAME model dict (pass generic_model.pkl)")
    missing = [k for k in ("v_template", "f", "shapedirs") if k not in raw]
    if missing:
        raise InputError(f"{path} is missing FLAME fields {missing} (pass a FLAME 2020/2023 model .pkl)")
    return {k: _as_array(v, k, path) if not isinstance(v, (str, bytes)) else v for k, v in raw.items()}


def _embedding_arrays(emb, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(faces, bary, mediapipe indices or None) from any supported embedding layout."""
    get = lambda k: emb.get(k)  # noqa: E731
    mp_idx = get("landmark_indices")
    for f_key, b_key in (("lmk_face_idx", "lmk_b_coords"), ("full_lmk_faces_idx", "full_lmk_bary_coords"),
                         ("static_lmk_faces_idx", "static_lmk_bary_coords")):
        faces, bary = get(f_key), get(b_key)
        if faces is not None and bary is not None:
            faces = np.asarray(faces.array() if isinstance(faces, ChumpyStandIn) else faces).astype(np.int64).reshape(-1)
            bary = np.asarray(bary.array() if isinstance(bary, ChumpyStandIn) else bary, dtype=np.float64).reshape(-1, 3)
            if len(faces) != len(bary):
                raise InputError(f"{path}: {f_key} and {b_key} have different lengths (a damaged landmark embedding?)")
            return faces, bary, None if mp_idx is None else np.asarray(mp_idx).astype(np.int64).reshape(-1)
    raise InputError(f"{path} has no landmark embedding fields (lmk_face_idx/lmk_b_coords or "
                     "static_lmk_faces_idx/static_lmk_bary_coords); pass FLAME's landmark embedding file")


def load_landmark_embedding(path: str | os.PathLike, num_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """(478,) triangle and (478, 3) barycentrics per mediapipe landmark (-1 where FLAME has none)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"landmark embedding not found: {path} (pass FLAME's landmark_embedding.npy)")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                emb = {k: z[k] for k in z.files}
        elif path.suffix == ".npy":
            emb = _read_npy_safely(path)
        else:
            emb = _read_pickle(path, "landmark embedding")
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"cannot read landmark embedding {path}: {exc} (pass FLAME's landmark_embedding.npy)") from None
    if not isinstance(emb, dict):
        raise InputError(f"{path} does not hold a landmark embedding dict (pass FLAME's landmark_embedding.npy)")
    faces, bary, mp_idx = _embedding_arrays(emb, path)
    if mp_idx is None:
        if len(faces) == 68:
            mp_idx = IBUG68_TO_MEDIAPIPE
        elif len(faces) == 51:
            mp_idx = IBUG68_TO_MEDIAPIPE[17:]
        else:
            raise InputError(f"{path} has {len(faces)} landmarks; expected 68 or 51 (iBUG) or mediapipe "
                             "landmark_indices")
    if len(mp_idx) != len(faces) or (mp_idx < 0).any() or (mp_idx >= NUM_LANDMARKS).any():
        raise InputError(f"{path}: landmark_indices do not match the embedding (a damaged file?)")
    if (faces < 0).any() or (faces >= num_faces).any():
        raise InputError(f"{path}: landmark triangles out of range for this model ({num_faces} triangles); "
                         "is the embedding for another model?")
    lf = -np.ones(NUM_LANDMARKS, dtype=np.int32)
    lb = np.zeros((NUM_LANDMARKS, 3), dtype=np.float32)
    lf[mp_idx] = faces
    lb[mp_idx] = bary
    return lf, lb


def find_landmark_embedding(model_path: str | os.PathLike) -> Path | None:
    """A landmark embedding file next to the model, if there is one."""
    folder = Path(model_path).resolve().parent
    for name in EMBEDDING_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


def _split_uv_seams(vertices, triangles, vt, ft):
    """Duplicate vertices that carry several texture coordinates; returns (vertex source index, uvs, triangles)."""
    pairs = np.stack([triangles.reshape(-1), ft.reshape(-1)], 1)
    uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
    return uniq[:, 0], vt[uniq[:, 1]], inverse.reshape(-1, 3).astype(np.int32)


def _mirror_by_reflection(vertices: np.ndarray) -> np.ndarray:
    """Nearest vertex to each vertex's reflection about x = 0 (FLAME's template is symmetric about it)."""
    from scipy.spatial import cKDTree

    refl = vertices * np.array([-1.0, 1.0, 1.0])
    return cKDTree(vertices).query(refl)[1].astype(np.int32)


def _cylindrical_head_uvs(vertices: np.ndarray, mirror: np.ndarray, triangles: np.ndarray):
    """UVs for models without ``vt``: angle about the vertical axis (u = 0.5 in front), seam at the back.

    Seam-crossing triangles get duplicated vertices (u + 1) and u is rescaled to [0, 1].
    Returns (vertex source index, uvs, triangles).
    """
    v = np.asarray(vertices, dtype=np.float64)
    c = 0.5 * (v.min(0) + v.max(0))
    theta = np.arctan2(v[:, 0] - c[0], v[:, 2] - c[2])
    u = 0.5 + theta / (2 * np.pi)
    height = np.ptp(v[:, 1])
    vv = (v[:, 1] - v[:, 1].min()) / max(height, 1e-9)
    src = np.arange(len(v))
    uvs = np.stack([u, vv], 1)
    tri = triangles.copy()
    seam = np.ptp(u[tri], axis=1) > 0.5
    extra = {}
    for f in np.flatnonzero(seam):
        for k in range(3):
            i = tri[f, k]
            if u[i] < 0.5:
                if i not in extra:
                    extra[i] = len(src) + len(extra)
                tri[f, k] = extra[i]
    if extra:
        keys = np.array(list(extra), dtype=np.int64)
        src = np.concatenate([src, keys])
        uvs = np.concatenate([uvs, np.stack([u[keys] + 1.0, vv[keys]], 1)])
        uvs[:, 0] /= uvs[:, 0].max()
    return src, uvs.astype(np.float32), tri.astype(np.int32)


def load_flame(model_path: str | os.PathLike, landmark_embedding_path: str | os.PathLike | None = None, *,
               num_shape: int = 100, num_expression: int = 50) -> FaceModel:
    """Load a FLAME model file and its landmark embedding as a FaceModel.

    Parameters
    ----------
    model_path : FLAME 2020/2023 ``.pkl`` (chumpy objects allowed, chumpy not needed).
    landmark_embedding_path : FLAME landmark embedding; default: a known file next to the model
        (``landmark_embedding.npy``, ``flame_static_embedding.pkl``, ``mediapipe_landmark_embedding.npz``).
    num_shape, num_expression : how many leading components of ``shapedirs`` to keep (shape = the
        first 300, expression = the rest).

    The posed-model parts (``posedirs``, ``J_regressor`` as a sparse matrix, ``weights``,
    ``kintree_table``, and the rest joints ``J = J_regressor @ v_template``) are kept in ``extras``.
    """
    path = Path(model_path)
    if path.suffix.lower() == ".npz":  # a model saved by pnrelight (save_face_model) passes straight through
        from .face_model import load_face_model_npz

        return load_face_model_npz(path)
    d = load_flame_dict(path)
    v = np.asarray(d["v_template"], dtype=np.float64)
    f = np.asarray(d["f"]).astype(np.int64)
    sd = np.asarray(d["shapedirs"], dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3 or f.min() < 0 or f.max() >= len(v):
        raise InputError(f"{path}: v_template/f have the wrong shapes {v.shape}/{f.shape} (a damaged FLAME file?)")
    if sd.ndim != 3 or sd.shape[:2] != v.shape:
        raise InputError(f"{path}: shapedirs has shape {sd.shape}, expected ({len(v)}, 3, K) (a damaged FLAME file?)")
    n_id = 300 if sd.shape[2] > 300 else sd.shape[2]
    shape_basis = sd[:, :, : min(num_shape, n_id)]
    expression_basis = sd[:, :, n_id: n_id + num_expression] if sd.shape[2] > n_id else None
    if expression_basis is not None and expression_basis.shape[2] == 0:
        expression_basis = None

    emb_path = Path(landmark_embedding_path) if landmark_embedding_path else find_landmark_embedding(path)
    if emb_path is None:
        raise InputError(f"no landmark embedding next to {path} (put FLAME's landmark_embedding.npy beside the model)")
    lf, lb = load_landmark_embedding(emb_path, len(f))

    # Outward orientation: a closed-ish head has positive signed volume.
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    flipped = np.einsum("ij,ij->i", a, np.cross(b, c)).sum() < 0
    if flipped:
        f = f[:, ::-1].copy()
        lb = lb[:, ::-1].copy()

    mirror = _mirror_by_reflection(v)
    if "vt" in d and "ft" in d:
        vt = np.asarray(d["vt"], dtype=np.float64)
        ft = np.asarray(d["ft"]).astype(np.int64)
        if ft.shape != f.shape:
            raise InputError(f"{path}: ft has shape {ft.shape}, expected {f.shape} (a damaged FLAME file?)")
        if flipped:
            ft = ft[:, ::-1]
        src, uvs, tri = _split_uv_seams(v, f, vt, ft)
    else:
        src, uvs, tri = _cylindrical_head_uvs(v, mirror, f)
    # Per-vertex data follow the duplicated vertices; mirrors map to the mirror's first copy.
    first_copy = np.full(len(v), -1, dtype=np.int64)
    for new_i in range(len(src) - 1, -1, -1):
        first_copy[src[new_i]] = new_i
    uv_mirror = first_copy[mirror[src]].astype(np.int32)
    extras = {"source": str(path), "landmark_embedding": str(emb_path), "vertex_source": src.astype(np.int32)}
    for key in ("posedirs", "weights", "kintree_table"):
        if key in d:
            extras[key] = np.asarray(d[key])
    if "J_regressor" in d:
        jr = d["J_regressor"]
        extras["J_regressor"] = jr
        extras["J"] = np.asarray(jr @ v)
    return FaceModel(
        name=f"flame:{path.name}", vertices=v[src].astype(np.float32), triangles=tri.astype(np.int32),
        uvs=np.clip(uvs, 0.0, 1.0).astype(np.float32), landmark_faces=lf, landmark_bary=lb.astype(np.float32),
        shape_basis=shape_basis[src].astype(np.float32),
        expression_basis=None if expression_basis is None else expression_basis[src].astype(np.float32),
        uv_mirror=uv_mirror, extras=extras)
