"""One photo -> relightable face avatar (PN-Relighting appearance path, no learned weights).

Stages (timed, in ``avatar.json``): load photo -> landmarks -> face model -> fit ->
rasterize the fitted mesh in the photo -> intrinsics (SH lighting, albedo, SfS normals,
specular) -> UV textures -> export (glb, textures, json) -> free-view renders -> turntable
(optional frames + GIF) -> preview.

Frames: the *world* of the renders is the photo's camera frame (OpenGL: x right, y up,
z to the viewer), so the estimated SH lighting and the environment maps keep the
orientation they have in the photo; novel views orbit the head centre, yaw 0 being the
direction of the photo's camera. The turntable views turn the photo's lighting with the
camera (as if the head turned on a turntable in front of the photo's camera and lights), so
every side of the head is seen under the light the face had in the photo. The exported mesh
and the normal textures are in the face model's own frame (upright, looking along +z), which
is what a glTF viewer expects. With an expression basis the glb's base mesh is the neutral
(identity-only) head and the expressions are morph targets, weighted by the fitted ones.

Output folder (written to a temporary sibling and renamed at the end)::

    avatar.glb  avatar.json  preview.png
    textures/albedo.png (sRGB) albedo.exr (linear)  normal_object.png  normal_tangent.png
             specular.png  roughness_metallic.png  confidence.png
    renders/turntable_yaw-090.png ... turntable_yaw+180.png (TURNTABLE_YAWS)  relit_<envmap>.png (x3)
    renders/rerender_input.png (the photo re-rendered from the textures, full frame)
    renders/turntable/frame_000.png ... and renders/turntable.gif (with turntable=N)
"""
from __future__ import annotations

import json
import os
import platform
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..atomic import atomic_output_dir
from ..errors import InputError
from ..imageio import write_exr, write_image
from .color import linear_to_srgb, srgb_to_linear

STAGES = ("load", "landmarks", "face model", "fit", "rasterize", "intrinsics", "uv textures", "export", "renders", "turntable",
          "preview")
TURNTABLE_YAWS = (-90.0, -45.0, 0.0, 45.0, 90.0, 180.0)  # the fixed views of renders/ and preview.png (0 = photo camera)
MAX_TURNTABLE_FRAMES = 720
TURNTABLE_FRAME_MS = 80  # GIF delays are centiseconds: 80 ms = 12.5 fps
DEFAULT_RELIGHT_ENVMAPS = ("studio", "sunset", "forest")
RENDER_SIZE = 512
SHADE_TEXELS = 384  # relit textures for the renders: the face spans ~350 of the 512 pixels
RENDER_BACKGROUND = 1.0  # white behind the head in the renders
# Relit renders: every environment map is scaled so the face's mean diffuse shading (luminance of
# E_1 over the camera-facing texels) is RELIGHT_MEAN_SHADING -- the face has about the same mean
# brightness under every map -- then tone-mapped (relight.tone_map_highlights).
RELIGHT_MEAN_SHADING = 0.5
# k_s is measured against the photo's band-limited SH light, whose peaks are far lower than the small
# bright lamps of an HDR map: at full strength those lamps turn skin into chrome.
RELIGHT_SPECULAR_SCALE = 0.35


class _Stages:
    """Times each stage and advances one progress bar."""

    def __init__(self, show: bool):
        from ..progress import progress, _Silent

        self.timings: dict[str, float] = {}
        self.cpu: dict[str, float] = {}  # process CPU seconds (all threads): wall time on a busy machine overstates the work
        self.bar = progress(total=len(STAGES), desc="avatar", unit="stage") if show else _Silent(None, len(STAGES))

    @contextmanager
    def __call__(self, name: str):
        self.bar.set_description(f"avatar: {name}")
        t0, c0 = time.perf_counter(), time.process_time()
        yield
        self.timings[name] = round(time.perf_counter() - t0, 3)
        self.cpu[name] = round(time.process_time() - c0, 3)
        self.bar.update(1)

    def close(self):
        self.bar.close()


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    from .. import __version__

    out = {"pnrelight": __version__, "python": platform.python_version()}
    for dist in ("numpy", "torch", "mediapipe", "opencv-contrib-python", "scipy", "scikit-image", "pyrender", "PyOpenGL"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "not installed"
    return out


@dataclass
class Reconstruction:
    """Everything the avatar is made of, before anything is written (see :func:`reconstruct`)."""

    photo: np.ndarray  # (H, W, 3) sRGB float32
    face: object  # landmarks.FaceLandmarks of the chosen face
    num_faces: int
    face_index: int
    person_mask: np.ndarray  # (H, W) bool
    model: object  # face_model.FaceModel
    fit: object  # fit.FaceFit
    raster: object  # raster.RasterResult of the fitted mesh in the photo
    normals_image: np.ndarray  # (H, W, 3) mesh normals, camera frame
    face_mask: np.ndarray  # (H, W) bool pixels used for the intrinsics
    intrinsics: object  # intrinsics.Intrinsics
    textures: dict  # uv.bake_textures output
    mirror_fill: bool
    seed: int


def build_avatar(
    photo_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    face_index: int | None = None,
    face_model_path: str | os.PathLike | None = None,
    texture_size: int = 1024,
    seed: int = 0,
    envmaps: list[str | os.PathLike] | None = None,
    render_size: int = RENDER_SIZE,
    turntable: int = 0,
    progress: bool = True,
) -> dict:
    """Build an avatar from one photo into ``out_dir`` (replaced atomically). Returns the avatar.json dict.

    face_index : which detected face (0 = largest; default: the largest, warning when there are several).
    face_model_path : "ict" (default), "mediapipe", a .npz face model or a FLAME model file (see ``load_face_model``).
    texture_size : UV texture size (power of two). seed : recorded, drives every random choice.
    envmaps : lat-long .exr/.hdr maps for the relit renders (default: three shipped ones).
    render_size : pixels of the square renders. progress : show a progress bar over the stages.
    turntable : 0, or 2..720 frames evenly spaced over 360 degrees of yaw (renders/turntable/ and turntable.gif).

    Raises InputError (one line: problem and fix) for an unreadable photo, no face, a face
    that is too small, a bad face model file, environment map, texture size or turntable frame count;
    then nothing is written.
    """
    _check_texture_size(texture_size)
    _check_turntable(turntable)
    envs = _load_relight_envmaps(envmaps)  # a bad --envmap fails before any work
    stage = _Stages(progress)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t_start = time.perf_counter()
            rec = reconstruct(photo_path, face_index=face_index, face_model_path=face_model_path,
                              texture_size=texture_size, seed=seed, stage=stage)
            result = _write_outputs(rec, photo_path, out_dir, face_model_path, envs, render_size, stage, caught, t_start,
                                    turntable=int(turntable))
        for w in caught:  # recorded in avatar.json, then shown as usual
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    finally:
        stage.close()
    return result


def _user_warnings(caught) -> list[str]:
    out: list[str] = []
    for w in caught:
        msg = str(w.message)
        if issubclass(w.category, UserWarning) and msg not in out:
            out.append(msg)
    return out


def _check_texture_size(texture_size) -> None:
    t = int(texture_size)
    if not (64 <= t <= 8192) or t & (t - 1):
        raise InputError(f"texture size {texture_size} is not a power of two in [64, 8192] (use e.g. --texture-size 1024)")


def _check_turntable(frames) -> None:
    n = int(frames)
    if n != frames or not (n == 0 or 2 <= n <= MAX_TURNTABLE_FRAMES):
        raise InputError(f"--turntable {frames} is not 0 or a frame count in [2, {MAX_TURNTABLE_FRAMES}] (use e.g. --turntable 36)")


def reconstruct(
    photo: str | os.PathLike | np.ndarray,
    *,
    face_index: int | None = None,
    face_model_path: str | os.PathLike | None = None,
    texture_size: int = 1024,
    seed: int = 0,
    stage: _Stages | None = None,
) -> Reconstruction:
    """Photo (path, or (H, W, 3) sRGB array) -> landmarks, fit, intrinsics and UV textures (nothing written)."""
    from .face_model import face_part_triangles, load_face_model, vertex_normals
    from .landmarks import detect_faces, person_mask, select_face
    from .photo import as_rgb, load_photo
    from .raster import interpolate, rasterize_uv
    from .head_texture import bake_head_textures, is_head_model
    from .uv import bake_textures, rasterize_camera, texel_mirror_map

    _check_texture_size(texture_size)
    stage = stage or _Stages(False)
    source = "the image" if isinstance(photo, np.ndarray) else str(photo)
    with stage("load"):
        image = as_rgb(photo, name="image") if isinstance(photo, np.ndarray) else load_photo(photo)
        height, width = image.shape[:2]
        image_linear = srgb_to_linear(image)
    with stage("landmarks"):
        faces = detect_faces(image)
        face = select_face(faces, face_index, source=source)
        chosen = faces.index(face)
        person = person_mask(image) > 0.5
    with stage("face model"):
        model = load_face_model(face_model_path)
    with stage("fit"):
        from .fit import fit_face

        fit = fit_face(model, face.points, (height, width), seed=seed)
    with stage("rasterize"):
        verts_cam = np.asarray(fit.vertices, dtype=np.float64)
        tris = np.asarray(model.triangles, dtype=np.int64)
        raster = rasterize_camera(verts_cam, tris, fit.focal_px, fit.principal_point, height, width)
        normals_img = interpolate(vertex_normals(verts_cam, tris), tris, raster)
        normals_img /= np.maximum(np.linalg.norm(normals_img, axis=-1, keepdims=True), 1e-12)
        normals_img[~raster.mask] = (0.0, 0.0, 1.0)
        # The intrinsics see the face proper only: not the skull (hair), neck (clothes), eyes or teeth.
        on_face = np.zeros(raster.face_id.shape, dtype=bool)
        on_face[raster.mask] = face_part_triangles(model)[raster.face_id[raster.mask]]
        face_mask = on_face & (normals_img[..., 2] > 0.05) & person
        if face_mask.sum() < 200:
            raise InputError(f"the fitted face covers only {int(face_mask.sum())} pixels of {source} (use a larger, more frontal face)")
    with stage("intrinsics"):
        from .intrinsics import decompose

        # Outside the landmarks' face oval (hairline, ears, under the chin) the pixels are textured but not
        # trusted as skin: kept out of the light fit and the highlight/shadow logic, like eyes and lips.
        hull = landmark_hull_mask(face.points, (height, width))
        features = facial_feature_mask(face.points, (height, width))
        protect = ~hull if features is None else (features | ~hull)
        intr = decompose(image_linear, normals_img, face_mask, seed=seed, protect=protect)
    with stage("uv textures"):
        maps = {"albedo": intr.albedo, "normal": intr.normals, "specular": intr.specular}
        uv_raster = rasterize_uv(model.uvs, tris, texture_size)
        if is_head_model(model):
            # A full head: the photo on the face part, skin and painted eyes / teeth everywhere else.
            tex = bake_head_textures(maps, model, fit, uv_raster, image_raster=raster, image_mask=face_mask,
                                     photo_linear=image_linear, landmarks_px=face.points, sh=intr.sh,
                                     normals_image=normals_img)
            mirror = model.uv_mirror is not None
        else:
            # The (1 - u, v) flip for a symmetric layout (the default model: bit-identical to before),
            # the atlas mirror map otherwise (FLAME).
            mirror_map = None if model.uv_mirror is None else texel_mirror_map(model.uvs, tris, model.uv_mirror, uv_raster,
                                                                                model.vertices)
            mirror = mirror_map is not None and bool((mirror_map >= 0).any())
            tex = bake_textures(maps, verts_cam, tris, model.uvs, fit.focal_px, fit.principal_point, texture_size,
                                rotation=fit.rotation, mirror=mirror_map if mirror else False, image_raster=raster,
                                uv_raster=uv_raster)
        tex["uv_raster"] = uv_raster
    return Reconstruction(photo=image, face=face, num_faces=len(faces), face_index=chosen, person_mask=person, model=model,
                          fit=fit, raster=raster, normals_image=normals_img, face_mask=face_mask, intrinsics=intr,
                          textures=tex, mirror_fill=mirror, seed=seed)


def landmark_hull_mask(points_px: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: the convex hull of the face landmarks (N, 2+) in pixels (the face oval for mediapipe's 478).

    The same region whatever the face model, so the re-render quality of different models compares.
    """
    import cv2

    pts = np.asarray(points_px, dtype=np.float64)[:, :2]
    pts = pts[np.isfinite(pts).all(1)]
    mask = np.zeros(shape, np.uint8)
    if len(pts) >= 3:
        cv2.fillConvexPoly(mask, cv2.convexHull(np.round(pts * 4).astype(np.int32)), 1, lineType=cv2.LINE_8, shift=2)
    return mask.astype(bool)


def facial_feature_mask(points_px: np.ndarray, shape: tuple[int, int]) -> np.ndarray | None:
    """(H, W) bool: eyes, eyebrows and lips (mouth included) from the 478 mediapipe landmarks (N, 2+) in pixels.

    Their albedo is not skin: they are kept out of the SH lighting fit and out of the albedo's
    highlight / shadow logic (``intrinsics.decompose(protect=...)``: white sclera and teeth are not
    highlights, dark brows are not cast shadows). Each region is the convex hull of its mediapipe
    contour, grown by ~2 % of the face size (brows 3 %: hairs spread past the contour).
    None for other landmark layouts.
    """
    import cv2

    points = np.asarray(points_px, dtype=np.float64)
    if points.ndim != 2 or len(points) < 468:
        return None
    from mediapipe.python.solutions import face_mesh_connections as fmc

    face_size = float(np.ptp(points[:, 0]) + np.ptp(points[:, 1])) / 2
    mask = np.zeros(shape, np.uint8)
    regions = ((fmc.FACEMESH_LEFT_EYE, 0.02), (fmc.FACEMESH_RIGHT_EYE, 0.02), (fmc.FACEMESH_LIPS, 0.02),
               (fmc.FACEMESH_LEFT_EYEBROW, 0.03), (fmc.FACEMESH_RIGHT_EYEBROW, 0.03))
    for edges, grow in regions:
        idx = sorted({i for edge in edges for i in edge})
        hull = cv2.convexHull(np.round(points[idx, :2] * 4).astype(np.int32))  # 2 fractional bits
        region = np.zeros(shape, np.uint8)
        cv2.fillConvexPoly(region, hull, 1, lineType=cv2.LINE_8, shift=2)
        radius = max(1, int(round(grow * face_size)))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        mask |= cv2.dilate(region, kernel)
    return mask.astype(bool)


def _write_outputs(rec: Reconstruction, photo_path, out_dir, face_model_path, envs, render_size, stage, caught, t_start,
                   turntable: int = 0) -> dict:
    from ..metrics import psnr, ssim
    from .preview import contact_sheet, crop_box, draw_landmarks

    model, fit, tex, intr = rec.model, rec.fit, rec.textures, rec.intrinsics
    out_dir = Path(out_dir)
    with atomic_output_dir(out_dir) as tmp:
        with stage("export"):
            glb = _export(tmp, model, fit, tex)
        with stage("renders"):
            renders, backend = _renders(tmp, model, fit, tex, intr.sh, envs, render_size)
            rerender = rerender_photo(model, fit, tex, intr.sh, rec.photo.shape[:2], max_texels=512, image_raster=rec.raster)
            write_image(tmp / "renders" / "rerender_input.png", rerender["image"])
        with stage("turntable"):
            if turntable:
                _turntable(tmp / "renders", model, fit, tex, intr.sh, render_size, turntable, [img for _, img in renders["views"]])
        with stage("preview"):
            top, bottom, left, right = crop_box(rec.raster.mask, margin=0.35)
            cov = tex["coverage"][..., None]
            tiles = [("input + landmarks", draw_landmarks(rec.photo, rec.face.points[:, :2])[top:bottom, left:right]),
                     ("albedo (UV)", np.where(cov, linear_to_srgb(tex["albedo"]), 0.5)),
                     ("normals (UV, model frame)", np.where(cov, (tex["normal"] + 1) / 2, 0.5)),
                     ("re-render (textures)", rerender["image"][top:bottom, left:right])]
            tiles += [(f"turntable {yaw:+.0f} deg, photo light", img) for yaw, img in renders["views"]]
            tiles += [(f"relit: {name}", img) for name, img in renders["relit"]]
            write_image(tmp / "preview.png", contact_sheet(tiles, columns=5))
        m = rerender["mask"] & rec.face_mask & landmark_hull_mask(rec.face.points, rec.photo.shape[:2])
        quality = {"rerender_psnr_db": round(psnr(rerender["image"], rec.photo, m), 3),
                   "rerender_ssim": round(ssim(rerender["image"], rec.photo, m), 4),
                   "mask_pixels": int(m.sum())}
        stage.timings["total"] = round(time.perf_counter() - t_start, 3)
        height, width = rec.photo.shape[:2]
        summary = {
            "photo": str(photo_path),
            "image_size": [int(width), int(height)],
            "model": {"name": model.name, "vertices": int(len(model.vertices)), "triangles": int(len(model.triangles)),
                      "path": None if face_model_path is None else str(face_model_path), "uv_mirror_fill": bool(rec.mirror_fill)},
            "faces_detected": int(rec.num_faces),
            "face_index": int(rec.face_index),
            "landmarks": {"backend": rec.face.backend, "bbox_px": [float(x) for x in rec.face.bbox], "score": float(rec.face.score)},
            "camera": {"focal_px": float(fit.focal_px), "principal_point": [float(x) for x in fit.principal_point],
                       "rotation": np.asarray(fit.rotation, dtype=float).round(6).tolist(),
                       "translation": np.asarray(fit.translation, dtype=float).round(6).tolist(),
                       "convention": "OpenGL camera frame: x right, y up, z to the viewer; u = cx + f X/(-Z), v = cy - f Y/(-Z); "
                                     "vertices_cam = rotation @ model_vertex + translation"},
            "fit": {**{k: v for k, v in fit.to_json().items() if k not in ("focal_px", "principal_point", "rotation", "translation")},
                    "expression_names": expression_names(model) or None,
                    "expression_range": None if model.expression_range is None else [float(x) for x in model.expression_range]},
            "glb": glb,
            "sh_lighting": {"coefficients": np.asarray(intr.sh, dtype=float).round(6).tolist(),
                            "meaning": "order-2 real SH (pnrelight.envmap.sh_basis), 9 x RGB, render_sh(n) = diffuse shading (irradiance / pi), camera frame"},
            "textures": {"size": int(tex["albedo"].shape[0]), "coverage": round(float(tex["coverage"].mean()), 4),
                         "visible_fraction_of_coverage": round(float(tex["visible"].sum() / max(tex["coverage"].sum(), 1)), 4)},
            "quality": quality,
            "render_backend": backend,
            "relight_envmaps": [name for name, _ in envs],
            "turntable": {"frames": int(turntable), "views_deg": list(TURNTABLE_YAWS),
                          "gif_frame_ms": TURNTABLE_FRAME_MS if turntable else None,
                          "lighting": "the photo's estimated light, turning with the camera (the head turns in front of it)"},
            "seeds": {"seed": int(rec.seed), "fit": int(getattr(fit, "seed", rec.seed)), "intrinsics": int(intr.seed)},
            "versions": _versions(),
            "timings_s": dict(stage.timings),
            "cpu_s": dict(stage.cpu),
            "warnings": _user_warnings(caught),
        }
        files = {str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file()} | {"avatar.json"}
        summary["files"] = sorted(files)
        (tmp / "avatar.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def model_frame_mesh(model, fit) -> np.ndarray:
    """Fitted vertices (V, 3) in the face model's frame: R^T (v_cam - t)."""
    R = np.asarray(fit.rotation, dtype=np.float64)
    return (np.asarray(fit.vertices, dtype=np.float64) - np.asarray(fit.translation, dtype=np.float64)) @ R


def expression_names(model) -> list[str]:
    """Names of the model's E expression components (``expr_000`` ... where the model has none); [] without a basis."""
    names = list(model.expression_names or [])
    return [names[i] if i < len(names) and names[i] else f"expr_{i:03d}" for i in range(model.num_expression)]


def neutral_model_frame_mesh(model, fit) -> np.ndarray:
    """Fitted vertices (V, 3) in the model frame without the fitted expression: identity only.

    That is ``model.shaped_vertices(fit.shape, None)``, computed as the fitted mesh minus its
    expression offsets so that base + morph targets x fitted weights is exactly the fitted mesh.
    """
    verts = model_frame_mesh(model, fit)
    expr = np.asarray(fit.expression, dtype=np.float64).reshape(-1)
    if model.expression_basis is not None and len(expr):
        verts = verts - model.expression_basis[:, :, : len(expr)].astype(np.float64) @ expr
    return verts


def _export(tmp: Path, model, fit, tex) -> dict:
    """Textures and avatar.glb; returns the glb's entry of avatar.json."""
    from .export import encode_png, roughness_metallic_from_specular, tangent_space_normal_map, vertex_tangents, write_glb
    from .face_model import vertex_normals

    morph = {}
    if model.num_expression:
        # Animatable: neutral head + one morph target per expression component, weighted as fitted.
        verts = neutral_model_frame_mesh(model, fit).astype(np.float32)
        weights = np.zeros(model.num_expression)
        expr = np.asarray(fit.expression, dtype=np.float64).reshape(-1)[: model.num_expression]
        weights[: len(expr)] = expr
        morph = dict(morph_targets=np.moveaxis(model.expression_basis, 2, 0), morph_target_names=expression_names(model),
                     morph_weights=weights)
    else:
        verts = model_frame_mesh(model, fit).astype(np.float32)
    tris = np.asarray(model.triangles)
    normals = vertex_normals(verts, tris)
    tangents = vertex_tangents(verts, normals, model.uvs, tris)
    n_tan = tangent_space_normal_map(tex["normal"], verts, normals, tangents, model.uvs, tris, uv_raster=tex.get("uv_raster"))
    # The three glTF textures are encoded once and written both as files and into the glb.
    pngs = {"albedo": encode_png(linear_to_srgb(tex["albedo"])), "normal_tangent": encode_png((n_tan + 1) / 2),
            "roughness_metallic": encode_png(roughness_metallic_from_specular(tex["specular"]))}
    tdir = tmp / "textures"
    tdir.mkdir()
    for name, data in pngs.items():
        (tdir / f"{name}.png").write_bytes(data)
    write_exr(tdir / "albedo.exr", tex["albedo"])
    write_image(tdir / "normal_object.png", (tex["normal"] + 1) / 2)
    write_image(tdir / "specular.png", np.clip(tex["specular"], 0, 1), bits=16)
    write_image(tdir / "confidence.png", tex["filled_confidence"])
    path = write_glb(tmp / "avatar.glb", verts, tris, model.uvs, normals, pngs["albedo"], pngs["normal_tangent"],
                     pngs["roughness_metallic"], tangents=tangents, name="avatar", **morph)
    return {"bytes": path.stat().st_size, "base_mesh": "neutral expression" if morph else "fitted",
            "morph_targets": model.num_expression}


def _load_relight_envmaps(envmaps) -> list[tuple[str, np.ndarray]]:
    """(name, lat-long radiance) of the environment maps for the relit renders (default: three shipped ones)."""
    from ..envmap import ENVMAP_DIR, default_envmaps, load_envmap

    if envmaps:
        paths = [Path(p) for p in envmaps]
    else:
        shipped = {p.stem: p for p in default_envmaps()}
        paths = [shipped[n] for n in DEFAULT_RELIGHT_ENVMAPS if n in shipped] or list(shipped.values())[:3]
        if not paths:
            raise InputError(f"no environment maps in {ENVMAP_DIR} (reinstall pnrelight or pass --envmap FILE)")
    return [(p.stem, load_envmap(p)) for p in paths]


@dataclass
class _Orbit:
    """Render setup shared by the fixed views and the turntable: the head at ``center``, cameras ``distance`` away."""

    verts: np.ndarray  # (V, 3) camera-frame vertices
    center: np.ndarray  # (3,)
    distance: float
    base_yaw: float  # orbit yaw (degrees) of the photo's camera direction
    yfov: float = 25.0

    def pose(self, yaw: float) -> np.ndarray:
        from .render import orbit_pose

        return orbit_pose(self.center, self.distance, self.base_yaw + yaw)


def _orbit(fit) -> _Orbit:
    from .render import framing

    verts = np.asarray(fit.vertices, dtype=np.float64)
    center, distance = framing(verts, yfov_deg=_Orbit.yfov, margin=1.1)
    # Yaw 0 looks from the photo's camera direction (the origin) towards the head.
    to_camera = -center / max(np.linalg.norm(center), 1e-9)
    return _Orbit(verts, center, distance, float(np.degrees(np.arctan2(to_camera[0], to_camera[2]))))


def _shade_surface(model, fit, tex) -> TexelSurface:
    return texel_surface(model, fit, _downsample_textures(tex, min(tex["albedo"].shape[0], SHADE_TEXELS)))


def _turntable_view(renderer, orbit: _Orbit, model, surface: TexelSurface, photo_light: dict, yaw: float) -> np.ndarray:
    """(S, S, 3) sRGB view at ``yaw`` degrees, the photo's light turned by the same yaw (fixed relative to the camera)."""
    pose = orbit.pose(yaw)
    colour = shade_texels(surface, pose[:3, 3], photo_light, rotation_deg=yaw)
    img, _ = renderer.render(orbit.verts, model.triangles, model.uvs, linear_to_srgb(colour), pose)
    return img


def _renders(tmp: Path, model, fit, tex, sh, envs, render_size):
    """Turntable views under the photo's lighting, and the photo-direction view relit by environment maps."""
    from .relight import tone_map_highlights
    from .render import TexturedRenderer

    rdir = tmp / "renders"
    rdir.mkdir(exist_ok=True)
    surface = _shade_surface(model, fit, tex)
    photo_light = sh_prefiltered(sh)
    orbit = _orbit(fit)
    out = {"views": [], "relit": []}
    with TexturedRenderer((render_size, render_size), yfov_deg=orbit.yfov, background=RENDER_BACKGROUND) as renderer:
        for yaw in TURNTABLE_YAWS:
            img = _turntable_view(renderer, orbit, model, surface, photo_light, yaw)
            write_image(rdir / f"turntable_yaw{yaw:+04.0f}.png", img)
            out["views"].append((yaw, img))
        pose = orbit.pose(0.0)
        facing = surface.normals[surface.normals[:, 2] > 0.3]
        env_surface = replace(surface, specular=surface.specular * np.float32(RELIGHT_SPECULAR_SCALE))
        for name, env in envs:
            colour = tone_map_highlights(shade_texels(env_surface, pose[:3, 3], envmap_prefiltered(env, facing)))
            img, _ = renderer.render(orbit.verts, model.triangles, model.uvs, linear_to_srgb(colour), pose)
            write_image(rdir / f"relit_{name}.png", img)
            out["relit"].append((name, img))
        backend = renderer.backend
    return out, backend


def _turntable(rdir: Path, model, fit, tex, sh, render_size: int, frames: int, palette_views: list[np.ndarray]) -> None:
    """``frames`` views evenly spaced over 360 degrees (frame 0 = the photo's direction) as
    rdir/turntable/frame_NNN.png and an endless GIF rdir/turntable.gif (TURNTABLE_FRAME_MS per frame).

    GIF frames share one 256-colour palette made from ``palette_views`` (the fixed turntable views,
    all sides of the head), so colours do not flicker from frame to frame; frames are dithered.
    """
    from PIL import Image

    from ..imageio import to_uint8
    from .render import TexturedRenderer

    fdir = rdir / "turntable"
    fdir.mkdir(parents=True, exist_ok=True)
    surface = _shade_surface(model, fit, tex)
    photo_light = sh_prefiltered(sh)
    orbit = _orbit(fit)
    palette = Image.fromarray(to_uint8(np.concatenate(palette_views, axis=1))).quantize(256, method=Image.Quantize.MEDIANCUT)
    gif = []
    with TexturedRenderer((render_size, render_size), yfov_deg=orbit.yfov, background=RENDER_BACKGROUND) as renderer:
        for k in range(frames):
            yaw = 360.0 * k / frames
            yaw = yaw - 360.0 if yaw > 180.0 else yaw  # (-180, 180]: frames at the fixed yaws repeat those views exactly
            img = _turntable_view(renderer, orbit, model, surface, photo_light, yaw)
            write_image(fdir / f"frame_{k:03d}.png", img, atomic=False)  # the output folder itself appears atomically
            gif.append(Image.fromarray(to_uint8(img)).quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG))
    gif[0].save(rdir / "turntable.gif", save_all=True, append_images=gif[1:], duration=TURNTABLE_FRAME_MS, loop=0)


@dataclass
class TexelSurface:
    """The covered texels of a size x size texture set, ready for shading.

    index : (N,) flat indices of the covered texels; positions (N, 3) camera-frame surface points;
    normals (N, 3) camera-frame unit normals (from the normal texture); albedo (N, 3) linear;
    specular (N,); nearest : (size * size,) flat index of each texel's nearest covered texel
    (so shaded textures are padded past the island borders and bilinear lookups never see black).
    """

    size: int
    index: np.ndarray
    positions: np.ndarray
    normals: np.ndarray
    albedo: np.ndarray
    specular: np.ndarray
    nearest: np.ndarray


def texel_surface(model, fit, tex: dict, uv_raster=None) -> TexelSurface:
    """Gather the covered texels of ``tex`` (albedo, normal in the model frame, specular) with their
    camera-frame positions; ``uv_raster`` is ``rasterize_uv`` at the textures' size if already known."""
    from scipy import ndimage

    from .raster import interpolate, rasterize_uv

    size = tex["albedo"].shape[0]
    r = rasterize_uv(model.uvs, model.triangles, size) if uv_raster is None else uv_raster
    index = np.flatnonzero(r.mask.reshape(-1))
    pos = interpolate(np.asarray(fit.vertices, dtype=np.float64), model.triangles, r).reshape(-1, 3)[index]
    normals = tex["normal"].reshape(-1, 3)[index] @ np.asarray(fit.rotation, dtype=np.float64).T
    _, (ri, ci) = ndimage.distance_transform_edt(~r.mask, return_indices=True)
    return TexelSurface(size=size, index=index, positions=pos.astype(np.float64), normals=normals.astype(np.float32),
                        albedo=tex["albedo"].reshape(-1, 3)[index].astype(np.float32),
                        specular=np.asarray(tex["specular"]).reshape(-1)[index].astype(np.float32),
                        nearest=(ri * size + ci).reshape(-1))


def shade_texels(surface: TexelSurface, eye: np.ndarray, prefiltered: dict, *, rotation_deg: float = 0.0) -> np.ndarray:
    """Linear colour (T, T, 3) of every texel (albedo x diffuse + specular x glossy Phong lobes,
    ``relight.shade_phong``) seen from ``eye`` (3,) in the camera frame; uncovered texels repeat the nearest covered one.
    ``rotation_deg`` turns the lighting about +y (``relight.phong_priors``)."""
    from .relight import shade_phong

    view = np.asarray(eye, dtype=np.float64) - surface.positions
    view = (view / np.maximum(np.linalg.norm(view, axis=-1, keepdims=True), 1e-12)).astype(np.float32)
    colour = shade_phong(surface.albedo[:, None], surface.normals[:, None], surface.specular[:, None], prefiltered, view[:, None],
                         rotation_deg=rotation_deg)
    full = np.zeros((surface.size * surface.size, 3), dtype=np.float32)
    full[surface.index] = colour[:, 0]
    return full[surface.nearest].reshape(surface.size, surface.size, 3)


def sh_prefiltered(sh: np.ndarray, height: int = 32) -> dict[int, np.ndarray]:
    """Phong-prefiltered lat-long maps {1, 16, 32, 64} of the photo's SH lighting.

    Exponent 1 is the SH shading itself (exact: the cosine lobe of an order-2 SH radiance);
    the glossy lobes prefilter the band-limited radiance behind it (negative lobes clipped).
    """
    from ..envmap import PHONG_EXPONENTS, latlong_directions, prefilter_phong, render_sh, sh_shading_to_radiance

    # Order-2 radiance is smooth: a 16-row grid is plenty for the glossy lobes (and 20x cheaper).
    d16, dh = latlong_directions(16), latlong_directions(height)
    radiance = _calm_dark_chroma(render_sh(d16, sh_shading_to_radiance(sh)), d16)
    pre = {int(e): prefilter_phong(radiance, e, height, source_height=16) for e in PHONG_EXPONENTS if e != 1}
    pre[1] = _calm_dark_chroma(render_sh(dh, sh), dh).astype(np.float32)
    return pre


def _calm_dark_chroma(values: np.ndarray, directions: np.ndarray, lo: float = 0.05, hi: float = 0.3) -> np.ndarray:
    """Clip a lat-long map of SH values (H, W, 3) at 0 and grey out its colour where it is dark.

    A photo's SH lighting is fitted on the lit, front side of the face; extrapolated to the back and
    underside its channels ring independently, and after clipping a dim value can be strongly tinted
    (the back of a turned head came out blue). Below ``hi`` of the brightest luminance the colour fades
    to the map's mean chromaticity (fully at ``lo``); the luminance itself is kept. ``directions``
    (H, W, 3) camera frame: towards the camera (+z), where the face's normals point, the colour is kept.
    """
    v = np.clip(values, 0.0, None)
    lum = v.mean(-1, keepdims=True)
    mean_chroma = v.reshape(-1, 3).sum(0) / max(float(v.sum()), 1e-12) * 3.0
    t = np.clip((lum / max(float(lum.max()), 1e-12) - lo) / (hi - lo), 0.0, 1.0)
    t = t * t * (3.0 - 2.0 * t)
    out = t * v + (1.0 - t) * lum * mean_chroma
    # The face constrains the light's colour only where its normals point; elsewhere keep it within
    # +-10 % of the mean chromaticity (the back of the turned head is lit by extrapolation alone).
    chroma = out / np.maximum(out.mean(-1, keepdims=True), 1e-12)
    calm = np.clip(chroma, mean_chroma * 0.9, mean_chroma * 1.1)
    front = np.clip((directions[..., 2:3] + 0.2) / 0.5, 0.0, 1.0)
    return out.mean(-1, keepdims=True) * (front * chroma + (1.0 - front) * calm)


def envmap_prefiltered(env: np.ndarray, exposure_normals: np.ndarray | None = None, height: int = 32,
                       mean_shading: float = RELIGHT_MEAN_SHADING) -> dict[int, np.ndarray]:
    """Phong-prefiltered lat-long maps of an environment, scaled (auto exposure) so that the diffuse
    shading E_1 of ``exposure_normals`` (N, 3) has mean luminance ``mean_shading``.

    The mean (not a high percentile) of the diffuse irradiance is what makes the face equally bright
    under a soft sky and under one hard lamp; the lamp's highlights are left to the tone mapping.
    """
    from ..envmap import PHONG_EXPONENTS, prefilter_phong, sample_latlong
    from .intrinsics import luminance

    # Speed (2 CPU cores, three maps per avatar): lobes from a 32 x 64 source, broad lobes (n <= 16)
    # stored at 16 x 32. Preview quality; the shipped maps are only 64 x 128 to begin with.
    pre = {int(e): prefilter_phong(env, e, height if e > 16 else height // 2, source_height=32) for e in PHONG_EXPONENTS}
    if exposure_normals is not None and len(exposure_normals):
        level = float(np.mean(luminance(sample_latlong(pre[1], exposure_normals))))
        scale = mean_shading / max(level, 1e-8)
        pre = {k: (v * scale).astype(np.float32) for k, v in pre.items()}
    return pre


def _downsample_textures(tex: dict, size: int) -> dict:
    import cv2

    out = {}
    for key in ("albedo", "normal", "specular"):
        t = tex[key]
        if t.shape[0] != size:
            t = cv2.resize(t, (size, size), interpolation=cv2.INTER_AREA)
        if key == "normal":
            t = t / np.maximum(np.linalg.norm(t, axis=-1, keepdims=True), 1e-12)
        out[key] = t.astype(np.float32)
    return out


def rerender_photo(model, fit, tex, sh, photo_hw, *, max_texels: int | None = None, image_raster=None) -> dict:
    """The photo re-rendered from the UV textures alone: albedo, normal and specular textures shaded by the
    estimated SH lighting, drawn with the fitted camera. Returns image (H, W, 3) sRGB and mask (H, W) bool.

    max_texels : shade textures downsampled to at most this size (speed); image_raster : the fitted mesh
    already rasterised in the photo.
    """
    import cv2

    from .raster import interpolate
    from .uv import rasterize_camera

    h, w = photo_hw
    T = tex["albedo"].shape[0]
    uv_raster = tex.get("uv_raster")
    if max_texels is not None and T > max_texels:
        tex, T, uv_raster = _downsample_textures(tex, max_texels), max_texels, None
    colour = shade_texels(texel_surface(model, fit, tex, uv_raster), np.zeros(3), sh_prefiltered(sh))
    r = image_raster if image_raster is not None else rasterize_camera(
        np.asarray(fit.vertices, dtype=np.float64), model.triangles, fit.focal_px, fit.principal_point, h, w)
    uv = interpolate(model.uvs, model.triangles, r)
    mx = (uv[..., 0] * T - 0.5).astype(np.float32)
    my = ((1.0 - uv[..., 1]) * T - 0.5).astype(np.float32)
    img = cv2.remap(linear_to_srgb(colour), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    img[~r.mask] = 0.0
    return {"image": img, "mask": r.mask}
