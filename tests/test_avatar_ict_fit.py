"""The landmark fit on a synthetic ICT-FaceKit head: known identity, expression, pose and camera.

The ground-truth landmark points of a random head (identity ~ N(0, 1) on all 50 components, a
jawOpen, a smile and raised inner brows -- expressions that move landmarks; eyeBlink barely moves
the model's eye landmarks) are posed, projected with a pinhole camera and fitted. A monocular fit
is only defined up to a similarity (depth against scale, and focal length), so vertex errors are
measured after aligning the fitted landmark points onto the true ones (Umeyama, with scale).

Measured on this head (seed 7) and, in brackets, the worst of seeds 0-9 (same expression and pose):

* priors 1e-5 (exact landmarks: the priors only break ties): residual 0.10 px (0.17), face-part
  vertex error 0.61 mm (1.19), identity correlation 0.94 (0.91), jawOpen 0.52, smiles 0.34/0.37,
  browInnerUp 0.27/0.27 (all within 0.06 of the truth on every seed).
* default priors (1e-3, tuned for detector noise): residual 0.73 px (1.24), face error 2.28 mm
  (4.54), against 7.27 mm (min 4.74) for the mean head; the shape prior keeps ~1 px of residual
  even on perfect landmarks and lets the identity absorb part of the expression (browInnerUp
  0.15, smiles 0.22/0.28, jawOpen 0.61).

Identity from 2D landmarks is only weakly determined (many identities project alike): what is
asserted is the geometry it yields (face error far below the mean head's), not the coefficients
one by one.
"""
from __future__ import annotations

import numpy as np
import pytest

from pnrelight.avatar.align import apply_similarity, point_to_mesh_distance, similarity_alignment
from pnrelight.avatar.camera import axis_angle_to_matrix, project
from pnrelight.avatar.face_model import load_ict_face_model
from pnrelight.avatar.fit import fit_face

SIZE = 512
FOCAL_PX = 700.0  # a 49 mm (35 mm-equivalent) lens at 512 pixels
TRUE_EXPRESSION = {"jawOpen": 0.5, "mouthSmile_L": 0.4, "mouthSmile_R": 0.4, "browInnerUp_L": 0.3, "browInnerUp_R": 0.3}


@pytest.fixture(scope="module")
def head():
    """The ICT model, a random posed head (camera frame) and its projected landmarks."""
    model = load_ict_face_model()
    rng = np.random.default_rng(7)
    shape = rng.standard_normal(model.num_shape)
    expr = np.zeros(model.num_expression)
    for name, w in TRUE_EXPRESSION.items():
        expr[model.expression_names.index(name)] = w
    # yaw 15, pitch -5, roll 3 degrees; the landmarks' centre 0.6 m in front of the camera.
    R = (axis_angle_to_matrix([0, np.radians(15), 0]) @ axis_angle_to_matrix([np.radians(-5), 0, 0])
         @ axis_angle_to_matrix([0, 0, np.radians(3)]))
    verts = model.shaped_vertices(shape, expr).astype(np.float64)
    centre = np.nanmean(model.landmark_points(verts), axis=0)
    verts_cam = verts @ R.T + (np.array([0.01, -0.01, -0.6]) - R @ centre)
    landmarks = model.landmark_points(verts_cam)
    pixels = project(landmarks, FOCAL_PX, (SIZE / 2, SIZE / 2))  # NaN rows (irises) are ignored by the fit
    return dict(model=model, shape=shape, vertices=verts_cam, landmarks=landmarks, pixels=pixels)


def _face_error_mm(model, vertices, head) -> float:
    """Mean face-part vertex distance (mm) after aligning ``vertices``' landmark points onto the true ones."""
    tf = similarity_alignment(model.landmark_points(vertices), head["landmarks"])
    err = np.linalg.norm(apply_similarity(vertices, tf) - head["vertices"], axis=1) * 1e3
    return float(err[model.vertex_part == model.part_names.index("face")].mean())


def _weight(model, fit, name) -> float:
    return float(fit.expression[model.expression_names.index(name)])


def test_fit_on_exact_landmarks_recovers_geometry_and_expression(head):
    model = head["model"]
    fit = fit_face(model, head["pixels"], (SIZE, SIZE), seed=0, shape_prior_weight=1e-5, expression_prior_weight=1e-5)
    assert fit.landmark_residual_px < 0.5  # measured 0.10
    err = _face_error_mm(model, fit.vertices.astype(np.float64), head)
    mean_head = _face_error_mm(model, model.vertices.astype(np.float64), head)
    assert err < 2.0  # mm; measured 0.61 (worst of seeds 0-9: 1.19)
    assert err < mean_head / 4  # 7.27 mm for the mean head
    for name, truth in TRUE_EXPRESSION.items():
        assert abs(_weight(model, fit, name) - truth) < 0.15, name
    assert np.corrcoef(head["shape"], fit.shape)[0, 1] > 0.65  # measured 0.78 (0.94 before the face oval was left out)


def test_fit_with_default_priors_beats_the_mean_head(head):
    model = head["model"]
    fit = fit_face(model, head["pixels"], (SIZE, SIZE), seed=0)
    assert fit.landmark_residual_px < 1.5  # measured 0.73 (worst of seeds 0-9: 1.24): the shape prior's pull
    err = _face_error_mm(model, fit.vertices.astype(np.float64), head)
    mean_head = _face_error_mm(model, model.vertices.astype(np.float64), head)
    assert err < 4.6  # mm; measured 2.28
    assert err < 0.6 * mean_head  # 2.28 against 7.27 mm
    # The strongest true weight is the strongest fitted one and is recovered.
    assert int(np.argmax(fit.expression)) == model.expression_names.index("jawOpen")
    assert abs(_weight(model, fit, "jawOpen") - 0.5) < 0.15  # measured 0.61


def test_similarity_alignment_and_point_to_mesh_distance():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(40, 3))
    R = axis_angle_to_matrix([0.3, -0.2, 0.5])
    dst = 1.7 * src @ R.T + [0.1, -0.2, 0.3]
    s, R2, t = similarity_alignment(src, dst)
    assert s == pytest.approx(1.7) and np.allclose(R2, R) and np.allclose(apply_similarity(src, (s, R2, t)), dst)
    # A unit square (two triangles) in z = 0: distances to points above, beside and at a corner.
    verts = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float)
    tris = np.array([[0, 1, 2], [0, 2, 3]])
    pts = np.array([[0.5, 0.5, 0.3], [2.0, 0.5, 0.0], [-1.0, -1.0, 1.0], [0.25, 0.75, -0.2]])
    d = point_to_mesh_distance(pts, verts, tris)
    assert np.allclose(d, [0.3, 1.0, np.sqrt(3.0), 0.2])
