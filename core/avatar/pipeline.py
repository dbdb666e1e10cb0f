"""One photo -> relightable face avatar (PN-Relighting appearance path, no learned weights).

Stages (timed, in ``avatar.json``): load photo -> landmarks -> face model -> fit ->
rasterize the fitted mesh in the photo -> intrinsics (SH lighting, albedo, SfS normals,
specular) -> UV textures -> export (glb, textures, json) -> free-view renders -> turntable
(optional frames + GIF) -> preview.

Renders: every picture is made by the core's one renderer, :mod:`pnrelight.lightstage.render`
(Embree primary rays, Lambert + GGX, cast shadows), from the avatar in memory (:func:`avatar_mesh`:
the fitted mesh in the model frame with the baked textures). The render world is the model frame
(glTF's: y up, the face towards +z; the exported glb's frame), so environment maps light the
avatar as they light it in Blender. Novel views orbit the head centre in the photo's camera frame,
yaw 0 being the photo's viewing direction. The photo's SH lighting (camera frame) becomes a
non-negative lat-long light (:func:`photo_light`) cast by suns turned into the model frame. The
turntable views turn that light with the camera (as if the head turned on a turntable in front of
the photo's camera and lights), so every side of the head is seen under the light the face had in
the photo. With an expression basis the glb's base mesh is the neutral (identity-only) head and the
expressions are morph targets, weighted by the fitted ones.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_output_dir
from ..errors import InputError
from ..imageio import write_exr, write_image
from .color import linear_to_srgb, srgb_to_linear
from .folder import FORMAT_VERSION

STAGES = ("load", "landmarks", "face model", "fit", "rasterize", "intrinsics", "uv textures", "export", "renders", "turntable",
          "preview")
TURNTABLE_YAWS = (-90.0, -45.0, 0.0, 45.0, 90.0, 180.0)  # the fixed views of renders/ and preview.png (0 = photo camera)
MAX_TURNTABLE_FRAMES = 720
TURNTABLE_FRAME_MS = 80  # GIF delays are centiseconds: 80 ms = 12.5 fps
DEFAULT_RELIGHT_ENVMAPS = ("studio", "sunset", "forest")
RENDER_SIZE = 512
RENDER_BACKGROUND = 1.0  # white behind the head in the renders
RENDER_THREADS = min(2, os.cpu_count() or 1)  # render_environment threads (Embree and numpy release the GIL)
# The photo's light (photo_light): an 8 x 16 lat-long map, one sun per texel (~50 suns are lit).
PHOTO_LIGHT_ROWS = 8
PHOTO_LIGHT_SAMPLES = 4000  # face normals the light is fitted on
PHOTO_LIGHT_SPHERE = 0.1  # weight of the whole sphere against the face's normals in that fit
PHOTO_LIGHT_PRIOR = 0.01  # pull towards the clipped SH radiance: a spread-out light, not a few suns
# Relit renders: each environment map becomes ENV_SUN_ROWS x 2 ENV_SUN_ROWS suns (128: ~1 s a view,
# within 1/255 on average of 512 suns on the shipped maps), scaled so that the face's mean diffuse shading is
# RELIGHT_MEAN_SHADING -- the face has about the same mean brightness under every map -- then
# tone-mapped (relight.tone_map_highlights).
ENV_SUN_ROWS = 8
RELIGHT_MEAN_SHADING = 0.5


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
    for dist in ("numpy", "torch", "mediapipe", "opencv-contrib-python", "scipy", "scikit-image", "embreex"):
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
    light: np.ndarray  # (rows, 2 rows, 3) the photo's light for the renderer (photo_light), camera frame
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
        from .intrinsics import decompose, divide_by_shading

        # Outside the landmarks' face oval (hairline, ears, under the chin) the pixels are textured but not
        # trusted as skin: kept out of the light fit and the highlight/shadow logic, like eyes and lips.
        hull = landmark_hull_mask(face.points, (height, width))
        features = facial_feature_mask(face.points, (height, width))
        protect = ~hull if features is None else (features | ~hull)
        intr = decompose(image_linear, normals_img, face_mask, seed=seed, protect=protect)
        light = photo_light(intr.sh, intr.normals[face_mask])
        # The renderer casts that non-negative light, not the SH: the albedo is divided out of its shading
        # (+0.9 dB of re-render PSNR on the astronaut).
        shading = np.zeros(image_linear.shape, np.float32)
        shading[face_mask] = photo_light_shading(light, intr.normals[face_mask])
        intr = divide_by_shading(intr, image_linear, face_mask, shading, protect=protect)
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
                          textures=tex, light=light, mirror_fill=mirror, seed=seed)


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
            mesh = avatar_mesh(model, fit, tex)
            shadows = _shadows()
            renders, backend = _renders(tmp, mesh, fit, rec.light, envs, render_size, shadows)
            rerender = rerender_photo(model, fit, tex, rec.light, rec.photo.shape[:2], mesh=mesh)
            write_image(tmp / "renders" / "rerender_input.png", rerender["image"])
        with stage("turntable"):
            if turntable:
                _turntable(tmp / "renders", mesh, fit, rec.light, render_size, turntable, [img for _, img in renders["views"]],
                           shadows)
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
            "format_version": FORMAT_VERSION,
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
            "render": {"renderer": "pnrelight.lightstage.render", "shadows": bool(shadows),
                       "photo_light": {"rows": PHOTO_LIGHT_ROWS, "suns": int((rec.light.max(-1) > 0).sum()),
                                       "radiance": np.asarray(rec.light, dtype=float).round(6).tolist(),
                                       "meaning": "the SH lighting as non-negative lat-long radiance (one sun per texel), "
                                                  "camera frame; the re-render is unshadowed"},
                       "relit_suns_rows": ENV_SUN_ROWS, "relit_mean_shading": RELIGHT_MEAN_SHADING},
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
    # The tangent-space map is baked against the surface a viewer shows: the glb at its default morph weights,
    # i.e. the fitted mesh (baked on the neutral base, the smile's turned tangent frames turned the normals twice:
    # ~29 dB between the object- and tangent-space renders of the astronaut, 37 dB now).
    fitted = model_frame_mesh(model, fit) if morph else verts
    fitted_normals = vertex_normals(fitted, tris)
    n_tan = tangent_space_normal_map(tex["normal"], fitted, fitted_normals,
                                     vertex_tangents(fitted, fitted_normals, model.uvs, tris), model.uvs, tris,
                                     uv_raster=tex.get("uv_raster"))
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


# ----------------------------------------------------------------------------- renders (pnrelight.lightstage.render)


def camera_to_model(fit) -> np.ndarray:
    """(4, 4) rigid transform of photo-camera-frame points into the model frame, R^T (p - t)
    (the fit maps model to camera: p = R v + t). As a pose it is the photo camera in the render world."""
    R = np.asarray(fit.rotation, dtype=np.float64)
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ np.asarray(fit.translation, dtype=np.float64)
    return out


def avatar_mesh(model, fit, tex: dict) -> dict:
    """The avatar as the renderer's mesh (checked by ``lightstage.render.check_mesh``, so each view skips the check).

    The fitted mesh (expression included) in the model frame, which is the renderer's world (glTF's:
    metres, y up, the face towards +z), its uvs and the baked textures: albedo (T, T, 3) linear, the
    model-frame normal map, F0 = the specular map k_s (T, T) and the roughness the glb carries
    (``export.roughness_metallic_from_specular``): what ``load_subject`` reads back from the avatar
    folder, so the avatar renders alike from memory, from disk and (roughness) in Blender.
    """
    from ..lightstage.render import check_mesh
    from .export import roughness_metallic_from_specular
    from .face_model import vertex_normals

    verts = model_frame_mesh(model, fit)
    tris = np.asarray(model.triangles)
    spec = np.clip(np.asarray(tex["specular"], dtype=np.float32), 0.0, 1.0)
    return check_mesh({"vertices": verts, "triangles": tris, "uvs": model.uvs, "normals": vertex_normals(verts, tris),
                       "albedo": tex["albedo"], "normal_map": tex["normal"], "normal_map_space": "object",
                       "specular": spec, "roughness": roughness_metallic_from_specular(spec)[..., 1]})


def photo_light(sh: np.ndarray, normals: np.ndarray | None = None, rows: int = PHOTO_LIGHT_ROWS) -> np.ndarray:
    """The photo's order-2 SH lighting as light the renderer can cast: a non-negative lat-long
    radiance map (rows, 2 rows, 3) float32 in the photo's camera frame (Cycles' layout, ``envmap``).

    A shading SH fitted on one side of a face is no physical light: the radiance behind it
    (``sh_shading_to_radiance``) dips below zero, and clipping it changes its shading (on the
    astronaut's face by ~40 % in blue: a lilac face). So the map is fitted, by non-negative least
    squares per channel, to give back the SH shading at ``normals`` (N, 3), camera frame (the face's:
    where the photo constrains the light), with a weaker term over the whole sphere and a pull
    towards the clipped radiance that keeps the light spread out (soft shadows, lit sides), the dim
    extrapolated side's colour calmed as before (``_calm_dark_chroma``). Each texel is one sun
    (``environment_to_suns(map, rows)``), so the map's diffuse shading is exactly the renderer's.
    """
    from scipy.optimize import nnls

    from ..envmap import latlong_directions, render_sh, sh_shading_to_radiance, solid_angles

    sh = np.asarray(sh, dtype=np.float64)
    cells = latlong_directions(rows)
    omega = solid_angles(rows).reshape(-1)
    prior = _calm_dark_chroma(render_sh(cells, sh_shading_to_radiance(sh)), cells).reshape(-1, 3)
    face = np.zeros((0, 3)) if normals is None else np.asarray(normals, dtype=np.float64).reshape(-1, 3)
    face = face[np.isfinite(face).all(1) & (np.linalg.norm(face, axis=1) > 0.5)]
    face = face[:: max(1, len(face) // PHOTO_LIGHT_SAMPLES)]  # plenty for 2 x rows² unknowns
    face = face / np.linalg.norm(face, axis=1, keepdims=True)
    sphere = latlong_directions(16).reshape(-1, 3)
    dirs = np.concatenate([face, sphere])
    sphere_w = solid_angles(16).reshape(-1) / (4 * np.pi)
    weight = np.concatenate([np.full(len(face), 1.0 / max(len(face), 1)), sphere_w * (PHOTO_LIGHT_SPHERE if len(face) else 1.0)])
    target = _calm_dark_chroma(render_sh(dirs, sh), dirs)
    shading = np.clip(dirs @ cells.reshape(-1, 3).T, 0.0, None) * (omega / np.pi)  # one sun per texel: irradiance / pi
    sw = np.sqrt(weight)
    reg = np.sqrt(PHOTO_LIGHT_PRIOR * omega / (4 * np.pi))
    A = np.concatenate([shading * sw[:, None], np.diag(reg)])
    radiance = np.stack([nnls(A, np.concatenate([target[:, c] * sw, reg * prior[:, c]]), maxiter=20 * len(omega))[0]
                         for c in range(3)], axis=1)
    return radiance.reshape(rows, 2 * rows, 3).astype(np.float32)


def photo_light_shading(light: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Unshadowed diffuse shading (irradiance / pi) (..., 3) of a ``photo_light`` map at unit normals
    (..., 3) in the map's frame: exactly what its suns (one per texel) give in the renderer."""
    from ..lightstage.render import environment_to_suns

    return sun_shading(np.asarray(normals), environment_to_suns(light, light.shape[0]))


def photo_light_suns(light: np.ndarray, fit, yaw: float = 0.0) -> list[dict]:
    """Suns (model frame) of a camera-frame ``photo_light`` map, the light turned by ``yaw`` degrees about
    the camera's +y first (the turntable: the head turns in front of the photo's camera and lamps)."""
    from ..envmap import rotation_y
    from ..lightstage.render import environment_to_suns, rotate_suns

    return rotate_suns(environment_to_suns(light, light.shape[0]), np.asarray(fit.rotation, dtype=np.float64).T @ rotation_y(yaw))


def _calm_dark_chroma(values: np.ndarray, directions: np.ndarray, lo: float = 0.05, hi: float = 0.3) -> np.ndarray:
    """Clip SH values (..., 3) at 0 and grey out their colour where they are dark.

    A photo's SH lighting is fitted on the lit, front side of the face; extrapolated to the back and
    underside its channels ring independently, and after clipping a dim value can be strongly tinted
    (the back of a turned head came out blue). Below ``hi`` of the brightest luminance the colour fades
    to the values' mean chromaticity (fully at ``lo``); the luminance itself is kept. ``directions``
    (..., 3) camera frame: towards the camera (+z), where the face's normals point, the colour is kept.
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


@dataclass
class _Orbit:
    """Cameras of the fixed views and the turntable: orbiting the head centre ``distance`` away in the photo's
    camera frame (yaw 0 = the photo's viewing direction, turning about its +y), posed in the model frame."""

    to_model: np.ndarray  # (4, 4) camera_to_model(fit)
    center: np.ndarray  # (3,) camera frame
    distance: float
    base_yaw: float  # orbit yaw (degrees) of the photo's camera direction
    yfov: float = 25.0

    def pose(self, yaw: float) -> np.ndarray:
        from .render import orbit_pose

        return self.to_model @ orbit_pose(self.center, self.distance, self.base_yaw + yaw)

    def view(self, mesh: dict, yaw: float, size: int):
        """The G-buffer of the view at ``yaw`` degrees, (size, size) pixels."""
        from ..lightstage.render import prepare_view

        f = (size / 2) / np.tan(np.radians(self.yfov) / 2)
        K = np.array([[f, 0.0, size / 2], [0.0, f, size / 2], [0.0, 0.0, 1.0]])
        return prepare_view(mesh, self.pose(yaw), K, size)


def _orbit(fit) -> _Orbit:
    from .render import framing

    verts = np.asarray(fit.vertices, dtype=np.float64)
    center, distance = framing(verts, yfov_deg=_Orbit.yfov, margin=1.1)
    # Yaw 0 looks from the photo's camera direction (the origin) towards the head.
    to_camera = -center / max(np.linalg.norm(center), 1e-9)
    return _Orbit(camera_to_model(fit), center, distance, float(np.degrees(np.arctan2(to_camera[0], to_camera[2]))))


def _shadows() -> bool:
    # Without Embree the renderer's shadow maps cost ~1 s per sun: the renders then go unshadowed.
    from ..lightstage.render import embree_available

    return embree_available()


def _shade(gbuf, lights: list[dict], shadows: bool) -> np.ndarray:
    from ..lightstage.render import render_environment

    return render_environment(gbuf, lights, shadows=shadows, threads=RENDER_THREADS)


def _display(gbuf, linear: np.ndarray, tone_map: bool = False) -> np.ndarray:
    """(H, W, 3) sRGB of a linear render, RENDER_BACKGROUND where the mesh is not seen."""
    from .relight import tone_map_highlights

    img = linear_to_srgb(tone_map_highlights(linear) if tone_map else np.clip(linear, 0.0, 1.0))
    img[~gbuf.mask] = RENDER_BACKGROUND
    return img


def sun_shading(normals: np.ndarray, lights: list[dict], dtype=np.float32) -> np.ndarray:
    """Unshadowed diffuse shading (irradiance / pi) (..., 3) of unit normals (..., 3) under suns in their frame."""
    from ..lightstage.render import check_light

    if not lights:
        return np.zeros(normals.shape[:-1] + (3,), dtype)
    checked = [check_light(lt) for lt in lights]
    dirs = np.stack([c["direction"] for c in checked])
    rgb = np.stack([c["rgb"] for c in checked]).astype(np.float64)
    n = np.asarray(normals, dtype=np.float64).reshape(-1, 3)
    out = np.zeros((len(n), 3), np.float64)
    for a in range(0, len(n), 1 << 18):  # (chunk, suns) cosines: bounded memory on 1080p photos
        out[a:a + (1 << 18)] = np.clip(n[a:a + (1 << 18)] @ dirs.T, 0.0, None) @ rgb
    return (out / np.pi).reshape(normals.shape[:-1] + (3,)).astype(dtype)


def relight_exposure(gbuf, lights: list[dict]) -> float:
    """Scale for ``lights`` that gives the pixels facing the camera (n . v > 0.3) a mean diffuse shading
    (luminance of the unshadowed irradiance / pi) of RELIGHT_MEAN_SHADING."""
    from .intrinsics import luminance

    normals = gbuf.normal[gbuf.n_dot_v > 0.3]
    if not len(normals) or not lights:
        return 1.0
    level = float(np.mean(luminance(sun_shading(normals, lights, np.float64))))
    return RELIGHT_MEAN_SHADING / max(level, 1e-8)


def environment_suns(env: np.ndarray, gbuf) -> list[dict]:
    """The relit renders' lights: ``env`` (model frame = the render world) as ENV_SUN_ROWS x 2 ENV_SUN_ROWS suns,
    scaled by :func:`relight_exposure` for the view ``gbuf``."""
    from ..lightstage.render import environment_to_suns

    suns = environment_to_suns(env, ENV_SUN_ROWS)
    scale = relight_exposure(gbuf, suns)
    return [dict(s, strength=np.asarray(s["strength"], dtype=np.float64) * scale) for s in suns]


def _turntable_view(gbuf, fit, light: np.ndarray, yaw: float, shadows: bool) -> np.ndarray:
    """(S, S, 3) sRGB view at ``yaw`` degrees, the photo's light turned by the same yaw (fixed relative to the camera)."""
    return _display(gbuf, _shade(gbuf, photo_light_suns(light, fit, yaw), shadows))


def _renders(tmp: Path, mesh: dict, fit, light: np.ndarray, envs, render_size: int, shadows: bool):
    """Turntable views under the photo's light, and the photo-direction view relit by environment maps."""
    rdir = tmp / "renders"
    rdir.mkdir(exist_ok=True)
    orbit = _orbit(fit)
    out = {"views": [], "relit": []}
    front = None
    for yaw in TURNTABLE_YAWS:
        gbuf = orbit.view(mesh, yaw, render_size)
        front = gbuf if yaw == 0.0 else front
        img = _turntable_view(gbuf, fit, light, yaw, shadows)
        write_image(rdir / f"turntable_yaw{yaw:+04.0f}.png", img)
        out["views"].append((yaw, img))
    front = orbit.view(mesh, 0.0, render_size) if front is None else front
    for name, env in envs:
        img = _display(front, _shade(front, environment_suns(env, front), shadows), tone_map=True)
        write_image(rdir / f"relit_{name}.png", img)
        out["relit"].append((name, img))
    return out, front.backend


def _turntable(rdir: Path, mesh: dict, fit, light: np.ndarray, render_size: int, frames: int, palette_views: list[np.ndarray],
               shadows: bool) -> None:
    """``frames`` views evenly spaced over 360 degrees (frame 0 = the photo's direction) as
    rdir/turntable/frame_NNN.png and an endless GIF rdir/turntable.gif (TURNTABLE_FRAME_MS per frame).

    GIF frames share one 256-colour palette made from ``palette_views`` (the fixed turntable views,
    all sides of the head), so colours do not flicker from frame to frame; frames are dithered.
    """
    from PIL import Image

    from ..imageio import to_uint8

    fdir = rdir / "turntable"
    fdir.mkdir(parents=True, exist_ok=True)
    orbit = _orbit(fit)
    palette = Image.fromarray(to_uint8(np.concatenate(palette_views, axis=1))).quantize(256, method=Image.Quantize.MEDIANCUT)
    gif = []
    for k in range(frames):
        yaw = 360.0 * k / frames
        yaw = yaw - 360.0 if yaw > 180.0 else yaw  # (-180, 180]: frames at the fixed yaws repeat those views exactly
        img = _turntable_view(orbit.view(mesh, yaw, render_size), fit, light, yaw, shadows)
        write_image(fdir / f"frame_{k:03d}.png", img, atomic=False)  # the output folder itself appears atomically
        gif.append(Image.fromarray(to_uint8(img)).quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG))
    gif[0].save(rdir / "turntable.gif", save_all=True, append_images=gif[1:], duration=TURNTABLE_FRAME_MS, loop=0)


def photo_window_view(mesh: dict, fit, photo_hw):
    """The mesh (model frame) traced from the photo's fitted camera, over the window of the (H, W) photo
    the fitted head covers (a head is a small part of a 1080p photo). Returns (gbuf, (y0, y1, x0, x1)),
    or (None, None) when the head is outside the photo."""
    from ..lightstage.render import prepare_view
    from .camera import intrinsics_matrix, project

    h, w = photo_hw
    uv = project(fit.vertices, fit.focal_px, fit.principal_point)
    x0, y0 = np.clip(np.floor(uv.min(0)).astype(int) - 1, 0, (w, h))
    x1, y1 = np.clip(np.ceil(uv.max(0)).astype(int) + 1, 0, (w, h))
    if x1 <= x0 or y1 <= y0:
        return None, None
    K = intrinsics_matrix(fit.focal_px, np.asarray(fit.principal_point, dtype=np.float64) - (x0, y0))
    return prepare_view(mesh, camera_to_model(fit), K, (int(y1 - y0), int(x1 - x0))), (int(y0), int(y1), int(x0), int(x1))


def rerender_photo(model, fit, tex, light: np.ndarray, photo_hw, *, mesh: dict | None = None, shadows: bool = False) -> dict:
    """The photo re-rendered from the textures alone: the avatar (:func:`avatar_mesh`) seen by the fitted
    camera under the photo's light (:func:`photo_light`, camera frame). Returns image (H, W, 3) sRGB
    (0 outside the mesh) and mask (H, W) bool.

    Unshadowed by default: the SH light was fitted to the photo without shadows, so the albedo already
    holds the darkening under the brows, nose and lips that shadows would add a second time (on the
    astronaut shadows cost ~1 dB of re-render PSNR).
    """
    h, w = photo_hw
    mesh = avatar_mesh(model, fit, tex) if mesh is None else mesh
    img = np.zeros((h, w, 3), dtype=np.float32)
    mask = np.zeros((h, w), dtype=bool)
    gbuf, win = photo_window_view(mesh, fit, (h, w))
    if gbuf is None:
        return {"image": img, "mask": mask}
    y0, y1, x0, x1 = win
    window = linear_to_srgb(np.clip(_shade(gbuf, photo_light_suns(light, fit), shadows), 0.0, 1.0))
    img[y0:y1, x0:x1] = np.where(gbuf.mask[..., None], window, 0.0)
    mask[y0:y1, x0:x1] = gbuf.mask
    return {"image": img, "mask": mask}
