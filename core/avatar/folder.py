"""An avatar folder (``pnrelight avatar``'s output) as a host needs it: read, validated, and put in host terms.

Numpy and json only (no Pillow, scipy or torch): the Blender add-on imports this from its bundled wheel.
Textures are returned as paths (the host loads them with its own image reader).

Conventions, written down once (the Blender add-on and its tests use these functions, nothing else):

* **Model frame** = the glb's frame = the core's world (glTF: metres, +y up, the face towards +z).
  Blender's glTF importer turns it into Blender's world with (x, y, z) -> (x, -z, y): +Z up, the
  face towards -Y (``pnrelight.lightstage.layouts.to_blender``).
* **Photo camera**: avatar.json's ``camera`` maps model to camera, p_cam = R v + t, in OpenGL's camera
  frame (looks down -z, +y up), the same axes as a Blender camera object. Its pose in the model frame
  is ``pipeline.camera_to_model``; in Blender's world :func:`blender_camera`. Intrinsics (focal f and
  principal point (cx, cy) in pixels of the photo, pixel centres at +0.5) become a Blender lens with
  sensor fit on the longer side and a lens shift (the inverse of ``blender_addon/olat.intrinsics``).
* **Photo light**: ``photo_light`` (a non-negative lat-long map, camera frame) turned into the model
  frame: radiance at model direction d is the camera-frame map's at R d. Lat-long layout = Cycles'
  (``pnrelight.envmap``), so the map is a Blender world texture as it is.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError

FORMAT_VERSION = 1  # avatar.json's "format_version"; a folder without it is version 1
TEXTURE_FILES = {  # what the host's material needs, relative to the folder
    "albedo": "textures/albedo.png",  # sRGB base colour
    "normal_tangent": "textures/normal_tangent.png",  # glTF/MikkTSpace tangent-space normal map
    "specular": "textures/specular.png",  # k_s = F0 (16-bit)
    "roughness_metallic": "textures/roughness_metallic.png",  # glTF: G = roughness, B = metalness
}
WORLD_LIGHT_ROWS = 32  # rows of the "match photo lighting" world texture (64 x 32: smooth, tiny)

# Expression shape keys grouped by their ARKit name (prefix, case-insensitive), in panel order.
EXPRESSION_GROUPS = (("eyes", ("eye",)), ("brows", ("brow",)), ("jaw", ("jaw",)),
                     ("mouth", ("mouth", "cheek", "nose", "tongue")))

# Skin subsurface (Blender's Principled BSDF: Subsurface Radius x Subsurface Scale = the mean free path
# per channel in metres). Typical light skin: red scatters furthest (~ a few mm), blue least.
SKIN_RADIUS_MM = np.array([3.7, 1.4, 0.7])
SKIN_REFERENCE_ALBEDO = np.array([0.60, 0.36, 0.28])  # linear albedo of light skin the radii are for
SUBSURFACE_WEIGHT_RANGE = (0.3, 1.0)

# Parts of the ICT head's UV atlas (build_ict_face_model.ATLAS_CELLS) that get their own material.
PART_CELLS = {"eyes": ("sclera", "iris"), "teeth": ("teeth", "gums_tongue")}


@dataclass
class AvatarFolder:
    """A validated avatar folder. Paths are absolute; ``info`` is avatar.json as read."""

    folder: Path
    info: dict
    format_version: int
    glb: Path
    textures: dict  # name -> Path (TEXTURE_FILES)
    image_size: tuple  # (width, height) of the photo
    expression_names: list = field(default_factory=list)
    expression_weights: np.ndarray = field(default_factory=lambda: np.zeros(0))  # fitted, one per name
    photo: Path | None = None  # the source photo when it still exists
    model_name: str = ""

    @property
    def rotation(self) -> np.ndarray:
        """(3, 3) model -> photo camera rotation R (p_cam = R v + t)."""
        return np.asarray(self.info["camera"]["rotation"], dtype=np.float64)

    @property
    def translation(self) -> np.ndarray:
        return np.asarray(self.info["camera"]["translation"], dtype=np.float64)


def read_avatar_folder(path: str | os.PathLike) -> AvatarFolder:
    """Read and check an avatar folder (or its avatar.json). Raises InputError (one line: problem and fix)
    for a missing folder or file, unreadable JSON, a newer format version, a glb without UVs or a bad camera."""
    p = Path(path)
    folder = p.parent if p.name == "avatar.json" or p.suffix.lower() == ".json" else p
    js = folder / "avatar.json"
    if not folder.is_dir():
        raise InputError(f"avatar folder not found: {folder} (give the folder `pnrelight avatar` wrote, or its avatar.json)")
    if not js.is_file():
        raise InputError(f"{folder} has no avatar.json (give the folder `pnrelight avatar` wrote)")
    try:
        info = json.loads(js.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{js} is not readable JSON ({type(exc).__name__}; rebuild the avatar with `pnrelight avatar`)") from None
    if not isinstance(info, dict):
        raise InputError(f"{js} does not hold an avatar description (rebuild the avatar with `pnrelight avatar`)")
    version = info.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputError(f"{js} has format_version {version!r}, not a positive integer (rebuild the avatar)")
    if version > FORMAT_VERSION:
        raise InputError(f"{js} is avatar format {version}, newer than this pnrelight reads ({FORMAT_VERSION}): "
                         "update the add-on / pnrelight")
    glb = folder / "avatar.glb"
    if not glb.is_file():
        raise InputError(f"{folder} has no avatar.glb (rebuild the avatar with `pnrelight avatar`)")
    _check_glb_uvs(glb)
    textures = {}
    for name, rel in TEXTURE_FILES.items():
        tp = folder / rel
        if not tp.is_file() or tp.stat().st_size == 0:
            raise InputError(f"avatar texture {rel} is missing in {folder} (rebuild the avatar with `pnrelight avatar`)")
        textures[name] = tp
    cam = info.get("camera")
    try:
        R = np.asarray(cam["rotation"], dtype=np.float64)
        t = np.asarray(cam["translation"], dtype=np.float64)
        f = float(cam["focal_px"])
        pp = np.asarray(cam["principal_point"], dtype=np.float64)
        w, h = (int(x) for x in info["image_size"])
    except (TypeError, KeyError, ValueError):
        raise InputError(f"{js} lacks a valid camera or image_size (rebuild the avatar with `pnrelight avatar`)") from None
    if (R.shape != (3, 3) or t.shape != (3,) or pp.shape != (2,) or not np.isfinite(np.concatenate([R.ravel(), t, pp])).all()
            or not np.allclose(R @ R.T, np.eye(3), atol=1e-3) or not f > 0 or w < 1 or h < 1):
        raise InputError(f"{js} has a broken camera (rotation, translation, focal_px, principal_point): rebuild the avatar")
    fit = info.get("fit") or {}
    names = list(fit.get("expression_names") or [])
    weights = np.zeros(len(names))
    expr = np.asarray(fit.get("expression") or [], dtype=np.float64).reshape(-1)[: len(names)]
    weights[: len(expr)] = expr
    photo = _find_photo(folder, info.get("photo"))
    return AvatarFolder(folder=folder.resolve(), info=info, format_version=version, glb=glb.resolve(),
                        textures={k: v.resolve() for k, v in textures.items()}, image_size=(w, h),
                        expression_names=names, expression_weights=weights, photo=photo,
                        model_name=str((info.get("model") or {}).get("name", "")))


def _find_photo(folder: Path, recorded) -> Path | None:
    """The source photo: where avatar.json says (absolute, or relative to the folder), else None."""
    if not recorded:
        return None
    p = Path(recorded)
    for cand in (p, folder / p, folder / p.name):
        if cand.is_file():
            return cand.resolve()
    return None


def _check_glb_uvs(glb: Path) -> None:
    """InputError unless the glb is a glTF binary whose mesh primitives all carry TEXCOORD_0."""
    from ..formats.glb import read_glb_json

    try:
        gltf = read_glb_json(glb)
    except (OSError, ValueError):
        raise InputError(f"{glb} is not a readable glTF binary (rebuild the avatar with `pnrelight avatar`)") from None
    prims = [p for m in gltf.get("meshes", []) for p in m.get("primitives", [])]
    if not prims:
        raise InputError(f"{glb} holds no mesh (rebuild the avatar with `pnrelight avatar`)")
    if any("TEXCOORD_0" not in p.get("attributes", {}) for p in prims):
        raise InputError(f"{glb} has a mesh without UVs: its textures cannot be mapped (rebuild the avatar with `pnrelight avatar`)")


# ----------------------------------------------------------------------------- lighting


def photo_light_map(avatar: AvatarFolder) -> np.ndarray:
    """The photo's light as the renderer casts it: ``pipeline.photo_light`` (rows, 2 rows, 3), camera frame.

    Read from avatar.json (``render.photo_light.radiance``, written since format 1 of this module); for
    folders written before, refitted from the SH coefficients over the whole sphere (needs scipy), else
    the clipped SH radiance.
    """
    stored = ((avatar.info.get("render") or {}).get("photo_light") or {}).get("radiance")
    if stored is not None:
        light = np.asarray(stored, dtype=np.float32)
        if light.ndim == 3 and light.shape[2] == 3 and light.shape[1] == 2 * light.shape[0] and np.isfinite(light).all():
            return np.clip(light, 0.0, None)
    sh = np.asarray((avatar.info.get("sh_lighting") or {}).get("coefficients", np.zeros((9, 3))), dtype=np.float64)
    if sh.shape != (9, 3) or not np.isfinite(sh).all():
        raise InputError(f"{avatar.folder / 'avatar.json'} has no photo light or SH lighting (rebuild the avatar)")
    try:
        from .pipeline import photo_light

        return photo_light(sh)
    except ImportError:  # no scipy (Blender's Python): the clipped radiance of the same SH
        from ..envmap import latlong_directions, render_sh, sh_shading_to_radiance
        from .pipeline import PHOTO_LIGHT_ROWS

        return np.clip(render_sh(latlong_directions(PHOTO_LIGHT_ROWS), sh_shading_to_radiance(sh)), 0.0, None).astype(np.float32)


def world_light_map(light_camera: np.ndarray, rotation: np.ndarray, height: int = WORLD_LIGHT_ROWS) -> np.ndarray:
    """A camera-frame lat-long light (h, 2h, 3) turned into the model frame = the world: (height, 2 height, 3) float32.

    Radiance at model direction d is the camera-frame map's at R d (R: model -> camera, avatar.json's
    camera rotation), sampled bilinearly, then scaled per channel so the total power (the integral of
    radiance over the sphere) is the source's: the world lights the head as the photo's light does.
    """
    from ..envmap import latlong_directions, sample_latlong, solid_angles

    light = np.clip(np.asarray(light_camera, dtype=np.float64), 0.0, None)
    R = np.asarray(rotation, dtype=np.float64)
    dirs = latlong_directions(height)
    out = sample_latlong(light, dirs @ R.T).astype(np.float64)
    src_power = np.einsum("hwc,hw->c", light, solid_angles(light.shape[0], light.shape[1]))
    out_power = np.einsum("hwc,hw->c", out, solid_angles(height))
    out *= np.where(out_power > 0, src_power / np.maximum(out_power, 1e-30), 0.0)
    return out.astype(np.float32)


# ----------------------------------------------------------------------------- camera


def blender_camera(avatar: AvatarFolder) -> dict:
    """The photo's camera for Blender: lens_mm, sensor_mm (width = height), sensor_fit, shift_x, shift_y,
    resolution (width, height) and matrix_world (4, 4), Blender world (the avatar object unmoved)."""
    from types import SimpleNamespace

    from ..lightstage.layouts import pose_to_blender
    from .pipeline import camera_to_model

    cam = avatar.info["camera"]
    w, h = avatar.image_size
    f = float(cam["focal_px"])
    cx, cy = (float(x) for x in cam["principal_point"])
    fit = "HORIZONTAL" if w >= h else "VERTICAL"
    sensor = 36.0
    big = max(w, h)
    pose = camera_to_model(SimpleNamespace(rotation=avatar.rotation, translation=avatar.translation))
    return {"lens_mm": f * sensor / (w if fit == "HORIZONTAL" else h), "sensor_mm": sensor, "sensor_fit": fit,
            "shift_x": (w / 2.0 - cx) / big, "shift_y": (cy - h / 2.0) / big, "resolution": (int(w), int(h)),
            "matrix_world": pose_to_blender(pose)}


def photo_intrinsics(avatar: AvatarFolder, scale: float = 1.0) -> np.ndarray:
    """(3, 3) K of the photo camera for an image ``scale`` times the photo's size (pixel centres at +0.5)."""
    from .camera import intrinsics_matrix

    cam = avatar.info["camera"]
    return intrinsics_matrix(float(cam["focal_px"]) * scale, np.asarray(cam["principal_point"], dtype=np.float64) * scale)


# ----------------------------------------------------------------------------- material parameters


def subsurface_from_albedo(albedo_linear: np.ndarray) -> dict:
    """Skin subsurface for a Principled BSDF from the albedo texture (T, T, 3) linear.

    The skin colour is the median of the texels that look like skin (red over blue, neither black nor
    white). Radius (mm, per channel) = SKIN_RADIUS_MM x skin / SKIN_REFERENCE_ALBEDO (a channel that
    comes back brighter has travelled further), clipped to 0.5..2 times the reference; weight =
    the skin's luminance over the reference's, clipped to SUBSURFACE_WEIGHT_RANGE (dark, melanin-rich
    skin absorbs near the surface: less visible scattering). Returns weight, radius (3,) and scale
    (metres per radius unit, 0.001: the radius is in mm).
    """
    from .intrinsics import LUMA

    luma = LUMA.astype(np.float64)
    a = np.asarray(albedo_linear, dtype=np.float64).reshape(-1, 3)
    lum = a @ luma
    skin = a[(a[:, 0] > a[:, 2]) & (lum > 0.02) & (lum < 0.8)]
    colour = np.median(skin, axis=0) if len(skin) >= 16 else SKIN_REFERENCE_ALBEDO
    ratio = np.clip(colour / SKIN_REFERENCE_ALBEDO, 0.5, 2.0)
    weight = float(np.clip((colour @ luma) / float(SKIN_REFERENCE_ALBEDO @ luma), *SUBSURFACE_WEIGHT_RANGE))
    return {"weight": weight, "radius": (SKIN_RADIUS_MM * ratio).tolist(), "scale": 0.001, "skin_albedo": colour.tolist()}


def expression_groups(names) -> dict:
    """ARKit expression names -> {"eyes": [...], "brows": [...], "jaw": [...], "mouth": [...], "other": [...]}
    (EXPRESSION_GROUPS; cheek, nose and tongue shapes go with the mouth; names keep their order)."""
    groups = {g: [] for g, _ in EXPRESSION_GROUPS}
    groups["other"] = []
    for name in names:
        low = str(name).lower()
        group = next((g for g, prefixes in EXPRESSION_GROUPS if low.startswith(prefixes)), "other")
        groups[group].append(name)
    return groups


def uv_parts(uv: np.ndarray, model_name: str) -> np.ndarray:
    """Material part of faces from their UV centroid (N, 2) (v up, Blender's UV): 0 skin, 1 eyes, 2 teeth.

    The ICT head's atlas has a cell per part (``build_ict_face_model.ATLAS_CELLS``); other face models
    are skin throughout.
    """
    uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    out = np.zeros(len(uv), dtype=np.int8)
    if not str(model_name).startswith("ict"):
        return out
    from .build_ict_face_model import ATLAS_CELLS

    for label, part in ((1, "eyes"), (2, "teeth")):
        for cell in PART_CELLS[part]:
            u0, v0, size = ATLAS_CELLS[cell]
            inside = (uv[:, 0] >= u0) & (uv[:, 0] < u0 + size) & (uv[:, 1] >= v0) & (uv[:, 1] < v0 + size)
            out[inside] = label
    return out
