"""Avatar geometry: default face model, subdivision, camera, fit, FLAME loader, landmarks, photo loading."""
from __future__ import annotations

import pickle
import sys
import types
import warnings
from collections import Counter

import numpy as np
import pytest

from avatar_synthetic import ellipsoid_mesh
from pnrelight.avatar import build_default_face_model as build
from pnrelight.avatar.camera import axis_angle_to_matrix, project, rotation_angle_deg
from pnrelight.avatar.face_model import (DEFAULT_FACE_MODEL_PATH, FaceModel, load_default_face_model, mesh_edges,
                                         subdivide, vertex_normals)
from pnrelight.errors import InputError


def _edge_face_counts(tri):
    return Counter(tuple(sorted((int(t[k]), int(t[(k + 1) % 3])))) for t in tri for k in range(3))


def _directed_edges_unique(tri):
    directed = Counter((int(t[k]), int(t[(k + 1) % 3])) for t in tri for k in range(3))
    return max(directed.values()) == 1


# ----------------------------------------------------------------------------- default model
def test_triangles_recovered_from_mediapipe_tessellation():
    edges = build.tessellation_edges()
    faces = build.triangles_from_edges(edges)
    assert len(edges) == 1322 and len(faces) == 852
    counts = _edge_face_counts(faces)
    assert set(counts) == set(map(tuple, edges.tolist()))  # every edge is used, by one or two faces
    assert max(counts.values()) == 2
    assert 468 - len(edges) + len(faces) == -2  # a disc with three holes (eyes, mouth)
    oriented = build.orient_triangles(faces)
    assert _directed_edges_unique(oriented)  # consistent orientation
    assert len(build.boundary_loops(oriented)) == 4


def test_triangles_from_edges_drops_separating_cliques():
    # Octahedron: 8 faces, and the 3-cliques are exactly the faces.
    oct_edges = np.array([(a, b) for a in range(6) for b in range(a + 1, 6) if {a, b} not in ({0, 1}, {2, 3}, {4, 5})])
    faces = build.triangles_from_edges(oct_edges)
    assert len(faces) == 8
    assert _directed_edges_unique(build.orient_triangles(faces))


def test_default_model_is_a_symmetric_manifold_with_a_symmetric_uv_layout():
    m = load_default_face_model(0)
    assert m.vertices.shape == (468, 3) and m.triangles.shape == (898, 3)
    assert DEFAULT_FACE_MODEL_PATH.stat().st_size < 1_000_000
    counts = _edge_face_counts(m.triangles)
    assert max(counts.values()) == 2 and _directed_edges_unique(m.triangles)
    assert len(build.boundary_loops(m.triangles)) == 1  # eyes and mouth closed
    # Faces look at +z (the viewer): the nose tip normal and most of the area.
    n = vertex_normals(m.vertices, m.triangles)
    assert n[1, 2] > 0.8
    v = m.vertices.astype(np.float64)
    fn = np.cross(v[m.triangles[:, 1]] - v[m.triangles[:, 0]], v[m.triangles[:, 2]] - v[m.triangles[:, 0]])
    area = np.linalg.norm(fn, axis=1)
    assert area[fn[:, 2] < 0].sum() < 0.15 * area.sum()  # only the far sides of the jaw turn away
    # Metric scale: outer eye corners 88 mm apart; the nose tip in front of the eyes.
    assert np.linalg.norm(v[33] - v[263]) == pytest.approx(0.088, rel=1e-4)
    assert v[1, 2] > v[33, 2] + 0.01
    # Mirror map: an involution, the reflection of the geometry, and an automorphism of the mesh.
    mirror = m.uv_mirror
    assert np.array_equal(mirror[mirror], np.arange(468))
    assert (mirror == np.arange(468)).sum() == 28
    assert mirror[33] == 263 and mirror[61] == 291 and mirror[1] == 1
    np.testing.assert_allclose(v[mirror] * [-1, 1, 1], v, atol=1e-6)
    tri_set = {tuple(np.roll(t, -np.argmin(t))) for t in m.triangles.tolist()}
    mirrored = {tuple(np.roll(t, -np.argmin(t))) for t in mirror[m.triangles[:, ::-1]].tolist()}
    assert mirrored == tri_set
    # UVs: inside [0, 1], u' = 1 - u, v' = v, nothing folded.
    assert m.uvs.min() >= 0.0 and m.uvs.max() <= 1.0
    np.testing.assert_allclose(m.uvs[mirror, 0], 1.0 - m.uvs[:, 0], atol=1e-6)
    np.testing.assert_allclose(m.uvs[mirror, 1], m.uvs[:, 1], atol=1e-6)
    assert (build.uv_signed_areas(m.uvs, m.triangles) > 0).all()
    # Landmarks: i on vertex i, iris points without a surface point.
    lm = m.landmark_points()
    np.testing.assert_allclose(lm[:468], v, atol=1e-6)
    assert np.isnan(lm[468:]).all() and (m.landmark_faces[468:] == -1).all()


def test_build_script_reproduces_the_shipped_asset(tmp_path):
    out = tmp_path / "face.npz"
    png = tmp_path / "uv.png"
    assert build.main(["--out", str(out), "--uv-png", str(png)]) == 0
    from pnrelight.avatar.face_model import load_face_model_npz

    a, b = load_face_model_npz(out), load_default_face_model(0)
    for key in ("vertices", "triangles", "uvs", "landmark_faces", "landmark_bary", "uv_mirror"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)
    from PIL import Image

    with Image.open(png) as im:
        assert im.size == (1024, 1024)


def test_ibug68_table_is_mirror_symmetric():
    from pnrelight.avatar.landmarks import IBUG68_MIRROR, IBUG68_TO_MEDIAPIPE

    m = load_default_face_model(0)
    assert len(set(IBUG68_TO_MEDIAPIPE.tolist())) == 68
    np.testing.assert_array_equal(m.uv_mirror[IBUG68_TO_MEDIAPIPE], IBUG68_TO_MEDIAPIPE[IBUG68_MIRROR])


# ----------------------------------------------------------------------------- subdivision
def test_subdivision_keeps_landmarks_uvs_mirror_and_smooths():
    m0 = load_default_face_model(0)
    for level, (nv, nf) in ((1, (1833, 3592)), (2, (7257, 14368))):
        m = subdivide(m0, level)
        assert m.vertices.shape == (nv, 3) and m.triangles.shape == (nf, 3)
        np.testing.assert_array_equal(m.vertices[:468], m0.vertices)  # interpolating
        np.testing.assert_allclose(m.landmark_points(), m0.landmark_points(), atol=1e-6, equal_nan=True)
        assert _directed_edges_unique(m.triangles) and max(_edge_face_counts(m.triangles).values()) == 2
        # UV continuity: one chart, no folds, every new vertex at the midpoint of its parents' UVs.
        assert (build.uv_signed_areas(m.uvs, m.triangles) > 0).all()
        edges = mesh_edges(subdivide(m0, level - 1).triangles) if level > 1 else mesh_edges(m0.triangles)
        prev = subdivide(m0, level - 1)
        np.testing.assert_allclose(m.uvs[len(prev.vertices):], 0.5 * (prev.uvs[edges[:, 0]] + prev.uvs[edges[:, 1]]),
                                   atol=1e-6)
        mirror = m.uv_mirror
        assert np.array_equal(mirror[mirror], np.arange(nv))
        np.testing.assert_allclose(m.uvs[mirror, 0], 1 - m.uvs[:, 0], atol=1e-6)
        np.testing.assert_allclose(m.vertices[mirror] * [-1, 1, 1], m.vertices, atol=1e-6)
    # Smoother: the mean angle between the normals of adjacent triangles drops.
    def mean_dihedral(model):
        v = model.vertices.astype(np.float64)
        t = model.triangles
        fn = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
        fn /= np.linalg.norm(fn, axis=1, keepdims=True)
        owner = {}
        angles = []
        for f, tt in enumerate(t.tolist()):
            for k in range(3):
                e = tuple(sorted((tt[k], tt[(k + 1) % 3])))
                if e in owner:
                    angles.append(np.degrees(np.arccos(np.clip(fn[owner[e]] @ fn[f], -1, 1))))
                owner[e] = f
        return np.mean(angles)

    assert mean_dihedral(subdivide(m0, 1)) < 0.7 * mean_dihedral(m0)


def test_subdivision_carries_bases_and_interior_landmarks():
    m0 = load_default_face_model(0)
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(468, 3, 2)).astype(np.float32)
    faces = rng.integers(0, len(m0.triangles), 478).astype(np.int32)
    bary = rng.dirichlet([1, 1, 1], 478).astype(np.float32)
    model = FaceModel("t", m0.vertices, m0.triangles, m0.uvs, faces, bary, shape_basis=basis, uv_mirror=m0.uv_mirror)
    flat = subdivide(model, 2, smooth=0.0)  # linear: surface points must not move
    np.testing.assert_allclose(flat.landmark_points(), model.landmark_points(), atol=1e-6)
    coeffs = np.array([0.3, -0.2])
    np.testing.assert_allclose(flat.landmark_points(flat.shaped_vertices(coeffs)),
                               model.landmark_points(model.shaped_vertices(coeffs)), atol=1e-5)


# ----------------------------------------------------------------------------- camera and fit
def test_projection_convention():
    uv = project(np.array([[0, 0, -1.0], [0.1, 0.0, -1.0], [0.0, 0.1, -1.0]]), 1000.0, (320, 240))
    np.testing.assert_allclose(uv, [[320, 240], [420, 240], [320, 140]], atol=1e-4)
    r = np.array([0.1, -0.4, 0.25])
    from pnrelight.avatar.camera import matrix_to_axis_angle

    np.testing.assert_allclose(matrix_to_axis_angle(axis_angle_to_matrix(r)), r, atol=1e-9)


def _synthetic_landmarks(model, rotation_deg, translation, focal, pp, shape=None, expression=None):
    R = axis_angle_to_matrix(np.radians(rotation_deg))
    verts = model.shaped_vertices(shape, expression)
    lm = model.landmark_points(verts) @ R.T + translation
    uv = project(lm, focal, pp).astype(np.float64)
    uv[~model.landmark_mask] = np.nan
    return R, uv


def test_fit_recovers_synthetic_pose_and_focal():
    from pnrelight.avatar.fit import fit_face

    m = load_default_face_model(1)
    h, w = 768, 1024
    f_true = 1.25 * max(h, w)
    R, uv = _synthetic_landmarks(m, [8, -25, 4], np.array([0.03, -0.02, -0.7]), f_true, (w / 2, h / 2))
    fit = fit_face(m, uv, (h, w), iterations=200, seed=3)
    assert rotation_angle_deg(fit.rotation, R) < 2.0
    assert fit.landmark_residual_px < 1.0
    assert fit.focal_px == pytest.approx(f_true, rel=0.05)
    assert fit.seed == 3 and not fit.refined  # no depth given: no refinement
    assert fit.vertices.shape == m.vertices.shape


def test_fit_refinement_puts_vertices_on_the_landmarks():
    from pnrelight.avatar.fit import fit_face

    m = load_default_face_model(1)
    h, w = 600, 600
    R, uv = _synthetic_landmarks(m, [0, 10, 0], np.array([0.0, 0.0, -0.8]), 720.0, (300, 300))
    rng = np.random.default_rng(1)
    uv_noisy = uv + rng.normal(0, 1.5, uv.shape)  # a face that is not exactly the template
    depth = np.full((478, 1), np.nan)
    depth[:468, 0] = (m.vertices[:468] @ R.T)[:, 2] * 720 / 0.8  # mediapipe-like relative depth in pixels
    fit = fit_face(m, np.concatenate([uv_noisy, depth], 1), (h, w), iterations=150)
    assert fit.refined
    proj = project(fit.vertices[:468], fit.focal_px, fit.principal_point)
    assert np.abs(proj - uv_noisy[:468]).max() < 1e-3
    assert fit.extras["residual_after_refine_px"] < 1e-3
    # Subdivided vertices follow their (moved) parents: the mesh stays a consistent, front-facing surface.
    n = vertex_normals(fit.vertices, m.triangles)
    assert n[1, 2] > 0.5


# ----------------------------------------------------------------------------- FLAME
def _ellipsoid(n_lat=12, n_lon=24):
    return ellipsoid_mesh(n_lat, n_lon, (0.08, 0.11, 0.1))


def _flame_dict(with_uv=False):
    import scipy.sparse

    v, f = _ellipsoid()
    rng = np.random.default_rng(0)
    V = len(v)
    shapedirs = np.zeros((V, 3, 310))
    for k in range(310):  # smooth, small displacement fields (about a millimetre each)
        freq = rng.normal(size=3) * 20
        shapedirs[:, :, k] = 1e-3 * np.sin(v @ freq)[:, None] * rng.normal(size=3)
    J = scipy.sparse.random(5, V, density=0.05, random_state=1, format="csc")
    d = dict(v_template=v, f=f.astype(np.uint32), shapedirs=shapedirs, posedirs=np.zeros((V, 3, 36)),
             J_regressor=J, weights=np.full((V, 5), 0.2), kintree_table=np.array([[-1, 0, 1, 1, 1], [0, 1, 2, 3, 4]]),
             bs_style="lbs", bs_type="lrotmin")
    if with_uv:
        d["vt"] = np.stack([0.5 + np.arctan2(v[:, 0], v[:, 2]) / (2 * np.pi), (v[:, 1] + 0.11) / 0.22], 1)
        d["ft"] = f.copy()
    return d


def _front_embedding(v, f, n, seed=0):
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    cen = (a + b + c) / 3
    front = np.flatnonzero((cen[:, 2] > 0.05) & (np.abs(cen[:, 1]) < 0.08))
    rng = np.random.default_rng(seed)
    return rng.choice(front, n, replace=False), rng.dirichlet([2, 2, 2], n)


def _pickle_with_fake_chumpy(obj_fn, monkeypatch):
    """Pickle, in the FLAME way (protocol 2), a dict whose arrays are wrapped in a fake ``chumpy.ch.Ch``."""
    chumpy = types.ModuleType("chumpy")
    ch_mod = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = x
            self._cache = {"unused": 1}

        def __getstate__(self):
            return {"x": self.x, "_cache": self._cache}

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    ch_mod.Ch = Ch
    chumpy.ch = ch_mod
    with monkeypatch.context() as mp:
        mp.setitem(sys.modules, "chumpy", chumpy)
        mp.setitem(sys.modules, "chumpy.ch", ch_mod)
        data = pickle.dumps(obj_fn(Ch), protocol=2)
    assert "chumpy" not in sys.modules
    return data


@pytest.fixture()
def flame_files(tmp_path, monkeypatch):
    def make(Ch):
        d = _flame_dict()
        d["v_template"] = Ch(d["v_template"])
        d["shapedirs"] = Ch(d["shapedirs"])
        return d

    model = tmp_path / "generic_model.pkl"
    model.write_bytes(_pickle_with_fake_chumpy(make, monkeypatch))
    d = _flame_dict()
    faces, bary = _front_embedding(d["v_template"], d["f"].astype(np.int64), 68)
    emb = {"full_lmk_faces_idx": faces[None], "full_lmk_bary_coords": bary[None],
           "static_lmk_faces_idx": faces[17:], "static_lmk_bary_coords": bary[17:]}
    np.save(tmp_path / "landmark_embedding.npy", np.array(emb, dtype=object), allow_pickle=True)
    return model, tmp_path / "landmark_embedding.npy", d, faces, bary


def test_flame_loader_reads_chumpy_pickle_without_chumpy(flame_files):
    from pnrelight.avatar.flame import load_flame
    from pnrelight.avatar.landmarks import IBUG68_TO_MEDIAPIPE

    model_path, emb_path, d, faces, bary = flame_files
    assert "chumpy" not in sys.modules
    m = load_flame(model_path)  # embedding found next to the model
    V = len(d["v_template"])
    assert m.vertices.shape[1] == 3 and len(m.vertices) >= V
    np.testing.assert_allclose(m.vertices[:V], d["v_template"], atol=1e-7)
    assert m.shape_basis.shape == (len(m.vertices), 3, 100) and m.expression_basis.shape == (len(m.vertices), 3, 10)
    np.testing.assert_allclose(m.expression_basis[:V, :, 3], d["shapedirs"][:, :, 303], atol=1e-7)
    assert m.extras["J"].shape == (5, 3)
    np.testing.assert_allclose(m.extras["J"], d["J_regressor"] @ d["v_template"], atol=1e-9)
    # Landmarks land on the mediapipe indices of the iBUG table, at the embedded surface points.
    lm = m.landmark_points()
    v, f = d["v_template"], d["f"].astype(np.int64)
    expect = np.einsum("nk,nkc->nc", bary, v[f[faces]])
    np.testing.assert_allclose(lm[IBUG68_TO_MEDIAPIPE], expect, atol=1e-6)
    assert m.landmark_mask.sum() == 68
    assert (build.uv_signed_areas(m.uvs, m.triangles) > -1e-12).mean() > 0.99
    assert m.uvs.min() >= 0 and m.uvs.max() <= 1
    assert (m.uv_mirror >= 0).all() and (m.uv_mirror < len(m.vertices)).all()
    np.testing.assert_allclose(m.vertices[m.uv_mirror] * [-1, 1, 1], m.vertices, atol=1e-6)  # the head is symmetric


def test_flame_loader_plain_arrays_uv_and_51_point_embedding(tmp_path):
    from pnrelight.avatar.flame import load_flame
    from pnrelight.avatar.landmarks import IBUG68_TO_MEDIAPIPE

    d = _flame_dict(with_uv=True)
    (tmp_path / "flame2023.pkl").write_bytes(pickle.dumps(d, protocol=2))
    faces, bary = _front_embedding(d["v_template"], d["f"].astype(np.int64), 51)
    with open(tmp_path / "flame_static_embedding.pkl", "wb") as fh:
        pickle.dump({"lmk_face_idx": faces, "lmk_b_coords": bary}, fh, protocol=2)
    m = load_flame(tmp_path / "flame2023.pkl", tmp_path / "flame_static_embedding.pkl", num_shape=20, num_expression=5)
    assert m.shape_basis.shape[2] == 20 and m.expression_basis.shape[2] == 5
    assert m.landmark_mask.sum() == 51 and m.landmark_mask[IBUG68_TO_MEDIAPIPE[17:]].all()
    # vt/ft given: seam vertices duplicated, each copy with its own UV, geometry unchanged.
    src = m.extras["vertex_source"]
    np.testing.assert_allclose(m.vertices, d["v_template"][src], atol=1e-7)
    vt_used = {(int(a), int(b)) for a, b in zip(d["f"].reshape(-1), d["ft"].reshape(-1))}
    assert len(m.vertices) == len(vt_used)


def test_fit_with_flame_bases_recovers_landmarks(flame_files):
    from pnrelight.avatar.fit import fit_face
    from pnrelight.avatar.flame import load_flame

    model_path, *_ = flame_files
    m = load_flame(model_path, num_shape=20, num_expression=5)
    shape = np.zeros(20)
    shape[:3] = [2.0, -1.0, 1.5]
    R, uv = _synthetic_landmarks(m, [5, 15, 0], np.array([0.0, 0.01, -0.6]), 700.0, (256, 256), shape=shape)
    fit = fit_face(m, uv, (512, 512), iterations=250, shape_prior_weight=1e-5, expression_prior_weight=1e-5)
    assert fit.landmark_residual_px < 1.0
    assert rotation_angle_deg(fit.rotation, R) < 2.0
    assert len(fit.shape) == 20 and len(fit.expression) == 5 and not fit.refined


def test_flame_bad_files_are_input_errors(tmp_path, flame_files):
    from pnrelight.avatar.flame import load_flame

    model_path, emb_path, *_ = flame_files
    with pytest.raises(InputError, match="not found"):
        load_flame(tmp_path / "nope.pkl")
    bad = tmp_path / "truncated.pkl"
    bad.write_bytes(model_path.read_bytes()[:500])
    with pytest.raises(InputError, match="cannot read"):
        load_flame(bad)
    evil = tmp_path / "evil.pkl"

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    evil.write_bytes(pickle.dumps({"v_template": Evil()}))
    with pytest.raises(InputError, match="refusing"):
        load_flame(evil)
    notdict = tmp_path / "list.pkl"
    notdict.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(InputError, match="not a FLAME model"):
        load_flame(notdict)
    missing = tmp_path / "missing.pkl"
    missing.write_bytes(pickle.dumps({"v_template": np.zeros((3, 3))}))
    with pytest.raises(InputError, match="missing FLAME fields"):
        load_flame(missing)
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "generic_model.pkl").write_bytes(model_path.read_bytes())
    with pytest.raises(InputError, match="no landmark embedding"):
        load_flame(alone / "generic_model.pkl")
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, lmk_face_idx=np.arange(10), lmk_b_coords=np.full((10, 3), 1 / 3))
    with pytest.raises(InputError, match="expected 68 or 51"):
        load_flame(model_path, wrong)
    far = tmp_path / "far.npz"
    np.savez(far, lmk_face_idx=np.full(68, 10**6), lmk_b_coords=np.full((68, 3), 1 / 3))
    with pytest.raises(InputError, match="out of range"):
        load_flame(model_path, far)


# ----------------------------------------------------------------------------- landmarks (mediapipe)
@pytest.fixture(scope="module")
def astronaut():
    skimage_data = pytest.importorskip("skimage.data")
    return skimage_data.astronaut().astype(np.float32) / 255.0


def test_mediapipe_finds_the_astronaut_face_and_mask(astronaut):
    from pnrelight.avatar.landmarks import detect_faces, person_mask, select_face

    faces = detect_faces(astronaut)
    assert len(faces) == 1
    face = select_face(faces)
    p = face.points
    assert p.shape == (478, 3) and np.isfinite(p).all()
    assert (p[:, 0] > 0).all() and (p[:, 0] < 512).all() and (p[:, 1] > 0).all() and (p[:, 1] < 512).all()
    # The face is in the upper middle of the picture, about 100 px tall; eyes above the mouth.
    assert 150 < p[1, 0] < 300 and 60 < p[1, 1] < 200 and 80 < face.size_px < 160
    assert p[33, 0] < p[263, 0] and p[33, 1] < p[13, 1]
    assert p[1, 2] > p[234, 2]  # depth: the nose tip is closer than the face side
    mask = person_mask(astronaut)
    assert mask.shape == (512, 512) and mask.dtype == np.float32
    assert mask[int(p[1, 1]), int(p[1, 0])] > 0.5


def test_no_face_and_tiny_face_are_input_errors(astronaut, capfd):
    import skimage.transform

    from pnrelight.avatar.landmarks import MIN_FACE_SIZE_PX, detect_faces, select_face

    blank = np.full((256, 256, 3), 0.5, np.float32)
    faces = detect_faces(blank)
    assert faces == []
    assert capfd.readouterr().err == ""  # mediapipe's native log lines are kept off stderr
    with pytest.raises(InputError, match="no face found"):
        select_face(faces, source="blank.png")
    tiny = skimage.transform.resize(astronaut, (160, 160), anti_aliasing=True).astype(np.float32)
    with pytest.raises(InputError, match=f"too small.*{MIN_FACE_SIZE_PX} px"):
        detect_faces(tiny)


def test_several_faces_take_the_largest_with_a_warning(astronaut):
    import skimage.transform

    from pnrelight.avatar.landmarks import detect_faces, select_face

    small = skimage.transform.resize(astronaut, (384, 384), anti_aliasing=True).astype(np.float32)
    canvas = np.ones((512, 900, 3), np.float32)
    canvas[:, :512] = astronaut
    canvas[64:448, 512:896] = small
    faces = detect_faces(canvas)
    assert len(faces) == 2
    assert faces[0].area_px > faces[1].area_px and faces[0].bbox[2] < 512 < faces[1].bbox[0]
    with pytest.warns(UserWarning, match="--face-index"):
        chosen = select_face(faces)
    assert chosen is faces[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert select_face(faces, 1) is faces[1]
    with pytest.raises(InputError, match="--face-index 2"):
        select_face(faces, 2)


def test_face_alignment_backend_is_never_touched_without_local_weights(astronaut, monkeypatch, tmp_path):
    from pnrelight.avatar import landmarks

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached weights here
    assert not landmarks.face_alignment_available()
    faces = landmarks.detect_faces(astronaut, backend="auto")
    assert faces and faces[0].backend == "mediapipe"
    assert "face_alignment" not in sys.modules
    with pytest.raises(InputError, match="face-alignment backend"):
        landmarks.detect_faces(astronaut, backend="face-alignment")


# ----------------------------------------------------------------------------- photo loading
def test_photo_loader_formats(tmp_path):
    from PIL import Image

    from pnrelight.avatar.photo import load_photo
    from pnrelight.imageio import write_image

    rgba = np.zeros((8, 6, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:4, :, 3] = 255  # top half opaque red, bottom half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img = load_photo(tmp_path / "a.png")
    assert img.shape == (8, 6, 3) and img.dtype == np.float32
    np.testing.assert_allclose(img[0, 0], [1, 0, 0])
    np.testing.assert_allclose(img[-1, 0], [1, 1, 1])  # composited over white

    gray = (np.arange(48).reshape(8, 6) * 5).astype(np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    img = load_photo(tmp_path / "g.png")
    assert img.shape == (8, 6, 3)
    np.testing.assert_allclose(img[..., 0], gray / 255.0, atol=1e-6)
    np.testing.assert_array_equal(img[..., 0], img[..., 2])

    ramp = np.linspace(0, 1, 8 * 6 * 3).reshape(8, 6, 3).astype(np.float32)
    write_image(tmp_path / "d.png", ramp, bits=16)
    img = load_photo(tmp_path / "d.png")
    np.testing.assert_allclose(img, ramp, atol=1e-4)  # 16-bit precision kept (8-bit would be ~2e-3 off)
    assert np.abs(img * 255 - np.rint(img * 255)).max() > 0.05

    # EXIF orientation 6: stored 40 wide x 20 tall, displayed rotated 90 degrees clockwise (20 x 40).
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = (255, 0, 0)  # left half red
    stored[:, 20:] = (0, 0, 255)  # right half blue
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "r.jpg", exif=exif, quality=95)
    img = load_photo(tmp_path / "r.jpg")
    assert img.shape == (40, 20, 3)
    assert img[5, 10, 0] > 0.8 and img[5, 10, 2] < 0.2  # red on top after the clockwise turn
    assert img[35, 10, 2] > 0.8 and img[35, 10, 0] < 0.2

    (tmp_path / "bad.jpg").write_bytes(b"not an image at all")
    with pytest.raises(InputError, match="cannot read image"):
        load_photo(tmp_path / "bad.jpg")
    with pytest.raises(InputError, match="not found"):
        load_photo(tmp_path / "missing.png")
