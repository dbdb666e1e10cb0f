"""Avatar fit quality on synthetic ICT-FaceKit heads: geometry, coefficients, normals and albedo the fit never saw.

Subjects (``--subjects`` N, seeds ``--seed`` + i, all recorded): ICT-FaceKit heads with random
identity coefficients (all 50 components ~ N(0, 1)), a sparse random expression (two to four
blendshape groups such as smiles, a small jawOpen, light blinks, brows, with weights up to ~0.6),
a random head pose (yaw +-25, pitch +-10, roll +-5 degrees), at 0.5-0.7 m from a pinhole camera
with a 40-60 mm (35 mm-equivalent) focal length, 512 x 512 pixels (plus ``--hires`` subjects at
1024 x 1024).

Known albedo: one face albedo in the ICT UV atlas, built once by running ``reconstruct`` on
skimage's astronaut with the ICT head and taking its albedo texture; skin texels the photo did not
see well (confidence < 0.45) fade into the face's median skin colour; lips and eyelids are plain
(the astronaut smiles with his teeth: his teeth and eye whites would land on the mesh's lips and
eyelids); teeth, gums, mouth and eyes get plain colours, with the iris and pupil painted on the
sclera (ICT's sclera mesh is the whole eyeball and covers its iris mesh). Each subject gets its own skin tone (a gain of 0.45-1.3 and a small
red/yellow shift). Known normals: the ground-truth mesh's interpolated vertex normals. Known
lighting: order-2 SH projected from one of the shipped environment maps (a different map and a
random rotation about the vertical axis per subject), scaled so the face is bright but unclipped.
Background: a neutral gradient or a blurred photo (every other subject). Rendered in sRGB with the
project's rasterizer (2x supersampled), as ``avatar_quality.render_ground_truth`` does.

Each render goes through ``pipeline.reconstruct`` twice: with the ICT head (the default) and with
the "mediapipe" face mesh. Measured per subject:

* landmark residual (px): the fit's own (fitted model landmarks vs detected ones) and the
  detector's error (detected vs ground-truth landmark projections).
* geometry (mm), after a similarity alignment (Umeyama: rotation, translation, scale) of the fitted
  landmark points onto the ground-truth ones, because a monocular fit is only defined up to the
  depth/scale ambiguity. ICT (same topology as the ground truth): mean per-vertex distance on the
  face part and on the whole head (all parts); both models: mean closest-point distance from the
  ground-truth face-part vertices inside the landmark region (frontal, inside the landmarks'
  model-frame x-y hull) to the fitted mesh's face surface. The closest-point measure ignores
  sliding along the surface, so it is smaller than a per-vertex error and is the only one the
  mediapipe mesh (different topology) allows. Baseline: the mean ICT head aligned the same way.
* ICT coefficients: identity correlation / RMS error (all 50, and the first 10), expression RMS
  error over the 53 weights and mean absolute error over the ground truth's active ones.
* references: the ICT landmark fit (``fit.fit_face``, default settings) on the true landmark
  projections -- the fit without the detector's error -- and the mean ICT head aligned alike.
* normals (PN-Relighting Table 3 format) and albedo (Table 2 format: SSIM, PSNR, RMSE in sRGB after
  a per-channel gain) inside ground-truth face-part mask & the pipeline's face mask & the convex
  hull of the ground-truth landmark projections (``pipeline.landmark_hull_mask``); each model has
  its own face mask, so pixel counts differ a little.

Run: ``.venv/bin/python benchmarks/avatar_synthetic_heads.py [--subjects 6] [--hires 1]``; prints the
tables, writes ``benchmarks/results/avatar_synthetic_heads.json``, the tables into
``docs/avatar_synthetic_heads.md`` (between its "generated" markers; the text around them is kept)
and the contact sheet ``docs/images/avatar_synthetic_heads.png``.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from bench_common import write_generated_section, write_result  # noqa: E402 - benchmarks/ is on sys.path when run as a script

import numpy as np

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from avatar_quality import albedo_table_row, angular_error_deg, normal_table_row  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
MODELS = ("ict", "mediapipe")

# Blendshape groups a random expression draws from: (names, largest weight). Bilateral pairs move
# together (with a little asymmetry); jawOpen stays small and blinks light, so the eyes stay open
# enough for the landmark detector and the mouth shows only a little of its inside.
EXPRESSION_GROUPS = (
    (("mouthSmile_L", "mouthSmile_R"), 0.6),
    (("jawOpen",), 0.3),
    (("eyeBlink_L", "eyeBlink_R"), 0.35),
    (("browInnerUp_L", "browInnerUp_R"), 0.6),
    (("browDown_L", "browDown_R"), 0.5),
    (("mouthFrown_L", "mouthFrown_R"), 0.5),
    (("mouthPucker",), 0.5),
    (("cheekSquint_L", "cheekSquint_R"), 0.5),
    (("eyeWide_L", "eyeWide_R"), 0.5),
    (("noseSneer_L", "noseSneer_R"), 0.4),
    (("mouthStretch_L", "mouthStretch_R"), 0.4),
)
# Linear albedo of the parts a photo of a face does not texture.
PART_COLOURS = {"sclera": (0.55, 0.52, 0.48), "eye_socket": (0.02, 0.01, 0.01), "mouth_socket": (0.12, 0.03, 0.03),
                "gums_tongue": (0.40, 0.10, 0.10), "teeth": (0.55, 0.50, 0.40)}
IRIS_COLOURS = ((0.06, 0.03, 0.015), (0.10, 0.06, 0.03), (0.05, 0.08, 0.12), (0.06, 0.09, 0.05))
SKIN_PARTS = ("face", "head")
CONFIDENT = (0.2, 0.45)  # albedo-texture confidence ramp: below, median skin colour; above, the astronaut
BACKGROUND_PHOTOS = ("coffee", "rocket")
SUPERSAMPLE = 2


# ----------------------------------------------------------------------------- ground truth
def texel_raster(model, size: int):
    """UV raster of the atlas and the (size, size) int part label of each texel (-1 outside every island)."""
    from pnrelight.avatar.raster import rasterize_uv

    r = rasterize_uv(model.uvs, model.triangles, size)
    part = np.full(r.face_id.shape, -1, dtype=np.int16)
    part[r.mask] = model.vertex_part[model.triangles[r.face_id[r.mask], 0]]
    return r, part


def build_albedo_atlas(model, texture_size: int = 1024, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Face albedo (T, T, 3) linear in the ICT atlas from skimage's astronaut, unseen skin filled.

    Skin texels (face and head parts) keep the astronaut's estimated albedo where the photo saw them
    well and fade into the median skin colour where it did not (confidence ramp ``CONFIDENT``); lips
    and eyelids are plain (see :func:`feature_regions`); the other parts get ``PART_COLOURS``.
    Returns the atlas and a dict: texel part labels ``part`` (T, T), soft iris and pupil masks
    ``iris``/``pupil`` (T, T) on the sclera (the iris colour is the subject's, see
    :func:`subject_albedo`), the median skin colour and the astronaut fit's residual.
    """
    from skimage import data

    from pnrelight.avatar.pipeline import reconstruct

    rec = reconstruct(data.astronaut(), face_model_path="ict", texture_size=texture_size, seed=seed)
    tex = rec.textures
    uv_raster, part = texel_raster(model, texture_size)
    names = model.part_names
    skin = np.isin(part, [names.index(p) for p in SKIN_PARTS])
    conf = tex["confidence"]
    face = part == names.index("face")
    # The median over well-seen face texels is skin: hair, brows and lips are a minority there.
    median_skin = np.median(tex["albedo"][face & (conf > 0.5)], axis=0)
    w = np.clip((conf - CONFIDENT[0]) / (CONFIDENT[1] - CONFIDENT[0]), 0.0, 1.0)[..., None]
    atlas = np.tile(median_skin.astype(np.float32), (texture_size, texture_size, 1))
    atlas = np.where(skin[..., None], w * tex["albedo"] + (1 - w) * median_skin, atlas)
    # The astronaut smiles with his teeth and has his eyes wide open: his teeth and eye whites land on
    # the mesh's lips and eyelids. Plain lips and eyelids instead, so the renders show the mesh's own
    # mouth and eye openings (what the landmarks should find).
    for region, colour in feature_regions(model, texture_size, median_skin):
        atlas = region * colour + (1 - region) * atlas
    for name, colour in PART_COLOURS.items():
        atlas[part == names.index(name)] = colour
    atlas = np.clip(atlas, 0.02, 0.9).astype(np.float32)
    iris, pupil = iris_masks(model, uv_raster, part)
    return atlas, {"part": part, "iris": iris, "pupil": pupil, "median_skin": median_skin.astype(float).round(4).tolist(),
                   "fit_residual_px": float(rec.fit.landmark_residual_px)}


def iris_masks(model, uv_raster, part: np.ndarray, iris_mm: float = 5.8, pupil_mm: float = 1.9) -> tuple[np.ndarray, np.ndarray]:
    """Soft (T, T) masks of the iris and the pupil on the sclera texels.

    ICT-FaceKit's sclera mesh is the whole eyeball, cornea included, and covers its iris mesh, so an
    opaque render shows the eye's colour only if it is painted on the sclera: texels within
    ``iris_mm`` (``pupil_mm``) of the eyeball's front pole, measured across the line of sight.
    """
    from pnrelight.avatar.raster import interpolate

    sclera = model.vertex_part == model.part_names.index("sclera")
    v = model.vertices.astype(np.float64)
    rho = np.full(len(v), 1.0)
    for side in (v[:, 0] > 0, v[:, 0] <= 0):
        eye = sclera & side
        pole = v[eye][np.argmax(v[eye, 2])]
        front = eye & (v[:, 2] > pole[2] - 0.008)  # the front of the eyeball only
        rho[front] = np.linalg.norm(v[front, :2] - pole[:2], axis=1)
    r = interpolate(rho, model.triangles, uv_raster, fill=1.0) * 1e3  # mm
    on = part == model.part_names.index("sclera")
    iris = np.where(on, np.clip((iris_mm - r) / 0.4, 0, 1), 0.0).astype(np.float32)
    pupil = np.where(on, np.clip((pupil_mm - r) / 0.3, 0, 1), 0.0).astype(np.float32)
    return iris, pupil


# Mediapipe's outer lip contour, corner to corner over the top, then back along the bottom.
LIPS_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)


def feature_regions(model, size: int, skin: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Soft UV masks (size, size, 1) of the lips and the eyelids, with their colours (3,) linear.

    The lips are the outer lip contour, the eyelids the convex hull of each eye's contour (grown a
    little), in the atlas, feathered; lips are a redder, eyelids a slightly darker skin.
    """
    import cv2
    from mediapipe.python.solutions import face_mesh_connections as fmc

    uv = model.landmark_points(np.c_[model.uvs, np.zeros(len(model.uvs))].astype(np.float32))[:, :2]
    px = np.stack([uv[:, 0] * size, (1.0 - uv[:, 1]) * size], 1)
    out = []
    for contour, grow, gain in ((LIPS_OUTER, 0.0, (0.95, 0.6, 0.7)), (fmc.FACEMESH_LEFT_EYE, 0.006, (0.85, 0.82, 0.82)),
                                (fmc.FACEMESH_RIGHT_EYE, 0.006, (0.85, 0.82, 0.82))):
        idx = np.array(contour) if grow == 0 else np.array(sorted({i for e in contour for i in e}))
        # A few landmarks (the mouth corners) sit on triangles mapped to another island of the atlas.
        idx = idx[np.linalg.norm(uv[idx] - np.median(uv[idx], axis=0), axis=1) < 0.1]
        poly = np.round(px[idx] * 4).astype(np.int32)
        mask = np.zeros((size, size), np.uint8)
        if grow == 0:
            cv2.fillPoly(mask, [poly], 1, lineType=cv2.LINE_8, shift=2)
        else:
            cv2.fillConvexPoly(mask, cv2.convexHull(poly), 1, lineType=cv2.LINE_8, shift=2)
            r = max(1, int(round(grow * size)))
            mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
        soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), max(1.0, 0.003 * size))[..., None]
        out.append((soft, (np.asarray(skin) * gain).astype(np.float32)))
    return out


def subject_albedo(atlas: np.ndarray, info: dict, model, skin_gain: np.ndarray, iris: tuple) -> np.ndarray:
    """The atlas with the subject's skin gain (3,) on the skin parts and its iris colour (3,)."""
    names = model.part_names
    skin = np.isin(info["part"], [names.index(p) for p in SKIN_PARTS])
    out = np.where(skin[..., None], atlas * skin_gain, atlas)
    out[info["part"] == names.index("iris")] = iris
    a, p = info["iris"][..., None], info["pupil"][..., None]
    out = (1 - a) * out + a * np.asarray(iris, np.float32)
    out = (1 - p) * out + p * np.float32(0.01)
    return np.clip(out, 0.01, 0.9).astype(np.float32)


def random_expression(model, rng: np.random.Generator) -> np.ndarray:
    """(E,) sparse blendshape weights: two to four groups of ``EXPRESSION_GROUPS``."""
    expr = np.zeros(model.num_expression)
    for g in rng.choice(len(EXPRESSION_GROUPS), size=int(rng.integers(2, 5)), replace=False):
        names, top = EXPRESSION_GROUPS[g]
        w = rng.uniform(0.2, 1.0) * top
        for name in names:
            expr[model.expression_names.index(name)] = np.clip(w + rng.uniform(-0.05, 0.05), 0.0, 1.0)
    return expr


def random_subject(model, seed: int, size: int, envmap_names: list[str]) -> dict:
    """Everything that defines one synthetic subject, drawn from ``seed`` (JSON-ready)."""
    rng = np.random.default_rng(seed)
    shape = rng.standard_normal(model.num_shape)
    expr = random_expression(model, rng)
    yaw, pitch, roll = rng.uniform(-25, 25), rng.uniform(-10, 10), rng.uniform(-5, 5)
    distance = rng.uniform(0.5, 0.7)
    focal_mm = rng.uniform(40, 60)  # 35 mm-equivalent: a portrait lens, or a phone at 2x
    tone = float(np.exp(rng.uniform(np.log(0.45), np.log(1.3))))
    hue = rng.uniform(-0.08, 0.12)  # > 0: redder, < 0: more yellow
    return {
        "seed": int(seed), "size": int(size), "shape": shape.round(6).tolist(), "expression": expr.round(6).tolist(),
        "yaw_deg": float(yaw), "pitch_deg": float(pitch), "roll_deg": float(roll), "distance_m": float(distance),
        "focal_mm_35": float(focal_mm), "focal_px": float(focal_mm / 36.0 * size),
        "offset_px": (rng.uniform(-0.04, 0.04, size=2) * size).tolist(),
        "skin_gain": (tone * np.array([1 + hue, 1.0, 1 - hue])).round(4).tolist(),
        "iris": list(IRIS_COLOURS[int(rng.integers(len(IRIS_COLOURS)))]),
        "envmap": envmap_names[int(rng.integers(len(envmap_names)))], "envmap_yaw_deg": float(rng.uniform(-180, 180)),
        "background": "photo" if seed % 2 else "gradient", "background_photo": BACKGROUND_PHOTOS[int(rng.integers(2))],
        "background_tint": rng.uniform(0.25, 0.7, size=3).round(3).tolist(),
    }


def subject_geometry(model, subject: dict) -> dict:
    """Ground-truth camera-frame vertices (V, 3), rotation, translation, focal and principal point of a subject."""
    from pnrelight.avatar.calibrate_landmarks import pose_rotation

    size = subject["size"]
    verts = model.shaped_vertices(np.array(subject["shape"]), np.array(subject["expression"])).astype(np.float64)
    R = pose_rotation(subject["yaw_deg"], subject["pitch_deg"], subject["roll_deg"])
    f = subject["focal_px"]
    pp = np.array([size / 2.0, size / 2.0])
    # The landmarks' centre projects near the image centre (plus the subject's offset).
    centre = np.nanmean(model.landmark_points(verts), axis=0)
    d = subject["distance_m"]
    off = np.array(subject["offset_px"])
    target = np.array([off[0] * d / f, -off[1] * d / f, -d])
    t = target - R @ centre
    return {"vertices": verts @ R.T + t, "rotation": R, "translation": t, "focal_px": f, "principal_point": pp}


def subject_sh(env_path: Path, yaw_deg: float, probe_normals: np.ndarray) -> np.ndarray:
    """(9, 3) SH shading of an environment map turned by ``yaw_deg`` about y, scaled so the
    90th percentile of the shading over ``probe_normals`` (N, 3) is 0.85 (bright, unclipped)."""
    from pnrelight.envmap import envmap_to_sh, load_envmap, render_sh, sh_radiance_to_shading

    env = load_envmap(env_path)
    env = np.roll(env, int(round(yaw_deg / 360.0 * env.shape[1])), axis=1)  # a turn about the vertical axis
    sh = sh_radiance_to_shading(envmap_to_sh(env))
    level = float(np.percentile(render_sh(probe_normals, sh).mean(-1), 90))
    return sh * (0.85 / max(level, 1e-6))


def background_image(subject: dict, size: int) -> np.ndarray:
    """(size, size, 3) sRGB background: a tinted vertical gradient, or a blurred skimage photo."""
    import cv2

    tint = np.array(subject["background_tint"], dtype=np.float32)
    if subject["background"] == "photo":
        from skimage import data

        photo = getattr(data, subject["background_photo"])().astype(np.float32) / 255.0
        s = min(photo.shape[:2])
        photo = cv2.resize(photo[:s, :s], (size, size), interpolation=cv2.INTER_AREA)
        return cv2.GaussianBlur(photo, (0, 0), size / 128)  # out of focus, and no faces in it
    ramp = np.linspace(1.15, 0.85, size, dtype=np.float32)[:, None, None]
    grey = tint.mean()
    colour = grey + 0.3 * (tint - grey)  # mostly neutral
    return np.clip(np.broadcast_to(colour * ramp, (size, size, 3)), 0, 1).astype(np.float32)


def render_subject(model, geo: dict, albedo_tex: np.ndarray, sh: np.ndarray, background: np.ndarray) -> dict:
    """Render a ground-truth head: sRGB image (H, W, 3) plus image-space ground truth.

    The image is rendered ``SUPERSAMPLE`` x larger and area-averaged (anti-aliased edges, as a camera
    sees them); the ground truth comes from a raster at the output size: albedo (H, W, 3) linear,
    normals (H, W, 3) camera frame, mask (H, W) bool (face-part pixels facing the camera), raster.
    """
    import cv2

    size = background.shape[0]
    hi = _shade(model, geo, albedo_tex, sh, size * SUPERSAMPLE)
    cov = cv2.resize(hi["raster"].mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)[..., None]
    colour = cv2.resize(hi["srgb"], (size, size), interpolation=cv2.INTER_AREA)
    image = colour + (1.0 - cov) * background  # srgb is 0 outside the mesh: a coverage blend
    gt = _shade(model, geo, albedo_tex, sh, size)
    from pnrelight.avatar.face_model import face_part_triangles

    r = gt["raster"]
    on_face = np.zeros(r.face_id.shape, dtype=bool)
    on_face[r.mask] = face_part_triangles(model)[r.face_id[r.mask]]
    mask = on_face & (gt["normals"][..., 2] > 0.05)
    return {"image": np.clip(image, 0, 1).astype(np.float32), "albedo": gt["albedo"], "normals": gt["normals"],
            "mask": mask, "raster": r}


def _shade(model, geo: dict, albedo_tex: np.ndarray, sh: np.ndarray, size: int) -> dict:
    """Rasterise and shade the ground-truth mesh at ``size`` pixels (the camera scaled with the image)."""
    import cv2

    from pnrelight.avatar.color import linear_to_srgb
    from pnrelight.avatar.face_model import vertex_normals
    from pnrelight.avatar.raster import interpolate
    from pnrelight.avatar.uv import rasterize_camera
    from pnrelight.envmap import render_sh

    scale = size / (2.0 * geo["principal_point"][0])
    verts, tris = geo["vertices"], model.triangles
    r = rasterize_camera(verts, tris, geo["focal_px"] * scale, geo["principal_point"] * scale, size, size)
    uv = interpolate(model.uvs, tris, r)
    T = albedo_tex.shape[0]
    albedo = cv2.remap(albedo_tex, (uv[..., 0] * T - 0.5).astype(np.float32), ((1 - uv[..., 1]) * T - 0.5).astype(np.float32),
                       cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    n = interpolate(vertex_normals(verts, tris), tris, r)
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
    lin = albedo * np.maximum(render_sh(n, sh), 0.0)
    srgb = np.where(r.mask[..., None], linear_to_srgb(lin), 0.0).astype(np.float32)
    return {"srgb": srgb, "albedo": albedo, "normals": n.astype(np.float32), "raster": r}


def landmark_region(model, vertices_model: np.ndarray) -> np.ndarray:
    """(V,) bool: face-part vertices of an (unposed) head that face forward and lie inside the
    x-y convex hull of its landmark points -- the part of the face the landmarks span."""
    from scipy.spatial import ConvexHull
    from skimage.measure import points_in_poly

    from pnrelight.avatar.face_model import vertex_normals

    lm = model.landmark_points(vertices_model)
    lm = lm[np.isfinite(lm).all(1), :2]
    hull = lm[ConvexHull(lm).vertices]
    n = vertex_normals(vertices_model, model.triangles)
    face = model.vertex_part == model.part_names.index("face")
    return face & (n[:, 2] > 0.0) & points_in_poly(vertices_model[:, :2], hull)


# ----------------------------------------------------------------------------- evaluation
LANDMARK_GROUPS = ("eyes", "lips", "brows", "oval", "nose")


def landmark_groups() -> dict[str, np.ndarray]:
    """Indices of mediapipe's landmark groups (eye contours, lips, brows, face oval, nose)."""
    from mediapipe.python.solutions import face_mesh_connections as fmc

    sets = {"eyes": fmc.FACEMESH_LEFT_EYE | fmc.FACEMESH_RIGHT_EYE, "lips": fmc.FACEMESH_LIPS,
            "brows": fmc.FACEMESH_LEFT_EYEBROW | fmc.FACEMESH_RIGHT_EYEBROW, "oval": fmc.FACEMESH_FACE_OVAL,
            "nose": fmc.FACEMESH_NOSE}
    return {k: np.array(sorted({i for e in v for i in e})) for k, v in sets.items()}


def detection_errors(points_px: np.ndarray, gt_px: np.ndarray) -> dict:
    """Mean distance (px) of detected landmarks (478, 2+) to the ground-truth projections (478, 2), overall and per group."""
    err = np.linalg.norm(np.asarray(points_px)[:, :2] - gt_px, axis=1)
    out = {"all": float(np.nanmean(err))}
    out.update({k: float(np.nanmean(err[idx])) for k, idx in landmark_groups().items()})
    return out


def fit_errors(fit, fm, gt_model, geo: dict, subject: dict, region: np.ndarray) -> dict:
    """Landmark residual, pose/focal, geometry and (same model) coefficient errors of a fit (see the module docstring)."""
    from pnrelight.avatar.align import apply_similarity, point_to_mesh_distance, similarity_alignment
    from pnrelight.avatar.camera import rotation_angle_deg
    from pnrelight.avatar.face_model import face_part_triangles

    same = fm.num_shape == gt_model.num_shape and len(fm.vertices) == len(gt_model.vertices)
    ratio = float(fit.focal_px / geo["focal_px"])
    out = {"landmark_residual_px": float(fit.landmark_residual_px), "focal_ratio": ratio, "focal_ratio_error_pct": abs(ratio - 1) * 100}
    if same:  # another model's frame is not the ground truth's: its rotation is not comparable
        out["rotation_error_deg"] = rotation_angle_deg(fit.rotation, geo["rotation"])
    # Geometry after a similarity alignment of the fitted landmark points onto the ground-truth ones.
    lm_gt = gt_model.landmark_points(geo["vertices"])
    tf = similarity_alignment(fm.landmark_points(fit.vertices), lm_gt)
    aligned = apply_similarity(fit.vertices, tf)
    gt_v = geo["vertices"]
    face_tris = fm.triangles[face_part_triangles(fm)]
    geom = {"alignment_scale": float(tf[0]),
            "closest_point_mm_landmark_region": float(point_to_mesh_distance(gt_v[region], aligned, face_tris).mean() * 1e3)}
    if same:  # same topology: per-vertex errors
        err = np.linalg.norm(aligned - gt_v, axis=1) * 1e3
        face = fm.vertex_part == fm.part_names.index("face")
        geom.update(vertex_mm_face=float(err[face].mean()), vertex_mm_head=float(err.mean()),
                    vertex_mm_landmark_region=float(err[region].mean()))
    out["geometry"] = geom
    if same:
        s_gt, s_fit = np.array(subject["shape"]), np.asarray(fit.shape)
        e_gt, e_fit = np.array(subject["expression"]), np.asarray(fit.expression)
        active = e_gt > 0
        out["coefficients"] = {
            "identity_corr": float(np.corrcoef(s_gt, s_fit)[0, 1]), "identity_corr_first10": float(np.corrcoef(s_gt[:10], s_fit[:10])[0, 1]),
            "identity_rms": float(np.sqrt(np.mean((s_gt - s_fit) ** 2))), "identity_rms_gt": float(np.sqrt(np.mean(s_gt ** 2))),
            "expression_rms": float(np.sqrt(np.mean((e_gt - e_fit) ** 2))),
            "expression_active_mae": float(np.abs(e_gt - e_fit)[active].mean()),
            "expression_active": {fm.expression_names[i]: [round(float(e_gt[i]), 3), round(float(e_fit[i]), 3)] for i in np.flatnonzero(active)},
            "expression_top_fitted": {fm.expression_names[i]: round(float(e_fit[i]), 3) for i in np.argsort(-e_fit)[:5]},
        }
    return out


def evaluate(rec, gt_model, gt: dict, geo: dict, subject: dict, region: np.ndarray) -> dict:
    """All measures of one reconstruction ``rec`` against a subject's ground truth (see the module docstring)."""
    from pnrelight.avatar.camera import project
    from pnrelight.avatar.pipeline import landmark_hull_mask

    size = subject["size"]
    gt_px = project(gt_model.landmark_points(geo["vertices"]), geo["focal_px"], geo["principal_point"])
    out = fit_errors(rec.fit, rec.model, gt_model, geo, subject, region)
    hull = landmark_hull_mask(gt_px[np.isfinite(gt_px).all(1)], (size, size))
    mask = gt["mask"] & rec.face_mask & hull
    intr = rec.intrinsics
    out["eval_pixels"] = int(mask.sum())
    out["normals_table3"] = {
        "pipeline (SfS detail normals)": normal_table_row(angular_error_deg(intr.normals[mask], gt["normals"][mask])),
        "fitted mesh normals only": normal_table_row(angular_error_deg(rec.normals_image[mask], gt["normals"][mask])),
    }
    out["albedo_table2"] = {"pipeline, colour-calibrated": albedo_table_row(intr.albedo, gt["albedo"], mask, calibrate=True)}
    out["_mask"] = mask
    return out


def mean_head_errors(model, geo: dict, region: np.ndarray) -> dict:
    """Baseline: the mean ICT head (no identity, no expression) aligned by its landmarks like a fit."""
    from pnrelight.avatar.align import apply_similarity, point_to_mesh_distance, similarity_alignment
    from pnrelight.avatar.face_model import face_part_triangles

    mean = model.vertices.astype(np.float64)
    aligned = apply_similarity(mean, similarity_alignment(model.landmark_points(mean), model.landmark_points(geo["vertices"])))
    err = np.linalg.norm(aligned - geo["vertices"], axis=1) * 1e3
    face = model.vertex_part == model.part_names.index("face")
    cp = point_to_mesh_distance(geo["vertices"][region], aligned, model.triangles[face_part_triangles(model)]).mean() * 1e3
    return {"geometry": {"vertex_mm_face": float(err[face].mean()), "vertex_mm_head": float(err.mean()),
                         "vertex_mm_landmark_region": float(err[region].mean()), "closest_point_mm_landmark_region": float(cp)}}


# ----------------------------------------------------------------------------- pictures
def fit_overlay(image: np.ndarray, rec) -> np.ndarray:
    """The render with the fitted mesh (grey, headlight-shaded) blended over it at 50 %."""
    from pnrelight.avatar.preview import draw_landmarks

    n = rec.normals_image
    shade = 0.25 + 0.7 * np.clip(n[..., 2:3], 0, 1)
    tint = np.array([0.55, 0.75, 1.0], np.float32) * shade
    m = rec.raster.mask[..., None]
    out = np.where(m, 0.5 * image + 0.5 * tint, image)
    pts = rec.model.landmark_points(rec.fit.vertices)
    from pnrelight.avatar.camera import project

    px = project(pts[np.isfinite(pts).all(1)], rec.fit.focal_px, rec.fit.principal_point)
    return draw_landmarks(out, px[::4], color=(1.0, 0.9, 0.1), radius=1)


def albedo_tile(albedo_lin: np.ndarray, mask: np.ndarray, gain=None) -> np.ndarray:
    from pnrelight.avatar.color import linear_to_srgb

    a = albedo_lin * (1.0 if gain is None else np.asarray(gain, np.float32))
    return np.where(mask[..., None], linear_to_srgb(np.clip(a, 0, 1)), 0.5).astype(np.float32)


# ----------------------------------------------------------------------------- reporting
# Headline numbers: name -> (key path inside a fit's result dict, True when larger is worse).
SUMMARY_KEYS = {
    "landmark_residual_px": (("landmark_residual_px",), True),
    "focal_ratio_error_pct": (("focal_ratio_error_pct",), True),
    "rotation_error_deg": (("rotation_error_deg",), True),
    "vertex_mm_face": (("geometry", "vertex_mm_face"), True),
    "vertex_mm_head": (("geometry", "vertex_mm_head"), True),
    "closest_point_mm_landmark_region": (("geometry", "closest_point_mm_landmark_region"), True),
    "identity_corr": (("coefficients", "identity_corr"), False),
    "expression_rms": (("coefficients", "expression_rms"), True),
    "expression_active_mae": (("coefficients", "expression_active_mae"), True),
    "normal_mean_deg": (("normals_table3", "pipeline (SfS detail normals)", "mean_deg"), True),
    "normal_lt15_pct": (("normals_table3", "pipeline (SfS detail normals)", "lt15_pct"), False),
    "mesh_normal_mean_deg": (("normals_table3", "fitted mesh normals only", "mean_deg"), True),
    "albedo_ssim": (("albedo_table2", "pipeline, colour-calibrated", "ssim"), False),
    "albedo_psnr_db": (("albedo_table2", "pipeline, colour-calibrated", "psnr_db"), False),
    "albedo_rmse": (("albedo_table2", "pipeline, colour-calibrated", "rmse"), True),
}
COLUMNS = (("ict", "ICT head"), ("mediapipe", "mediapipe mesh"), ("ict_oracle", "ICT fit on true landmarks"),
           ("mean_head", "mean ICT head"))


def _get(d, path):
    for p in path:
        d = d.get(p) if isinstance(d, dict) else None
    return d


def summarise(rows: list[dict]) -> dict:
    """Mean and worst over subjects of the headline numbers, per column (see ``COLUMNS``), and of the
    detector error; pixel measures in 512-pixel units (a 1024 subject's pixels count half)."""
    out = {}
    for col, _ in COLUMNS:
        res = [(r["models"][col], 512.0 / r["subject"]["size"]) for r in rows if col in r["models"] and "error" not in r["models"][col]]
        out[col] = {"subjects": len(res), "failed": sum("error" in r["models"].get(col, {}) for r in rows)}
        for name, (path, larger_worse) in SUMMARY_KEYS.items():
            scale = lambda k: k if name.endswith("_px") else 1.0  # noqa: E731
            vals = [float(v) * scale(k) for v, k in ((_get(x, path), k) for x, k in res) if v is not None]
            if vals:
                out[col][name] = {"mean": float(np.mean(vals)), "worst": float(max(vals) if larger_worse else min(vals))}
    det = [{k: v * 512.0 / r["subject"]["size"] for k, v in r["detection"].items()} for r in rows if "detection" in r]
    out["detection_px_at_512"] = {k: {"mean": float(np.mean([d[k] for d in det])), "worst": float(max(d[k] for d in det))}
                                  for k in det[0]} if det else {}
    return out


def tables(rows: list[dict], summary: dict, systematic: dict) -> str:
    """Markdown tables of the per-subject and summary numbers."""
    L = ["### Subjects", "",
         "| seed | size | yaw/pitch/roll (deg) | focal (35 mm eq.) | distance | light | skin gain | background | expression (ground truth) |",
         "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["subject"]
        act = ", ".join(f"{k} {v:.2f}" for k, v in r["expression_active"].items())
        bg = s["background"] + (f" ({s['background_photo']})" if s["background"] == "photo" else "")
        L.append(f"| {s['seed']} | {s['size']} | {s['yaw_deg']:+.0f}/{s['pitch_deg']:+.0f}/{s['roll_deg']:+.0f} | "
                 f"{s['focal_mm_35']:.0f} mm | {s['distance_m']:.2f} m | {s['envmap']} {s['envmap_yaw_deg']:+.0f}° | "
                 f"{s['skin_gain'][1]:.2f} | {bg} | {act} |")
    L += ["", "### Landmarks", "",
          "Detector error: mediapipe's landmarks on the render against the projections of the ground-truth landmark "
          "points (the ICT model's mediapipe landmark embedding); fit residual: fitted model landmarks against the "
          "detected ones (for the true-landmark fit: against the true projections). Pixels of the subject's image.", "",
          "| seed | detector px: all | eyes | lips | brows | oval | nose | ICT residual | mediapipe residual | ICT on true landmarks residual |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d, m = r.get("detection", {}), r["models"]
        L.append(f"| {r['subject']['seed']} | " + " | ".join(_f(d.get(k)) for k in ("all", *LANDMARK_GROUPS)) + " | "
                 + " | ".join(_f(m.get(c, {}).get("landmark_residual_px")) for c in ("ict", "mediapipe", "ict_oracle")) + " |")
    if systematic:
        L += ["", "Systematic part of the detector error (norm of the per-landmark offset averaged over the subjects, "
              "in 512-pixel units): " + ", ".join(f"{k} {v:.2f} px" for k, v in systematic.items()) + "."]
    L += ["", "### Geometry", "",
          "Millimetres after a similarity alignment of the fitted landmark points onto the ground-truth ones. Per vertex "
          "(ICT topology only): mean distance over the face part / the whole head. CP: mean closest-point distance from the "
          "ground-truth face vertices inside the landmark region to the fitted face surface (the only measure the "
          "mediapipe mesh allows; more lenient). Focal: fitted / true focal length.", "",
          "| seed | ICT face | ICT head | ICT CP | ICT focal | mediapipe CP | true-landmark fit face | true-landmark fit CP | "
          "mean head face | mean head CP |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["models"]
        g = lambda c, k: _get(m.get(c, {}), ("geometry", k))  # noqa: E731
        L.append(f"| {r['subject']['seed']} | {_f(g('ict', 'vertex_mm_face'))} | {_f(g('ict', 'vertex_mm_head'))} | "
                 f"{_f(g('ict', 'closest_point_mm_landmark_region'))} | {_f(m.get('ict', {}).get('focal_ratio'), 3)} | "
                 f"{_f(g('mediapipe', 'closest_point_mm_landmark_region'))} | {_f(g('ict_oracle', 'vertex_mm_face'))} | "
                 f"{_f(g('ict_oracle', 'closest_point_mm_landmark_region'))} | {_f(g('mean_head', 'vertex_mm_face'))} | "
                 f"{_f(g('mean_head', 'closest_point_mm_landmark_region'))} |")
    L += ["", "### ICT coefficients", "",
          "Identity: Pearson correlation with the ground truth over all 50 components (first 10 in brackets); "
          "expression: RMS error over the 53 weights and mean absolute error over the ground truth's active ones.", "",
          "| seed | id corr | true-landmark fit id corr | expr RMS | expr active MAE | true-landmark fit expr active MAE | "
          "active weights: truth -> fitted |",
          "|---|---|---|---|---|---|---|"]
    for r in rows:
        c, o = _get(r["models"], ("ict", "coefficients")), _get(r["models"], ("ict_oracle", "coefficients"))
        if not c:
            continue
        act = ", ".join(f"{k} {g:.2f}->{f:.2f}" for k, (g, f) in c["expression_active"].items())
        L.append(f"| {r['subject']['seed']} | {c['identity_corr']:.2f} ({c['identity_corr_first10']:.2f}) | "
                 f"{o['identity_corr']:.2f} ({o['identity_corr_first10']:.2f}) | {c['expression_rms']:.3f} | "
                 f"{c['expression_active_mae']:.3f} | {o['expression_active_mae']:.3f} | {act} |")
    L += ["", "### Normals (Table 3 format) and albedo (Table 2 format)", "",
          "Pipeline output (SfS-refined normals; image-space albedo, sRGB after a per-channel gain) inside the "
          "ground-truth face mask ∩ the pipeline's face mask ∩ the hull of the true landmark projections; "
          "\"mesh-only\": the fitted mesh's own normals. ICT UV: the albedo texture against the ground-truth atlas "
          "on the face-part texels seen with confidence > 0.3 (same atlas: texel against texel).", "",
          "| seed | model | pixels | mean | < 5° | < 15° | < 25° | mesh-only mean | SSIM | PSNR | RMSE | ICT UV SSIM / PSNR |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for model in MODELS:
            m = r["models"][model]
            if "error" in m:
                L.append(f"| {r['subject']['seed']} | {model} | failed: {m['error']} ||||||||||")
                continue
            n, mo = m["normals_table3"]["pipeline (SfS detail normals)"], m["normals_table3"]["fitted mesh normals only"]
            a = m["albedo_table2"]["pipeline, colour-calibrated"]
            uv = m["albedo_table2"].get("UV texture (seen face texels), colour-calibrated")
            uvs = "–" if uv is None else f"{uv['ssim']:.3f} / {uv['psnr_db']:.2f}"
            L.append(f"| {r['subject']['seed']} | {model} | {m['eval_pixels']} | {n['mean_deg']:.2f}° | {n['lt5_pct']:.1f}% | "
                     f"{n['lt15_pct']:.1f}% | {n['lt25_pct']:.1f}% | {mo['mean_deg']:.2f}° | {a['ssim']:.3f} | {a['psnr_db']:.2f} | "
                     f"{a['rmse']:.3f} | {uvs} |")
    L += ["", "### Summary (mean / worst over subjects; pixels in 512-pixel units)", "",
          "| measure | " + " | ".join(label for _, label in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    labels = {"landmark_residual_px": "fit landmark residual (px at 512)", "focal_ratio_error_pct": "focal length error (%)",
              "rotation_error_deg": "head rotation error (deg)",
              "vertex_mm_face": "per-vertex error, face part (mm)", "vertex_mm_head": "per-vertex error, whole head (mm)",
              "closest_point_mm_landmark_region": "closest-point error, landmark region (mm)",
              "identity_corr": "identity correlation", "expression_rms": "expression RMS error",
              "expression_active_mae": "active expression MAE", "normal_mean_deg": "normal error, pipeline (deg)",
              "normal_lt15_pct": "normals < 15° (%)", "mesh_normal_mean_deg": "normal error, fitted mesh only (deg)",
              "albedo_ssim": "albedo SSIM", "albedo_psnr_db": "albedo PSNR (dB)", "albedo_rmse": "albedo RMSE"}
    for key, label in labels.items():
        cells = [summary[c].get(key) for c, _ in COLUMNS]
        if all(v is None for v in cells):
            continue
        L.append(f"| {label} | " + " | ".join("–" if v is None else f"{v['mean']:.3g} / {v['worst']:.3g}" for v in cells) + " |")
    det = summary.get("detection_px_at_512", {})
    if det:
        L.append("| detector error vs true landmarks (px): " + ", ".join(f"{k} {v['mean']:.2f}" for k, v in det.items())
                 + " | " + " | ".join([""] * len(COLUMNS)) + " |")
    return "\n".join(L) + "\n"


def _f(v, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


DOC_HEAD = """# Avatar fit quality on synthetic heads

Ground truth the fit never saw: ICT-FaceKit heads with random identities, expressions, poses,
cameras, skin tones and lighting, rendered by the project's own rasterizer and reconstructed by
`pipeline.reconstruct` from the sRGB render alone, once with the ICT head (the default) and once
with the mediapipe face mesh. Made by `benchmarks/avatar_synthetic_heads.py` (the module docstring
has every detail); the tables are from the run recorded under them.

How the subjects are made:

* identity: all 50 ICT coefficients drawn from N(0, 1); expression: two to four blendshape groups
  (smiles, a small jawOpen, light blinks, brows, frowns, pucker, squints, sneer, stretch) with
  weights up to ~0.6; pose: yaw ±25°, pitch ±10°, roll ±5°; camera 0.5–0.7 m away with a 40–60 mm
  (35 mm-equivalent) focal length.
* albedo: the astronaut's albedo texture estimated by `reconstruct` with the ICT head (unseen skin
  filled with the face's median skin colour; plain lips and eyelids, as the astronaut's teeth and
  eye whites would land on them; plain colours for teeth, gums and mouth; iris and pupil painted on
  the sclera, which covers ICT's iris mesh), with a per-subject skin tone (gain 0.45–1.3, small red/yellow shift). Normals: the mesh's own.
  Lighting: order-2 SH from a shipped environment map, a different map and rotation per subject.
* rendered 2x supersampled at 512 x 512 (and 1024 x 1024 for the high-resolution subject) over a
  neutral gradient or a blurred photo.

How it is measured:

* landmark residual: the fit's own (model landmarks vs detected ones); detector error: detected
  landmarks vs the projections of the ground-truth landmark points (the ICT model's embedding of
  mediapipe's 478 landmarks), overall and per group, and its systematic part (the per-landmark
  offset averaged over the subjects).
* geometry after a similarity alignment (Umeyama, with scale) of the fitted landmark points onto the
  ground-truth ones -- a single photo fixes the head only up to depth/scale. ICT has the ground
  truth's topology, so its error is per vertex (face part; whole head including eyes, teeth and
  the back of the head). The mediapipe mesh has a different topology: its error is the
  closest-point distance (CP) from the ground-truth face vertices inside the landmark region to the
  fitted surface -- a different, more lenient measure (sliding along the surface is free), given
  for every column so they compare.
* two references: the ICT fit (`fit.fit_face`, default settings) on the true landmark projections
  instead of the detected ones -- the fit without the detector's error -- and the mean ICT head
  (no identity, no expression) aligned the same way.
* normals (PN-Relighting Table 3 format) and albedo (Table 2 format: SSIM, PSNR, RMSE in sRGB after
  a per-channel gain) of the pipeline's image-space intrinsics inside ground-truth face mask ∩
  pipeline face mask ∩ the convex hull of the ground-truth landmark projections.

![render | ICT fit | mediapipe fit | albedo: ground truth, ICT, mediapipe](images/avatar_synthetic_heads.png)

"""


GENERATED = ("<!-- generated by benchmarks/avatar_synthetic_heads.py: begin -->", "<!-- generated: end -->")


def write_doc(path: Path, generated: str) -> None:
    """The tables into ``path`` between the ``GENERATED`` markers (the hand-written text around them kept)."""
    write_generated_section(path, generated, GENERATED, DOC_HEAD)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=6, help="subjects at 512 x 512")
    ap.add_argument("--hires", type=int, default=1, help="extra subjects at 1024 x 1024")
    ap.add_argument("--seed", type=int, default=100, help="subject i uses seed + i")
    ap.add_argument("--texture-size", type=int, default=512, help="UV texture size of the reconstructions")
    ap.add_argument("--atlas-size", type=int, default=1024, help="size of the ground-truth albedo atlas")
    ap.add_argument("--sheet-subjects", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS / "avatar_synthetic_heads.json")
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" / "avatar_synthetic_heads.md", help="markdown report ('' to skip)")
    ap.add_argument("--sheet", type=Path, default=ROOT / "docs" / "images" / "avatar_synthetic_heads.png", help="contact sheet ('' to skip)")
    args = ap.parse_args(argv)

    import cv2

    from pnrelight import progress
    from pnrelight.avatar.camera import project
    from pnrelight.avatar.face_model import load_ict_face_model, vertex_normals
    from pnrelight.avatar.fit import fit_face
    from pnrelight.avatar.pipeline import landmark_hull_mask, reconstruct
    from pnrelight.avatar.preview import contact_sheet, crop_box
    from pnrelight.envmap import default_envmaps
    from pnrelight.errors import InputError
    from pnrelight.imageio import write_image

    progress.set_enabled(False)
    t_start = time.perf_counter()
    model = load_ict_face_model()
    t0 = time.perf_counter()
    atlas, atlas_info = build_albedo_atlas(model, args.atlas_size)
    atlas_s = time.perf_counter() - t0
    print(f"albedo atlas from the astronaut: {atlas_s:.1f} s (median skin {atlas_info['median_skin']})", flush=True)
    envs = {p.stem: p for p in default_envmaps()}
    uv_part = texel_raster(model, args.texture_size)[1]
    plan = [(args.seed + i, 512) for i in range(args.subjects)] + [(args.seed + args.subjects + i, 1024) for i in range(args.hires)]
    rows, tiles, offsets = [], [], []
    for k, (seed, size) in enumerate(plan):
        t0 = time.perf_counter()
        subject = random_subject(model, seed, size, sorted(envs))
        geo = subject_geometry(model, subject)
        probe = vertex_normals(geo["vertices"], model.triangles)[model.vertex_part == 0]
        sh = subject_sh(envs[subject["envmap"]], subject["envmap_yaw_deg"], probe[probe[:, 2] > 0.3])
        tex = subject_albedo(atlas, atlas_info, model, np.array(subject["skin_gain"]), tuple(subject["iris"]))
        gt = render_subject(model, geo, tex, sh, background_image(subject, size))
        region = landmark_region(model, model.shaped_vertices(np.array(subject["shape"]), np.array(subject["expression"])))
        render_s = time.perf_counter() - t0
        e = np.array(subject["expression"])
        row = {"subject": subject, "expression_active": {model.expression_names[i]: float(e[i]) for i in np.flatnonzero(e)},
               "gt_mask_pixels": int(gt["mask"].sum()), "region_vertices": int(region.sum()),
               "models": {"mean_head": mean_head_errors(model, geo, region)}, "seconds": {"render": round(render_s, 2)}}
        # The ICT fit on the true landmark projections: what the fit does without the detector's error.
        gt_px = project(model.landmark_points(geo["vertices"]), geo["focal_px"], geo["principal_point"])
        t0, c0 = time.perf_counter(), time.process_time()
        row["models"]["ict_oracle"] = fit_errors(fit_face(model, gt_px, (size, size), seed=0), model, model, geo, subject, region)
        row["seconds"]["fit_true_landmarks"] = round(time.perf_counter() - t0, 2)
        row["cpu_seconds"] = {"fit_true_landmarks": round(time.process_time() - c0, 2)}
        recs = {}
        for name in MODELS:
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                rec = reconstruct(gt["image"], face_model_path=name, texture_size=args.texture_size, seed=0)
            except InputError as exc:
                row["models"][name] = {"error": str(exc)}
                print(f"subject {seed}: {name} failed: {exc}", flush=True)
                continue
            rec_s, rec_cpu = time.perf_counter() - t0, time.process_time() - c0
            res = evaluate(rec, model, gt, geo, subject, region)
            if name == "ict":  # the UV albedo texture against the ground-truth atlas (same atlas): face texels seen
                seen = (rec.textures["confidence"] > 0.3) & (uv_part == model.part_names.index("face"))
                gt_tex = cv2.resize(tex, (args.texture_size,) * 2, interpolation=cv2.INTER_AREA)
                res["albedo_table2"]["UV texture (seen face texels), colour-calibrated"] = albedo_table_row(
                    rec.textures["albedo"], gt_tex, seen, calibrate=True)
            if "detection" not in row:  # the same detections for every model
                row["detection"] = detection_errors(rec.face.points, gt_px)
                offsets.append((rec.face.points[:, :2] - gt_px) * (512.0 / size))
            recs[name] = (rec, res.pop("_mask"))
            row["models"][name] = res
            row["seconds"][f"reconstruct_{name}"] = round(rec_s, 2)
            row["cpu_seconds"][f"reconstruct_{name}"] = round(rec_cpu, 2)
        rows.append(row)
        g = lambda c, key: _f(_get(row["models"].get(c, {}), ("geometry", key)))  # noqa: E731
        print(f"subject {seed} ({size} px): detector {_f(row.get('detection', {}).get('all'))} px; ICT residual "
              f"{_f(row['models'].get('ict', {}).get('landmark_residual_px'))} px, face {g('ict', 'vertex_mm_face')} mm "
              f"(true landmarks {g('ict_oracle', 'vertex_mm_face')}, mean head {g('mean_head', 'vertex_mm_face')}), "
              f"CP {g('ict', 'closest_point_mm_landmark_region')} mm; mediapipe CP {g('mediapipe', 'closest_point_mm_landmark_region')} mm; "
              f"{row['seconds']}", flush=True)
        if k < args.sheet_subjects and len(recs) == len(MODELS):
            ok = np.isfinite(gt_px).all(1)
            hull = landmark_hull_mask(gt_px[ok], (size, size))  # the face oval
            box, tight = crop_box(hull, margin=0.3), crop_box(hull, margin=0.05)
            crop = lambda a, b=box: a[b[0]:b[1], b[2]:b[3]]  # noqa: E731
            gain = lambda n: row["models"][n]["albedo_table2"]["pipeline, colour-calibrated"]["gain"]  # noqa: E731
            union = recs["ict"][1] | recs["mediapipe"][1]
            tiles += [(f"seed {seed}: render", crop(gt["image"])),
                      ("ICT fit", crop(fit_overlay(gt["image"], recs["ict"][0]))),
                      ("mediapipe fit", crop(fit_overlay(gt["image"], recs["mediapipe"][0]))),
                      ("albedo: ground truth", crop(albedo_tile(gt["albedo"], union), tight)),
                      ("albedo: ICT", crop(albedo_tile(recs["ict"][0].intrinsics.albedo, recs["ict"][1], gain("ict")), tight)),
                      ("albedo: mediapipe", crop(albedo_tile(recs["mediapipe"][0].intrinsics.albedo, recs["mediapipe"][1],
                                                             gain("mediapipe")), tight))]

    systematic = {}
    if len(offsets) > 1:  # what the detector gets wrong the same way on every subject
        o = np.array(offsets)
        ok = np.isfinite(o).all(axis=(0, 2))  # the iris landmarks have no ground truth
        mean_offset = np.full(o.shape[1], np.nan)
        mean_offset[ok] = np.linalg.norm(o[:, ok].mean(0), axis=1)
        systematic = {"all": float(mean_offset[ok].mean())}
        systematic.update({k: float(np.nanmean(mean_offset[idx])) for k, idx in landmark_groups().items()})
    summary = summarise(rows)
    summary["detection_systematic_px_at_512"] = systematic
    md = tables(rows, summary, systematic)
    print("\n" + md)
    seconds = round(time.perf_counter() - t_start, 1)
    result = {"subjects": rows, "summary": summary, "albedo_atlas": {k: v for k, v in atlas_info.items() if not isinstance(v, np.ndarray)},
              "atlas_seconds": round(atlas_s, 1), "texture_size": args.texture_size, "seconds": seconds,
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count()}}
    write_result(args.out, result, f" ({seconds} s)")
    if tiles and str(args.sheet) not in ("", "."):
        args.sheet.parent.mkdir(parents=True, exist_ok=True)
        write_image(args.sheet, contact_sheet(tiles, columns=6, tile=200))
        print(f"wrote {args.sheet}")
    if str(args.doc) not in ("", "."):
        per = [f"{r['subject']['seed']} ({r['subject']['size']} px): render {r['seconds']['render']} s, "
               + ", ".join(f"reconstruct {n} {r['seconds'].get('reconstruct_' + n, '–')} s wall / "
                           f"{r['cpu_seconds'].get('reconstruct_' + n, '–')} s CPU" for n in MODELS) for r in rows]
        tail = (f"\nRun: `benchmarks/avatar_synthetic_heads.py --subjects {args.subjects} --hires {args.hires} --seed {args.seed}` "
                f"in {seconds} s on {os.cpu_count()} CPU cores shared with other jobs, so wall times vary "
                f"(albedo atlas {atlas_s:.1f} s; per subject: {'; '.join(per)}).\n")
        write_doc(args.doc, md + tail)
        print(f"wrote {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
