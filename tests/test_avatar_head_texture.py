"""Textures all round on the ICT-FaceKit head: photo on the face, skin fill on the mesh, painted eyes/teeth, no seams."""
from __future__ import annotations

import numpy as np
import pytest

from pnrelight.avatar.raster import interpolate, rasterize_uv

T = 512  # seam pairs need texels under ~0.5 mm on the skull; 256 leaves too few of them


@pytest.fixture(scope="module")
def head():
    """``reconstruct`` of the astronaut with the ICT head (forced as the default model for this module;
    harmless once the head is the pipeline's default)."""
    from skimage import data

    from pnrelight.avatar import face_model, pipeline
    from pnrelight.avatar.head_texture import is_head_model

    ict = face_model.load_ict_face_model()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(face_model, "load_default_face_model", lambda *a, **k: ict)
        rec = pipeline.reconstruct(data.astronaut(), texture_size=T)
    model = rec.model
    assert is_head_model(model) and len(model.vertices) == len(ict.vertices)
    tri_part = model.vertex_part[model.triangles].max(1)
    part = np.where(rec.textures["coverage"], tri_part[np.maximum(rec.textures["uv_raster"].face_id, 0)], -1)
    return rec, part


def _name(rec, part, name):
    return part == rec.model.part_names.index(name)


def _lum(rgb):
    return np.asarray(rgb) @ np.array([0.2126, 0.7152, 0.0722])


@pytest.mark.slow
def test_head_textures_are_finite_everywhere(head):
    rec, part = head
    tex = rec.textures
    assert tex["albedo"].shape == (T, T, 3) and tex["normal"].shape == (T, T, 3) and tex["specular"].shape == (T, T)
    for key in ("albedo", "normal", "specular", "photo_weight", "filled_confidence"):
        assert np.isfinite(tex[key]).all(), key
    assert 0.0 <= tex["albedo"].min() and tex["albedo"].max() <= 1.0
    np.testing.assert_allclose(np.linalg.norm(tex["normal"], axis=-1), 1.0, atol=1e-4)
    # The photo textures the face part only, and most of the face proper is photo.
    alpha = tex["photo_weight"]
    assert alpha[~_name(rec, part, "face")].max() == 0.0
    assert (alpha[_name(rec, part, "face")] > 0.9).mean() > 0.3
    assert rec.mirror_fill


@pytest.mark.slow
def test_unseen_skin_takes_the_faces_skin_tone(head):
    rec, part = head
    alb = rec.textures["albedo"]
    face_skin = np.median(alb[rec.textures["photo_weight"] > 0.9], axis=0)
    skull = alb[_name(rec, part, "head")]
    assert len(skull) > 5000
    # Every skull / neck texel: each channel within -35 % / +40 % of the face's median, and skin-hued (R > G > B).
    ratio = skull / face_skin
    assert np.all((ratio > 0.65) & (ratio < 1.4)), (ratio.min(0), ratio.max(0))
    assert np.all((skull[:, 0] > skull[:, 1]) & (skull[:, 1] > skull[:, 2]))
    # Unseen normals are the mesh's (model frame): the back of the skull looks backwards.
    z = interpolate(rec.model.vertices, rec.model.triangles, rec.textures["uv_raster"])[..., 2]
    back = _name(rec, part, "head") & (z < -0.06)
    assert back.sum() > 500 and np.median(rec.textures["normal"][back][:, 2]) < -0.7
    # Specular: the seen face's level on the skull, smooth (no speckle).
    assert np.ptp(rec.textures["specular"][_name(rec, part, "head")]) < 0.05


def _seam_texel_pairs(model, uv_raster, max_dist_m, steps=np.linspace(0.02, 0.98, 49)):
    """Pairs (N, 2) of flat texel indices that hold the same 3D point (within ``max_dist_m``) from two UV islands.

    Points along every seam edge (a welded edge with different UVs on its two sides), each side's point
    moved 0.05 texel into its own triangle; the texels containing them, kept when both are covered by
    their islands and their surface points (template) lie within ``max_dist_m``.
    """
    from pnrelight.avatar.head_texture import uv_islands
    from pnrelight.avatar.uv import weld_vertices

    size = uv_raster.face_id.shape[0]
    tris = np.asarray(model.triangles, dtype=np.int64)
    uvs = np.asarray(model.uvs, dtype=np.float64)
    g = weld_vertices(model.vertices)
    e = np.concatenate([tris[:, [0, 1, 2]], tris[:, [1, 2, 0]], tris[:, [2, 0, 1]]])  # edge (i, j), opposite corner
    swap = g[e[:, 0]] > g[e[:, 1]]
    e[swap, :2] = e[swap][:, [1, 0]]
    key = g[e[:, 0]] * (g.max() + 1) + g[e[:, 1]]
    order = np.lexsort((uvs[e[:, 0], 0], key))
    e, key = e[order], key[order]
    moved = np.abs(uvs[e[1:, :2]] - uvs[e[:-1, :2]]).max(axis=(1, 2)) > 1e-6
    k = np.flatnonzero((key[1:] == key[:-1]) & moved)
    sides = (e[k], e[k + 1])
    island = uv_islands(tris, len(uvs))
    pos = interpolate(model.vertices, tris, uv_raster).reshape(-1, 3)
    fid = uv_raster.face_id.reshape(-1)
    pairs = []
    for s in steps:
        flat = []
        for E in sides:
            p = (1 - s) * uvs[E[:, 0]] + s * uvs[E[:, 1]]
            d = uvs[E[:, 2]] - p
            p = p + 0.05 * d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True) * size, 1e-12)
            col = np.clip((p[:, 0] * size).astype(np.int64), 0, size - 1)
            row = np.clip(((1 - p[:, 1]) * size).astype(np.int64), 0, size - 1)
            flat.append(row * size + col)
        a, b = flat
        ok = (fid[a] >= 0) & (fid[b] >= 0)
        ok[ok] &= island[fid[a[ok]]] != island[fid[b[ok]]]
        ok &= np.linalg.norm(pos[a] - pos[b], axis=1) <= max_dist_m
        pairs.append(np.stack([a[ok], b[ok]], 1))
    return np.unique(np.sort(np.concatenate(pairs), axis=1), axis=0)


@pytest.mark.slow
def test_no_colour_seams_between_uv_islands(head):
    """Texel pairs from two UV islands holding the same 3D point get the same colour.

    Tolerance (linear albedo, largest channel difference): skin (face / skull / neck / sockets), pairs within
    1 mm: 95th percentile < 0.05, max < 0.15 (what is left is the colour gradient over that millimetre,
    steepest where the eyelids turn into the dark eye sockets: ~0.1); eyes, teeth, gums, pairs within 0.5 mm
    (the limbus changes colour within a millimetre): max < 0.05. Measured: skin p95 0.03, max 0.1; the rest
    max 0.015. The previous fill (UV-space inpainting + nearest texel) gave differences up to ~0.8 here.
    """
    rec, part = head
    model, tex = rec.model, rec.textures
    albedo = tex["albedo"].reshape(-1, 3)
    skin_ids = [model.part_names.index(p) for p in ("face", "head", "mouth_socket", "eye_socket")]
    flat_part = part.reshape(-1)
    for max_dist, skin, p95, worst in ((1e-3, True, 0.05, 0.15), (5e-4, False, None, 0.05)):
        pairs = _seam_texel_pairs(model, tex["uv_raster"], max_dist)
        pairs = pairs[np.isin(flat_part[pairs[:, 0]], skin_ids) == skin]
        assert len(pairs) > (100 if skin else 30), len(pairs)
        d = np.abs(albedo[pairs[:, 0]] - albedo[pairs[:, 1]]).max(-1)
        if p95 is not None:
            assert np.percentile(d, 95) < p95, np.percentile(d, 95)
        assert d.max() < worst, d.max()


@pytest.mark.slow
def test_eyes_teeth_and_mouth_have_their_colours(head):
    rec, part = head
    tex = rec.textures
    alb, spec = tex["albedo"], tex["specular"]
    # Iris colour from the photo: the astronaut's eyes are brown (dark, red > green > blue).
    iris = tex["iris_colour"]
    assert iris[0] > iris[1] > iris[2] and 0.01 < _lum(iris) < 0.3
    sclera, iris_t = alb[_name(rec, part, "sclera")], alb[_name(rec, part, "iris")]
    # Sclera: mostly off-white, the pupil (painted on the cornea) near black; iris texels take the iris hue.
    assert np.percentile(_lum(sclera), 75) > 0.4 and 0.002 < np.mean(_lum(sclera) < 0.03) < 0.05
    white = sclera[_lum(sclera) > 0.4]
    assert np.all(white[:, 0] >= white[:, 1]) and np.all(white[:, 1] >= white[:, 2])
    brown = iris_t[(_lum(iris_t) > 0.02) & (_lum(iris_t) < 0.3)]
    assert len(brown) > 0.3 * len(iris_t) and np.median(brown[:, 0] / np.maximum(brown[:, 2], 1e-4)) > 3
    # Teeth ivory, gums and tongue pink-red, the mouth socket dark red-brown.
    teeth = alb[_name(rec, part, "teeth")]
    assert np.median(_lum(teeth)) > 0.2 and np.all(np.median(teeth, 0)[[0, 1]] > np.median(teeth, 0)[[1, 2]])
    gums = np.median(alb[_name(rec, part, "gums_tongue")], 0)
    assert gums[0] > 2.5 * gums[1] and gums[0] > 0.15
    socket = np.median(alb[_name(rec, part, "mouth_socket")], 0)
    assert _lum(socket) < 0.1 and socket[0] > 2 * socket[1]
    # Specular: wet eyes above teeth above skin; the sockets matte.
    s = {n: np.median(spec[_name(rec, part, n)]) for n in ("sclera", "teeth", "head", "mouth_socket")}
    assert s["sclera"] > s["teeth"] > s["head"] and s["mouth_socket"] < 0.05


def test_pocket_and_speck_cleaning_of_the_photo_weight():
    from scipy import sparse

    from pnrelight.avatar.head_texture import _close_pockets

    # A path graph of 10 unit-area vertices: 0 and 9 outside the face, 1-8 inside.
    n = 10
    graph = sparse.csr_matrix((np.ones(n - 1), (np.arange(n - 1), np.arange(1, n))), shape=(n, n))
    mass = np.full(n, 1e-5)
    interior = np.ones(n, dtype=bool)
    interior[[0, 9]] = False
    w = np.array([0, 0.0, 0.9, 0.9, 0.0, 0.0, 0.9, 0.9, 0.0, 0])
    out = _close_pockets(w, interior, graph, mass, beyond=np.zeros(n))
    # 4-5 is enclosed by seen vertices: a pocket, kept as photo; 1 and 8 touch the outside: left unseen.
    assert out[4] == out[5] == 1.0 and out[1] == out[8] == 0.0
    # Seen specks far from the landmarks are dropped.
    out = _close_pockets(w, interior, graph, mass, beyond=np.ones(n))
    assert out[2] == out[3] == 0.0
