"""The default head model (ICT-FaceKit): the shipped asset, its build script and the landmark correspondence."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import SHARED
from pnrelight.avatar.face_model import ICT_HEAD_PATH, load_default_face_model, load_face_model, load_ict_face_model

ICT_SOURCE = SHARED / "data" / "face" / "ict-facekit" / "ict_facekit_light.npz"


@pytest.fixture(scope="module")
def head():
    # The asset as the build script writes it: the geometric landmark registration (the detector
    # calibration on top of it is tested in test_landmark_calibration.py).
    return load_ict_face_model(calibrated=False)


def test_asset_counts_names_and_size(head):
    assert ICT_HEAD_PATH.stat().st_size < 10.5e6
    assert head.vertices.shape == (26783, 3) and head.triangles.shape == (48836, 3)
    assert head.shape_basis.shape == (26783, 3, 50) and head.expression_basis.shape == (26783, 3, 53)
    assert len(head.expression_names) == 53 and {"jawOpen", "eyeBlink_L", "mouthSmile_R"} <= set(head.expression_names)
    assert head.expression_range == (0.0, 1.0)
    with np.load(ICT_HEAD_PATH) as z:
        assert z["shape_basis"].dtype == np.float16 and z["expression_basis"].dtype == np.float16
    # Metres, y up, face along +z: a head is ~0.2-0.4 m tall and the nose is the front-most face point.
    assert 0.25 < np.ptp(head.vertices[:, 1]) < 0.4
    assert head.landmark_points()[1, 2] > np.percentile(head.vertices[:, 2], 99)
    assert load_face_model(None).name == head.name and load_face_model("mediapipe").name == load_default_face_model().name


def test_uvs_in_unit_square_and_head_islands_do_not_overlap(head):
    from pnrelight.avatar.raster import rasterize_uv

    assert head.uvs.min() >= 0.0 and head.uvs.max() <= 1.0
    skin = [head.part_names.index(p) for p in ("face", "head", "mouth_socket", "eye_socket")]
    tris = head.triangles[np.isin(head.vertex_part[head.triangles], skin).all(1)]
    uv = head.uvs[tris].astype(np.float64)
    area = 0.5 * np.abs((uv[:, 1, 0] - uv[:, 0, 0]) * (uv[:, 2, 1] - uv[:, 0, 1])
                        - (uv[:, 2, 0] - uv[:, 0, 0]) * (uv[:, 1, 1] - uv[:, 0, 1]))
    size = 2048
    covered = rasterize_uv(head.uvs, tris, size).mask.mean()
    # Non-overlapping islands: the union covers the sum of the triangle areas (rasterisation edges ~1 %).
    assert covered == pytest.approx(area.sum(), rel=0.02)
    # The 8-part atlas holds every kept part, each in its own cell (the face cell is the largest).
    face_uv = head.uvs[head.vertex_part == head.part_names.index("face")]
    assert face_uv[:, 0].max() <= 0.625 + 1e-6 and face_uv[:, 1].min() >= 0.375 - 1e-6


def test_expressions_move_their_region(head):
    jaw = head.expression_basis[:, :, head.expression_names.index("jawOpen")]
    moved = np.linalg.norm(jaw, axis=1) > 1e-3
    # jawOpen moves the chin and lower lip down, not the forehead.
    assert head.vertices[moved, 1].mean() < head.landmark_points()[1, 1]
    lip = head.landmark_points()[17]  # lower lip, bottom
    opened = head.landmark_points(head.shaped_vertices(None, np.eye(53)[head.expression_names.index("jawOpen")]))[17]
    assert opened[1] < lip[1] - 0.01


def test_landmark_correspondence(head):
    from pnrelight.avatar.build_ict_face_model import LANDMARK_PAIRS

    from mediapipe.python.solutions import face_mesh_connections as fmc

    lm = head.landmark_points()
    oval = sorted({i for edge in fmc.FACEMESH_FACE_OVAL for i in edge})
    has = np.setdiff1d(np.arange(468), oval)
    assert np.isfinite(lm[has]).all() and (head.landmark_faces[oval] == -1).all() and (head.landmark_faces[468:] == -1).all()
    assert (head.vertex_part[head.triangles[head.landmark_faces[has]]] == head.part_names.index("face")).all()
    # The registered mediapipe landmarks land within a few mm of ICT's own anatomical landmarks.
    with np.load(ICT_HEAD_PATH) as z:
        upstream, source = z["upstream_vertex"], z["vertex_source"]
    ict68 = json.loads((SHARED / "data" / "face" / "ict-facekit" / "vertex_indices.json").read_text())["idx_to_landmark_verts"] \
        if (SHARED / "data" / "face" / "ict-facekit").is_dir() else None
    if ict68 is not None:
        out_of = {int(u): int(np.flatnonzero(source == i)[0]) for i, u in enumerate(upstream) if u in set(ict68)}
        d = [np.linalg.norm(lm[mp] - head.vertices[out_of[ict68[a]]]) * 1000 for a, mp in LANDMARK_PAIRS if mp not in oval]
        assert np.mean(d) < 3.0 and np.max(d) < 6.0, d
    # Left/right: mirrored mediapipe landmarks sit at mirrored points.
    mirror = load_default_face_model(0).uv_mirror[:468]
    err = np.linalg.norm(lm[has] * np.array([-1.0, 1.0, 1.0]) - lm[mirror[has]], axis=1)
    assert err.mean() < 5e-4 and err.max() < 3e-3


@pytest.mark.skipif(not ICT_SOURCE.is_file(), reason="shared ICT-FaceKit data not present (../shared/data/face/ict-facekit)")
def test_build_script_reproduces_the_asset(tmp_path):
    from pnrelight.avatar.build_ict_face_model import main

    out = tmp_path / "ict_head.npz"
    assert main([str(ICT_SOURCE), "--out", str(out)]) == 0
    with np.load(out) as a, np.load(ICT_HEAD_PATH) as b:
        assert set(a.files) == set(b.files)
        for k in a.files:
            if a[k].dtype.kind in "fi":
                np.testing.assert_allclose(a[k].astype(np.float64), b[k].astype(np.float64), atol=1e-6, err_msg=k)
            else:
                assert (a[k] == b[k]).all(), k
