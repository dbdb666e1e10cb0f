"""Calibrate the ICT head's landmark embedding against the detector the fit reads.

The build script registers mediapipe's canonical face on ICT's neutral head geometrically
(``build_ict_face_model.register_mediapipe``). On photos of ICT heads, mediapipe puts several
landmarks elsewhere: projected from the true head and camera, the geometric embedding sits 5.4 px
from the detections on the mean (faces ~200 px tall; the nose tip ~4 px low, the inner eye corners
3-4 px apart), and the fit bends the identity to meet them. Here synthetic people
(``lightstage.subjects``, a seed no benchmark or test uses) are rendered at random head poses under
random shipped maps, mediapipe runs on each photo, every detected landmark is traced back onto the
true head's surface, and its surface location (triangle and barycentrics, i.e. a point of the
template) is pooled over the renders: the coordinate-wise median of the template points, pooled
with the mirrored points of its left/right twin, snapped back onto the face. That is where the
detector finds the landmark on a head. Landmarks without a geometric point (the face oval, the
irises) stay without one.

``python -m pnrelight.avatar.calibrate_landmarks [--renders 96] [--seed 31000]`` writes
``assets/face_model/ict_landmark_calibration.npz`` (atomically) and prints the before/after
reprojection error; ``load_ict_face_model`` uses it by default.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import InputError

CALIBRATION_SEED = 31000  # no benchmark or test draws subjects from this seed
DEFAULT_RENDERS = 96
RENDER_SIZE = 512
POSE_RANGE_DEG = (25.0, 10.0, 8.0)  # yaw, pitch, roll: uniform in +-range
MIN_HITS = 0.5  # a landmark is recalibrated when traced in at least this share of the renders


def pose_rotation(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """(3, 3) head rotation: roll about z, then pitch about x, then yaw about y (degrees)."""
    y, p, r = np.radians([yaw_deg, pitch_deg, roll_deg])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return ry @ rx @ rz


def render_case(params: dict, rotation: np.ndarray, env: np.ndarray, rotate_deg: float, size: int = RENDER_SIZE) -> dict:
    """A synthetic subject at ``rotation`` under ``env`` turned by ``rotate_deg``, as an sRGB photo on grey:
    {"image" (size, size, 3) float32, "vertices" (V, 3) posed, "pose", "K"}."""
    from ..lightstage.render import render_lights
    from ..lightstage.subjects import portrait_view
    from .color import linear_to_srgb
    from .pipeline import relight_exposure
    from .portrait_relight import environment_lights

    view = portrait_view(params, size, rotation=rotation)
    g = view["gbuf"]
    suns = environment_lights(env, rotate_deg)
    scale = relight_exposure(g, suns)
    suns = [dict(s, strength=np.asarray(s.get("strength", 1.0), dtype=np.float64) * scale) for s in suns]
    img = linear_to_srgb(np.clip(render_lights(g, suns, shadows=True, threads=2), 0.0, 1.0))
    image = np.where(g.mask[..., None], img, np.float32(0.35)).astype(np.float32)
    return {"image": image, "vertices": view["vertices"], "pose": view["pose"], "K": view["K"]}


def pixel_rays(points: np.ndarray, pose: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera origin (3,) and world ray directions (N, 3) through pixel positions ``points`` (N, 2)
    (continuous coordinates: pixel centres at integer + 0.5, as the renderer and mediapipe use)."""
    pix = np.concatenate([np.asarray(points, dtype=np.float64)[:, :2], np.ones((len(points), 1))], axis=1)
    cv = pix @ np.linalg.inv(K).T
    d_cam = np.stack([cv[:, 0], -cv[:, 1], -np.ones(len(cv))], axis=1)  # OpenGL camera frame
    return pose[:3, 3].copy(), d_cam @ pose[:3, :3].T


def trace_to_surface(points: np.ndarray, vertices: np.ndarray, triangles: np.ndarray, allowed: np.ndarray,
                     pose: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Surface location of each image point on the mesh: (triangle (N,) int64, -1 = ray missed; bary (N, 3)).

    A ray that hits a triangle outside ``allowed`` ((F,) bool: e.g. an eyeball under a lid
    landmark) is moved to the closest point of the allowed triangles."""
    from ..lightstage.render import _EmbreeScene
    from .build_ict_face_model import _closest_points_on_triangles

    origin, dirs = pixel_rays(points, pose, K)
    dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    prim, u, v = _EmbreeScene(vertices, triangles).intersect(np.broadcast_to(origin.astype(np.float32), dirs.shape), dirs)
    tri = prim.astype(np.int64)
    bary = np.stack([1.0 - u - v, u, v], axis=1).astype(np.float64)
    move = (tri >= 0) & ~allowed[np.maximum(tri, 0)]
    if move.any():
        hit = np.einsum("nk,nkc->nc", bary[move], vertices[triangles[tri[move]]].astype(np.float64))
        keep = np.flatnonzero(allowed)
        t, b, _ = _closest_points_on_triangles(hit, vertices.astype(np.float64), triangles[keep])
        tri[move], bary[move] = keep[t], b
    return tri, bary


def project(points: np.ndarray, pose: np.ndarray, K: np.ndarray) -> np.ndarray:
    """World points (N, 3) -> pixel positions (N, 2)."""
    w2c = np.linalg.inv(pose)
    pc = points @ w2c[:3, :3].T + w2c[:3, 3]
    cv = np.stack([pc[:, 0], -pc[:, 1], -pc[:, 2]], axis=1) @ K.T
    return cv[:, :2] / cv[:, 2:3]


def draw_cases(n: int, seed: int) -> list[dict]:
    """``n`` render settings: subject parameters, head pose (yaw, pitch, roll degrees), map name and its turn."""
    from ..envmap import ENVMAP_DIR
    from ..lightstage.subjects import generate_subjects

    maps = sorted(p.stem for p in ENVMAP_DIR.glob("*.exr"))
    out = []
    for i, params in enumerate(generate_subjects(n, seed=seed)):
        rng = np.random.default_rng([seed, i, 11])
        out.append({"params": params, "pose_deg": [float(rng.uniform(-r, r)) for r in POSE_RANGE_DEG],
                    "env": maps[int(rng.integers(len(maps)))], "rotate_deg": float(rng.uniform(-180, 180))})
    return out


def detect_and_trace(cases: list[dict], model, *, progress: bool = True) -> list[dict]:
    """Per case (renders where no face is found are skipped): {"detected" (478, 2), "tri" (478,), "bary" (478, 3),
    "vertices", "pose", "K"} -- each detected landmark traced onto the true head's face skin."""
    from ..envmap import ENVMAP_DIR, load_envmap
    from .landmarks import detect_faces

    face_tri = model.vertex_part[model.triangles[:, 0]] == model.part_names.index("face")
    envs, out = {}, []
    t0 = time.perf_counter()
    for k, case in enumerate(cases):
        if case["env"] not in envs:
            envs[case["env"]] = load_envmap(ENVMAP_DIR / f"{case['env']}.exr")
        r = render_case(case["params"], pose_rotation(*case["pose_deg"]), envs[case["env"]], case["rotate_deg"])
        faces = detect_faces(r["image"], max_faces=1)
        if faces:
            pts = faces[0].points[:, :2].astype(np.float64)
            tri, bary = trace_to_surface(pts, r["vertices"], model.triangles, face_tri, r["pose"], r["K"])
            out.append({"detected": pts, "tri": tri, "bary": bary, "vertices": r["vertices"], "pose": r["pose"], "K": r["K"]})
        if progress:
            print(f"\rcalibration renders {k + 1}/{len(cases)} ({time.perf_counter() - t0:.0f} s, {len(out)} with a face)",
                  end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    return out


def pool_embedding(traced: list[dict], model, mirror: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(landmark_faces (478,), landmark_bary (478, 3), hits (478,)): the calibrated embedding.

    Each landmark's traced template points and its mirror twin's (x negated) are pooled; the
    coordinate-wise median is snapped onto the face triangles. Landmarks without a geometric point,
    or traced in fewer than MIN_HITS of the renders, keep the geometric embedding."""
    from .build_ict_face_model import _closest_points_on_triangles

    tv = model.vertices.astype(np.float64)
    n = len(model.landmark_faces)
    pts = np.full((len(traced), n, 3), np.nan)
    for j, t in enumerate(traced):
        ok = t["tri"] >= 0
        pts[j, ok] = np.einsum("nk,nkc->nc", t["bary"][ok], tv[model.triangles[t["tri"][ok]]])
    hits = np.isfinite(pts[..., 0]).sum(0)
    twin = np.arange(n)
    twin[: len(mirror)] = mirror
    pooled = np.concatenate([pts, pts[:, twin] * np.array([-1.0, 1.0, 1.0])], axis=0)
    faces, bary = model.landmark_faces.copy(), model.landmark_bary.copy()
    use = (model.landmark_faces >= 0) & (np.minimum(hits, hits[twin]) >= MIN_HITS * len(traced))
    idx = np.flatnonzero(use)
    if len(idx):
        centre = np.nanmedian(pooled[:, idx], axis=0)
        face_tri = np.flatnonzero(model.vertex_part[model.triangles[:, 0]] == model.part_names.index("face"))
        t, b, _ = _closest_points_on_triangles(centre, tv, model.triangles[face_tri])
        faces[idx], bary[idx] = face_tri[t], b
    return faces.astype(np.int32), bary.astype(np.float32), hits


def reprojection_error_px(traced: list[dict], model, faces: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """(cases,) mean distance (px) between the detections and the embedding's points on each true head, projected."""
    from .face_model import landmark_points

    has = faces >= 0
    out = []
    for t in traced:
        p = project(landmark_points(t["vertices"], model.triangles, faces, bary)[has].astype(np.float64), t["pose"], t["K"])
        out.append(float(np.linalg.norm(p - t["detected"][has], axis=1).mean()))
    return np.array(out)


def calibrate(renders: int = DEFAULT_RENDERS, seed: int = CALIBRATION_SEED, *, progress: bool = True) -> dict:
    """Render, detect, trace and pool (see the module docstring). Returns the arrays to store and the facts."""
    from .face_model import landmark_points, load_default_face_model, load_ict_face_model

    model = load_ict_face_model(calibrated=False)
    mirror = load_default_face_model(0).uv_mirror[:468].astype(np.int64)
    traced = detect_and_trace(draw_cases(renders, seed), model, progress=progress)
    if len(traced) < max(4, renders // 2):
        raise InputError(f"the detector found a face in only {len(traced)} of {renders} calibration renders")
    faces, bary, hits = pool_embedding(traced, model, mirror)
    before = reprojection_error_px(traced, model, model.landmark_faces, model.landmark_bary)
    after = reprojection_error_px(traced, model, faces, bary)
    old = model.landmark_points()
    moved = np.linalg.norm(landmark_points(model.vertices, model.triangles, faces, bary) - old, axis=1) * 1000
    facts = {"seed": seed, "renders": renders, "with_face": len(traced), "size_px": RENDER_SIZE,
             "pose_range_deg": list(POSE_RANGE_DEG), "reprojection_px_before": round(float(before.mean()), 3),
             "reprojection_px_after": round(float(after.mean()), 3),
             "moved_mm_mean": round(float(np.nanmean(moved)), 3), "moved_mm_max": round(float(np.nanmax(moved)), 3)}
    arrays = {"landmark_faces": faces, "landmark_bary": bary, "hits": hits.astype(np.int32),
              "moved_mm": np.nan_to_num(moved, nan=0.0).astype(np.float32)}
    return {"arrays": arrays, "facts": facts}


def save_calibration(path: str | Path, arrays: dict, facts: dict) -> Path:
    """Write the calibration asset atomically (mode 0644), the facts as ``meta_facts`` JSON."""
    import json

    from .face_model import write_asset_npz

    return write_asset_npz(path, arrays, facts=json.dumps(facts, sort_keys=True))


def main(argv: list[str] | None = None) -> int:
    from .face_model import ICT_LANDMARK_CALIBRATION_PATH

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--renders", type=int, default=DEFAULT_RENDERS)
    ap.add_argument("--seed", type=int, default=CALIBRATION_SEED)
    ap.add_argument("--out", type=Path, default=ICT_LANDMARK_CALIBRATION_PATH)
    args = ap.parse_args(argv)
    if args.renders < 4 or args.seed < 0:
        print(f"error: --renders {args.renders} --seed {args.seed}: give at least 4 renders and a seed >= 0", file=sys.stderr)
        return 2
    try:
        t0 = time.perf_counter()
        result = calibrate(args.renders, args.seed)
        save_calibration(args.out, result["arrays"], dict(result["facts"], seconds=round(time.perf_counter() - t0, 1)))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    f = result["facts"]
    print(f"{args.out}: {f['with_face']} of {f['renders']} renders; detections vs embedding on the true heads "
          f"{f['reprojection_px_before']:.2f} px -> {f['reprojection_px_after']:.2f} px; landmarks moved "
          f"{f['moved_mm_mean']:.2f} mm on the mean, {f['moved_mm_max']:.2f} mm at most")
    return 0


if __name__ == "__main__":
    sys.exit(main())
