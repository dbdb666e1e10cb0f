"""The ICT head's detector-calibrated landmark embedding (``pnrelight.avatar.calibrate_landmarks``)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pnrelight.avatar import calibrate_landmarks as cl
from pnrelight.avatar.face_model import (ICT_LANDMARK_CALIBRATION_PATH, load_default_face_model, load_ict_face_model,
                                         load_landmark_calibration)
from pnrelight.errors import InputError

HELD_OUT_SEED = 4711  # neither the calibration's seed nor any benchmark's


@pytest.fixture(scope="module")
def heads():
    return load_ict_face_model(calibrated=False), load_ict_face_model()


@pytest.fixture(scope="module")
def held_out(heads):
    """Four renders the calibration never saw (other people, poses and maps), detected and traced."""
    return cl.detect_and_trace(cl.draw_cases(4, HELD_OUT_SEED), heads[0], progress=False)


def test_shipped_calibration_is_used_and_keeps_the_head_symmetric(heads):
    geometric, calibrated = heads
    assert ICT_LANDMARK_CALIBRATION_PATH.is_file()
    same_points = geometric.landmark_faces >= 0
    assert ((calibrated.landmark_faces >= 0) == same_points).all()  # oval and irises stay without a point
    face = calibrated.part_names.index("face")
    assert (calibrated.vertex_part[calibrated.triangles[calibrated.landmark_faces[same_points]]] == face).all()
    moved = np.linalg.norm(calibrated.landmark_points() - geometric.landmark_points(), axis=1)[same_points] * 1000
    # Most move a few mm; the cheek points beside the oval ~2.5 cm (the detector puts them on the outline).
    assert 0.5 < moved.mean() < 8.0 and moved.max() < 35.0, (moved.mean(), moved.max())
    # Pooled with the mirror twins: mirrored landmarks sit at mirrored points (the template is symmetric to ~0.5 mm).
    mirror = load_default_face_model(0).uv_mirror[:468]
    lm = calibrated.landmark_points()
    has = np.flatnonzero(same_points[:468])
    err = np.linalg.norm(lm[has] * np.array([-1.0, 1.0, 1.0]) - lm[mirror[has]], axis=1) * 1000
    assert err.mean() < 1.0 and err.max() < 4.0, (err.mean(), err.max())
    facts = json.loads(str(np.load(ICT_LANDMARK_CALIBRATION_PATH)["meta_facts"]))
    assert facts["seed"] == cl.CALIBRATION_SEED and facts["with_face"] >= 0.9 * facts["renders"]


def test_calibrated_embedding_is_where_the_detector_finds_landmarks_on_unseen_heads(heads, held_out):
    geometric, calibrated = heads
    assert len(held_out) == 4
    before = cl.reprojection_error_px(held_out, geometric, geometric.landmark_faces, geometric.landmark_bary)
    after = cl.reprojection_error_px(held_out, geometric, calibrated.landmark_faces, calibrated.landmark_bary)
    # Faces ~300 px tall at 512 px: the geometric embedding sits ~7 px from the detections on the true heads.
    assert (after < 0.7 * before).all(), (before, after)


def test_calibration_pipeline_reproduces_the_shipped_embedding_from_a_few_renders(heads):
    geometric, calibrated = heads
    result = cl.calibrate(renders=6, progress=False)  # the shipped calibration's first 6 renders (of 96)
    from pnrelight.avatar.face_model import landmark_points

    a = result["arrays"]
    few = landmark_points(geometric.vertices, geometric.triangles, a["landmark_faces"], a["landmark_bary"])
    has = geometric.landmark_faces >= 0
    d = np.linalg.norm(few - calibrated.landmark_points(), axis=1)[has] * 1000
    moved = np.linalg.norm(calibrated.landmark_points() - geometric.landmark_points(), axis=1)[has] * 1000
    assert np.median(d) < 0.5 * np.median(moved), (np.median(d), np.median(moved))
    assert result["facts"]["reprojection_px_after"] < 0.7 * result["facts"]["reprojection_px_before"]


def test_broken_calibration_file_is_one_clear_error(tmp_path, heads):
    bad = tmp_path / "cal.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="cannot read landmark calibration"):
        load_landmark_calibration(bad, len(heads[0].triangles))
    np.savez(bad, landmark_faces=np.full(478, 10**7, np.int32), landmark_bary=np.zeros((478, 3), np.float32))
    with pytest.raises(InputError, match="does not fit this head"):
        load_landmark_calibration(bad, len(heads[0].triangles))
