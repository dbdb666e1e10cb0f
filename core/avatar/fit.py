"""Fit a face model to 2D landmarks: camera focal length, head pose, shape/expression (torch).

Model (OpenGL camera frame, see :mod:`pnrelight.avatar.camera`)::

    X_cam = R(omega) @ (template + shape_basis @ beta + expression_basis @ psi) + t
    (u, v) = (cx + f X / -Z, cy - f Y / -Z)

Unknowns: log focal length (prior: ``default_focal_px`` = 1.2 max(H, W)), the
rotation vector ``omega``, the translation (parametrised by the projected head
centre in pixels and log depth, which keeps the problem well scaled), and the
coefficients ``beta``/``psi`` when the model has bases (L2 priors). The energy
is a robust (Charbonnier) landmark reprojection error in units of the face size,
minimised with Adam (``iterations`` steps, learning rate decayed) after an
OpenCV ``solvePnP`` initialisation of the pose. Deterministic: ``torch.manual_seed(seed)``
and single-threaded float64 maths.

The default model (mediapipe topology, no bases) cannot change shape, so
:func:`fit_face` can also refine it per vertex from mediapipe's own 3D landmarks
(``refine=True``, the default when the landmarks carry depth): landmark i lies
on vertex i, so each base vertex is moved onto the camera ray through its
landmark pixel, at a depth equal to mediapipe's relative depth mapped to the
fitted mesh's depth by a least-squares scale and offset (mediapipe's depth
unit is only "about the scale of x"), blended with the fitted template depth
(``depth_weight``). The refined base mesh is then subdivided exactly like the
model, so all levels stay consistent and the UV layout is unchanged. The 2D
landmark residual after refinement is ~0 by construction; ``landmark_residual_px``
reports the residual of the model fit before refinement.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .camera import default_focal_px, default_principal_point, project
from .face_model import FaceModel, subdivide


@dataclass
class FaceFit:
    """A fitted face in the camera frame.

    vertices : (V, 3) float32 camera-frame vertices (metres).
    focal_px : float; principal_point : (2,) pixels (cx, cy).
    rotation : (3, 3) model-to-camera rotation; translation : (3,) metres.
    shape : (S,) and expression : (E,) coefficients (empty without bases).
    landmark_residual_px : mean 2D distance between fitted model landmarks and detected ones.
    seed : the torch seed used.
    refined : whether the per-vertex landmark refinement was applied.
    residuals_px : (L,) per-landmark residuals of the model fit (NaN where unused).
    """

    vertices: np.ndarray
    focal_px: float
    principal_point: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    shape: np.ndarray
    expression: np.ndarray
    landmark_residual_px: float
    seed: int
    refined: bool = False
    residuals_px: np.ndarray | None = None
    iterations: int = 0
    extras: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """JSON-ready summary (for avatar.json)."""
        return dict(focal_px=float(self.focal_px), principal_point=[float(x) for x in self.principal_point],
                    rotation=np.asarray(self.rotation, float).round(8).tolist(),
                    translation=[float(x) for x in self.translation], shape=[float(x) for x in self.shape],
                    expression=[float(x) for x in self.expression],
                    landmark_residual_px=float(self.landmark_residual_px), seed=int(self.seed),
                    refined=bool(self.refined), iterations=int(self.iterations))


def _landmark_targets(model: FaceModel, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of landmarks usable for the fit (model point exists, detection finite) and their (n, 2) pixels."""
    pts = np.asarray(points, dtype=np.float64)
    ok = model.landmark_mask & np.all(np.isfinite(pts[:, :2]), axis=1)
    idx = np.flatnonzero(ok)
    return idx, pts[idx, :2]


def _basis_at_landmarks(model: FaceModel, basis: np.ndarray | None, idx: np.ndarray) -> np.ndarray | None:
    """(n, 3, K) basis evaluated at the landmark surface points."""
    if basis is None:
        return None
    tri = model.triangles[model.landmark_faces[idx]]  # (n, 3)
    return np.einsum("nk,nkcs->ncs", model.landmark_bary[idx].astype(np.float64), basis[tri].astype(np.float64))


def _init_pose(model_pts: np.ndarray, image_pts: np.ndarray, focal: float, pp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation vector and translation (OpenGL frame) from OpenCV's solvePnP; frontal guess if it fails."""
    import cv2

    from .camera import intrinsics_matrix, matrix_to_axis_angle

    K = intrinsics_matrix(focal, pp)
    # OpenCV pixel indices are centred on integers; ours on +0.5.
    ok, rvec, tvec = cv2.solvePnP(model_pts.astype(np.float64), (image_pts - 0.5).astype(np.float64), K, None,
                                  flags=cv2.SOLVEPNP_EPNP)
    if ok:
        ok, rvec, tvec = cv2.solvePnP(model_pts.astype(np.float64), (image_pts - 0.5).astype(np.float64), K, None,
                                      rvec, tvec, useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
    flip = np.diag([1.0, -1.0, -1.0])
    if ok:
        R = flip @ cv2.Rodrigues(rvec)[0]
        t = flip @ tvec.reshape(3)
        if t[2] < 0:  # in front of the camera
            return matrix_to_axis_angle(R), t
    size = np.ptp(image_pts, axis=0).max()
    depth = focal * np.ptp(model_pts, axis=0)[:2].max() / max(size, 1.0)
    c = image_pts.mean(0)
    t = np.array([(c[0] - pp[0]) * depth / focal, -(c[1] - pp[1]) * depth / focal, -depth])
    return np.zeros(3), t


def fit_face(model: FaceModel, points: np.ndarray, image_size: tuple[int, int], *, iterations: int = 300,
             seed: int = 0, focal_prior_weight: float = 1.0, shape_prior_weight: float = 1e-3,
             expression_prior_weight: float = 1e-3, fit_focal: bool = True, refine: bool | None = None,
             depth_weight: float = 0.7) -> FaceFit:
    """Fit ``model`` to detected landmarks.

    Parameters
    ----------
    model : FaceModel (default mediapipe-topology model or FLAME).
    points : (478, 2|3) landmark pixels (u, v[, relative depth in pixels, larger = closer]); NaN rows ignored.
    image_size : (H, W).
    iterations : Adam steps.
    focal_prior_weight : weight of (log f - log f0)^2, f0 = 1.2 max(H, W).
    shape_prior_weight, expression_prior_weight : weights of the squared coefficient norms
        (coefficients are in units of the basis, e.g. FLAME's standard deviations).
    refine : per-vertex refinement of the basis-free default model from mediapipe's 3D landmarks
        (None: when the model has no bases, the landmarks have depth and vertex i = landmark i).
    depth_weight : in the refinement, weight of mediapipe's depth against the fitted template depth.

    Returns
    -------
    FaceFit
    """
    import torch

    torch.manual_seed(seed)
    h, w = image_size
    pts = np.asarray(points, dtype=np.float64)
    idx, target = _landmark_targets(model, pts)
    if len(idx) < 6:
        raise ValueError(f"only {len(idx)} usable landmarks; at least 6 are needed to fit a face")
    pp = default_principal_point(h, w).astype(np.float64)
    f0 = default_focal_px(h, w)
    lm_template = model.landmark_points()[idx].astype(np.float64)
    rvec0, t0 = _init_pose(lm_template, target, f0, pp)

    dt = torch.float64
    T = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=dt)  # noqa: E731
    tmpl = T(lm_template)
    sb = _basis_at_landmarks(model, model.shape_basis, idx)
    eb = _basis_at_landmarks(model, model.expression_basis, idx)
    target_t = T(target)
    face_size = float(max(np.ptp(target[:, 0]), np.ptp(target[:, 1]), 1.0))

    depth0 = -t0[2]
    centre0 = np.array([pp[0] + f0 * t0[0] / depth0, pp[1] - f0 * t0[1] / depth0])
    params = {
        "log_f": torch.zeros((), dtype=dt, requires_grad=fit_focal),
        "rot": T(rvec0).clone().requires_grad_(True),
        "centre": T(centre0).clone().requires_grad_(True),
        "log_depth": T(np.log(depth0)).clone().requires_grad_(True),
        "shape": torch.zeros(0 if sb is None else sb.shape[2], dtype=dt, requires_grad=True),
        "expr": torch.zeros(0 if eb is None else eb.shape[2], dtype=dt, requires_grad=True),
    }
    sb_t = None if sb is None else T(sb)
    eb_t = None if eb is None else T(eb)

    def rodrigues(r):
        theta = torch.sqrt((r * r).sum() + 1e-24)
        k = r / theta
        zero = torch.zeros((), dtype=dt)
        K = torch.stack([torch.stack([zero, -k[2], k[1]]), torch.stack([k[2], zero, -k[0]]),
                         torch.stack([-k[1], k[0], zero])])
        return torch.eye(3, dtype=dt) + torch.sin(theta) * K + (1 - torch.cos(theta)) * (K @ K)

    lo, hi = model.expression_range or (-np.inf, np.inf)

    def bounded(e):
        # Blendshape weights live in [lo, hi]; the clamp keeps the L-BFGS polish inside too.
        return e if not np.isfinite([lo, hi]).any() else torch.clamp(e, lo, hi)

    def forward(p):
        x = tmpl
        if sb_t is not None and len(p["shape"]):
            x = x + sb_t @ p["shape"]
        if eb_t is not None and len(p["expr"]):
            x = x + eb_t @ bounded(p["expr"])
        f = f0 * torch.exp(p["log_f"])
        depth = torch.exp(p["log_depth"])
        t = torch.stack([(p["centre"][0] - pp[0]) * depth / f, -(p["centre"][1] - pp[1]) * depth / f, -depth])
        R = rodrigues(p["rot"])
        xc = x @ R.T + t
        z = torch.clamp(-xc[:, 2], min=1e-6)
        uv = torch.stack([pp[0] + f * xc[:, 0] / z, pp[1] - f * xc[:, 1] / z], dim=1)
        return uv, f, R, t

    def energy(p):
        uv, f, _, _ = forward(p)
        e = (uv - target_t) / face_size
        data = torch.sqrt((e * e).sum(1) + 1e-6).mean()
        reg = focal_prior_weight * 1e-2 * p["log_f"] ** 2
        reg = reg + shape_prior_weight * (p["shape"] ** 2).sum() + expression_prior_weight * (p["expr"] ** 2).sum()
        return data + reg

    trainable = [v for v in params.values() if v.requires_grad and v.numel()]
    opt = torch.optim.Adam([
        {"params": [params["rot"]], "lr": 0.01},
        {"params": [params["centre"]], "lr": 0.5},
        {"params": [params["log_depth"]] + ([params["log_f"]] if fit_focal else []), "lr": 0.01},
        {"params": [params["shape"], params["expr"]], "lr": 0.05},
    ])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(iterations, 1), eta_min=1e-4)
    from .intrinsics import _torch_threads

    # A few hundred tiny steps: threads only add synchronisation (the fit took 17 CPU-s on a busy box).
    with torch.enable_grad(), _torch_threads(1):
        for _ in range(iterations):
            opt.zero_grad()
            loss = energy(params)
            loss.backward()
            opt.step()
            sched.step()
            if model.expression_range is not None:
                with torch.no_grad():
                    params["expr"].clamp_(lo, hi)
        # Polish with L-BFGS (a few closures): the problem is small and smooth near the optimum.
        lbfgs = torch.optim.LBFGS(trainable, lr=0.5, max_iter=50, line_search_fn="strong_wolfe")

        def closure():
            lbfgs.zero_grad()
            loss = energy(params)
            loss.backward()
            return loss

        lbfgs.step(closure)
    with torch.no_grad():
        uv, f, R, t = forward(params)
    res = np.full(len(pts), np.nan)
    res[idx] = np.linalg.norm(uv.numpy() - target, axis=1)
    shape = params["shape"].detach().numpy().copy()
    expr = bounded(params["expr"]).detach().numpy().copy()
    R = R.numpy()
    t = t.numpy()
    focal = float(f)
    verts_model = model.shaped_vertices(shape, expr).astype(np.float64)
    verts_cam = verts_model @ R.T + t
    fit = FaceFit(vertices=verts_cam.astype(np.float32), focal_px=focal, principal_point=pp.astype(np.float32),
                  rotation=R, translation=t, shape=shape, expression=expr,
                  landmark_residual_px=float(np.nanmean(res)), seed=seed, residuals_px=res, iterations=iterations)
    if refine is None:
        refine = (model.num_shape == 0 and model.num_expression == 0 and pts.shape[1] >= 3
                  and _is_vertex_embedding(model) and np.isfinite(pts[:468, 2]).all())
    if refine:
        fit = refine_with_landmark_depth(model, fit, pts, depth_weight=depth_weight)
    return fit


def _is_vertex_embedding(model: FaceModel) -> bool:
    """True when mediapipe landmark i (i < 468) sits exactly on vertex i (the default model, any level)."""
    if len(model.vertices) < 468 or (model.landmark_faces[:468] < 0).any():
        return False
    tri = model.triangles[model.landmark_faces[:468]]
    corner = np.argmax(model.landmark_bary[:468], axis=1)
    return bool(np.all(tri[np.arange(468), corner] == np.arange(468))
                and np.allclose(model.landmark_bary[:468].max(1), 1.0))


def refine_with_landmark_depth(model: FaceModel, fit: FaceFit, points: np.ndarray, *, depth_weight: float = 0.7) -> FaceFit:
    """Move the 468 base vertices of the default model onto their landmarks (see the module docstring).

    ``points`` (478, 3): pixel u, v and mediapipe relative depth in pixels (larger = closer).
    """
    pts = np.asarray(points, dtype=np.float64)[:468]
    base = model.extras.get("base_model")
    levels = int(model.extras.get("subdivision_levels", 0))
    smooth = float(model.extras.get("subdivision_smooth", 0.75))
    if base is None:
        base, levels = model, 0
    cam = fit.vertices[:468].astype(np.float64)
    z_fit = cam[:, 2]
    # mediapipe depth (pixels, larger = closer) -> camera z (metres): least-squares scale and offset.
    d = pts[:, 2]
    A = np.stack([d, np.ones_like(d)], 1)
    scale, offset = np.linalg.lstsq(A, z_fit, rcond=None)[0]
    if not np.isfinite(scale) or scale <= 0:
        z_new = z_fit
    else:
        z_new = depth_weight * (scale * d + offset) + (1.0 - depth_weight) * z_fit
    f = fit.focal_px
    cx, cy = fit.principal_point
    depth = -z_new
    refined = np.stack([(pts[:, 0] - cx) * depth / f, -(pts[:, 1] - cy) * depth / f, z_new], 1)
    # Back into the model frame, subdivide like the model, back to the camera.
    R, t = fit.rotation, fit.translation
    base_model_frame = (refined - t) @ R
    refined_model = subdivide(replace(base, vertices=base_model_frame.astype(np.float32)), levels, smooth=smooth)
    verts = refined_model.vertices.astype(np.float64) @ R.T + t
    res_after = np.linalg.norm(project(verts[:468], f, fit.principal_point) - pts[:, :2], axis=1)
    extras = dict(fit.extras, depth_scale_m_per_px=float(scale), residual_after_refine_px=float(res_after.mean()))
    return replace(fit, vertices=verts.astype(np.float32), refined=True, extras=extras)


def landmark_residual_px(fit: FaceFit, model: FaceModel, points: np.ndarray) -> float:
    """Mean 2D distance between the fitted mesh's landmark points and ``points`` (finite, modelled ones)."""
    idx, target = _landmark_targets(model, points)
    lm = model.landmark_points(fit.vertices)[idx]
    return float(np.linalg.norm(project(lm, fit.focal_px, fit.principal_point) - target, axis=1).mean())

