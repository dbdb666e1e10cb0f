"""One portrait photo relit under a new HDR environment or light, with self-shadows (analytic path).

PN-Relighting relights the photo from Phong priors of the new environment; it names its own
limitation, no self-shadowing, and suggests to "eliminate shadows from the image and subsequently
add them back". This module does that with the fitted full head and the project's one renderer
(:mod:`pnrelight.lightstage.render`):

* **Head** (the fitted head's pixels inside the person mask): the head is traced from the photo's
  camera (:func:`pipeline.photo_window_view`). The photo's light is refitted with the head's shadows
  (:func:`shadowed_photo_light`: the SH light's 8 x 16 cells as suns cast with shadow rays, strengths
  fitted to the face's skin), giving the old diffuse shading D_old with the head's cast shadows and
  occlusion; the new light's suns are cast the same way (D_new). The albedo is
  A = (photo - S_old) / D_old: dividing by the *shadowed* old shading takes the photo's own shadows
  out (where D_old is too dark to divide by, the avatar's texture albedo takes over). Specular: the
  refit models the skin as diffuse plus the renderer's GGX lobe and picks the head's one specular
  level F0 with the light (``SPECULAR_LEVELS``); S_old and S_new are that lobe under the old and the
  new light, cast with shadows. PN-Relighting's Phong priors (the map prefiltered at
  exponents 1, 16, 32, 64: :func:`phong_priors`) are the alternative ``specular="phong"``: k_s x the
  16/32/64 lobes (``intrinsics.SPECULAR_LOBE_WEIGHTS``, the yardstick k_s is measured with) at the
  mirror direction. The specular level is skin's: pixels whose albedo does not look like the face's
  skin (a clothed neck, hair over the skull, pupils) get none (:func:`skin_likeness`).
  Relit head: A x D_new + S_new + k x (photo - A x D_old - S_old_model), k = D_new / D_old: what the
  model misses of the photo (highlights it places elsewhere, clipped albedo, the texture's stand-in)
  is carried over like the diffuse light, so the photo under its own light comes back unchanged.
* **Rest of the person** (hair, neck, shoulders, clothes: the person mask outside the head):
  ratio relighting, photo x D_new / D_old with normals of an inflated surface over the mask
  (:func:`proxy_normals`), unshadowed; blended into the head with a feathered mask.
* **Background**: kept (``keep_background``) or replaced by the environment seen from the camera;
  the person mask is first snapped to the photo's edges (:func:`snap_mask_to_edges`), or the old
  background shows as a rim around the person.

Frames: lights and environment maps are given in the photo's camera frame (x right, y up, +z
towards the camera: a map's u = 0.75 lies behind the camera, in front of the face, as in
``docs/lightstage.md``); ``rotate`` turns the map about +y (``envmap.rotation_y``).
Exposure: the absolute brightness of a photo's light is unknown (albedo and light share a scale),
so the new light is scaled to give the face the photo's mean diffuse shading, times 2^exposure.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..errors import InputError
from .color import linear_to_srgb, srgb_to_linear
from .intrinsics import _smoothstep
from .pipeline import ENV_SUN_ROWS, RENDER_THREADS, sun_shading

DEFAULT_TEXTURE_SIZE = 512  # the head's UV textures when fitted here (the head covers a few hundred pixels of a photo)
PHONG_HEIGHT = 32  # rows of the Phong-prefiltered maps
TRUST_SHADING = (0.04, 0.15)  # D_old / its median on the head: below, the albedo comes from the texture, above from the photo
MASK_SNAP_RADIUS = 0.005  # snap_mask_to_edges: guided-filter window, fraction of the photo's larger side
FEATHER = 0.04  # head/body blend: feather width as a fraction of the head's size in the image
PROXY_SMOOTH = 0.03  # proxy surface: Gaussian sigma as a fraction of the person's size
STRAY_REGION_FRACTION = 0.01  # drop_stray_regions: islands of the person mask below this x the largest
FOREGROUND_WIDTH = 0.01  # unmix_soft_edge: how far (x the image's larger side) colours are spread into the soft edge
BODY_RATIO_MAX = 6.0  # relit / photo on the body: larger ratios come from an unlit photo side, not from light
LIGHT_PRIOR = 0.03  # shadowed_photo_light: pull of each cell towards the SH light, relative to the mean cell energy


@dataclass
class PhotoHead:
    """The fitted head in a photo's camera: everything relighting needs (see :func:`fit_photo_head`)."""

    photo: np.ndarray  # (H, W, 3) sRGB float32
    person: np.ndarray  # (H, W) float32 soft person mask in [0, 1]
    mesh: dict  # the avatar (model frame), checked by lightstage.render.check_mesh
    fit: object  # rotation (3, 3) model -> camera, translation (3,), focal_px, principal_point (2,), vertices (V, 3) camera frame
    sh: np.ndarray  # (9, 3) the photo's shading SH, camera frame
    light: np.ndarray  # (rows, 2 rows, 3) the photo's light (pipeline.photo_light), camera frame
    landmarks: np.ndarray | None  # (N, 2+) detected landmarks in pixels (None when loaded from an avatar folder)
    source: str  # "fit" or the avatar folder
    seed: int
    face: np.ndarray | None = None  # (H, W) bool skin of the face (landmark oval without eyes, brows, lips): the light is fitted there
    timings: dict = field(default_factory=dict)


def fit_photo_head(photo, *, seed: int = 0, texture_size: int = DEFAULT_TEXTURE_SIZE, face_index: int | None = None,
                   face_model_path=None) -> PhotoHead:
    """Fit the full head to a photo (path or (H, W, 3) sRGB array): ``pipeline.reconstruct``, nothing written.

    Raises InputError (one line) for an unreadable photo or no usable face.
    """
    from .pipeline import avatar_mesh, reconstruct

    t0 = time.perf_counter()
    rec = reconstruct(photo, face_index=face_index, face_model_path=face_model_path, texture_size=texture_size, seed=seed)
    t1 = time.perf_counter()
    mesh = avatar_mesh(rec.model, rec.fit, rec.textures)
    return PhotoHead(photo=rec.photo, person=person_alpha(rec.photo, _soften(rec.person_mask)), mesh=mesh, fit=rec.fit, sh=np.asarray(rec.intrinsics.sh),
                     light=rec.light, landmarks=np.asarray(rec.face.points), source="fit", seed=int(seed),
                     face=face_skin_region(rec.face.points, rec.photo.shape[:2]),
                     timings={"fit": round(t1 - t0, 3), "mesh": round(time.perf_counter() - t1, 3)})


def load_photo_head(avatar_dir, photo, *, seed: int = 0) -> PhotoHead:
    """The head of an avatar folder made by ``pnrelight avatar`` from this photo (no refit).

    Reads avatar.json (camera, SH lighting, image size) and the avatar through
    ``lightstage.render.load_subject``; the person mask is segmented from ``photo`` again.
    Raises InputError when the folder is not an avatar or was made from a photo of another size.
    """
    import json

    from ..lightstage.render import check_mesh, load_subject
    from .landmarks import person_mask
    from .photo import as_rgb, load_photo
    from .pipeline import photo_light

    t0 = time.perf_counter()
    folder = Path(avatar_dir)
    meta = folder / "avatar.json"
    if not meta.is_file():
        raise InputError(f"{folder} is not an avatar folder: no avatar.json (make one with `pnrelight avatar PHOTO -o {folder}`)")
    try:
        info = json.loads(meta.read_text())
        cam = info["camera"]
        R = np.asarray(cam["rotation"], dtype=np.float64).reshape(3, 3)
        t = np.asarray(cam["translation"], dtype=np.float64).reshape(3)
        focal = float(cam["focal_px"])
        pp = np.asarray(cam["principal_point"], dtype=np.float64).reshape(2)
        sh = np.asarray(info["sh_lighting"]["coefficients"], dtype=np.float64).reshape(9, 3)
        width, height = (int(x) for x in info["image_size"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{meta} is not a valid avatar.json ({type(exc).__name__}: {exc}); rebuild the avatar") from None
    image = as_rgb(photo, name="image") if isinstance(photo, np.ndarray) else load_photo(photo)
    if image.shape[:2] != (height, width):
        raise InputError(f"the avatar {folder} was made from a {width}x{height} photo, this one is "
                         f"{image.shape[1]}x{image.shape[0]} (give the avatar's own photo, or drop --avatar to refit)")
    mesh = check_mesh(load_subject(folder))
    verts_cam = mesh["vertices"].astype(np.float64) @ R.T + t
    fit = SimpleNamespace(rotation=R, translation=t, focal_px=focal, principal_point=pp, vertices=verts_cam)
    person = person_mask(image)
    # The photo's light as the renderer casts it, fitted on the head's normals that face the camera.
    normals = _vertex_normals_cam(mesh, R)
    light = photo_light(sh, normals[normals[:, 2] > 0.3])
    face = None
    box = info.get("landmarks", {}).get("bbox_px")
    if box is not None and len(box) == 4:  # the face's box: its inscribed ellipse, a little smaller
        import cv2

        x0, y0, x1, y1 = (float(v) for v in box)
        face = np.zeros((height, width), np.uint8)
        cv2.ellipse(face, (int(round((x0 + x1) / 2)), int(round((y0 + y1) / 2))),
                    (max(1, int(0.4 * (x1 - x0))), max(1, int(0.42 * (y1 - y0)))), 0, 0, 360, 1, -1)
        face = face.astype(bool)
    return PhotoHead(photo=image, person=person_alpha(image, person), mesh=mesh, fit=fit, sh=sh, light=light, landmarks=None,
                     source=str(folder), seed=int(seed), face=face, timings={"load_avatar": round(time.perf_counter() - t0, 3)})


def face_skin_region(points_px: np.ndarray, shape) -> np.ndarray:
    """(H, W) bool: the landmarks' face oval without eyes, brows and lips (``pipeline`` masks)."""
    from .pipeline import facial_feature_mask, landmark_hull_mask

    hull = landmark_hull_mask(points_px, shape)
    features = facial_feature_mask(points_px, shape)
    return hull if features is None else hull & ~features


def _vertex_normals_cam(mesh: dict, R: np.ndarray) -> np.ndarray:
    return np.asarray(mesh["normals"], dtype=np.float64) @ R.T


def person_alpha(photo: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(H, W) float32: the segmenter's soft person mask (H, W) without stray islands, snapped to the photo's edges."""
    return snap_mask_to_edges(photo, drop_stray_regions(mask))


def drop_stray_regions(mask: np.ndarray, min_fraction: float = STRAY_REGION_FRACTION) -> np.ndarray:
    """(H, W) float32: the soft person mask (H, W) in [0, 1] without its stray islands.

    The segmenter also marks bits of the background (a flag's red stripes behind the astronaut); they
    would be relit and kept over a new background as floating specks. Regions of ``mask`` > 0.02 (8-connected)
    smaller than ``min_fraction`` of the largest are set to 0; the person and anyone of similar size stay.
    """
    import cv2

    m = np.clip(np.asarray(mask, np.float32), 0.0, 1.0)
    count, labels, stats, _ = cv2.connectedComponentsWithStats((m > 0.02).astype(np.uint8), connectivity=8)
    if count <= 2:
        return m
    area = stats[1:, cv2.CC_STAT_AREA]
    small = np.flatnonzero(area < min_fraction * area.max()) + 1
    return np.where(np.isin(labels, small), np.float32(0.0), m).astype(np.float32)


def snap_mask_to_edges(photo: np.ndarray, mask: np.ndarray, radius: float = MASK_SNAP_RADIUS, eps: float = 1e-3) -> np.ndarray:
    """(H, W) float32: a soft person mask (H, W) in [0, 1] moved onto the photo's (H, W, 3) edges.

    The segmenter works at 256 px, so at 1080p its edge lands several pixels off the person; a
    replaced background then shows a rim of the old one. A guided filter (He et al. 2010: per window
    the mask as a linear function of the photo's luminance, windows of ``radius`` x the photo's larger
    side) follows the photo's edges, within the band where the mask is uncertain: far inside and far
    outside stay 1 and 0.
    """
    import cv2

    from .intrinsics import luminance

    m = np.clip(np.asarray(mask, np.float32), 0.0, 1.0)
    r = max(2, int(round(radius * max(m.shape))))
    k = (2 * r + 1, 2 * r + 1)
    guide = luminance(np.clip(np.asarray(photo, np.float32), 0.0, 1.0)).astype(np.float32)
    box = lambda x: cv2.boxFilter(x, -1, k, borderType=cv2.BORDER_REFLECT)  # noqa: E731
    mean_i, mean_p = box(guide), box(m)
    a = (box(guide * m) - mean_i * mean_p) / (box(guide * guide) - mean_i * mean_i + eps)
    b = mean_p - a * mean_i
    snapped = np.clip(box(a) * guide + box(b), 0.0, 1.0)
    band = cv2.dilate(((m > 0.02) & (m < 0.98)).astype(np.uint8), np.ones(k, np.uint8)).astype(bool)
    return np.where(band, snapped, m).astype(np.float32)


def unmix_soft_edge(photo_lin: np.ndarray, alpha: np.ndarray, width: float = FOREGROUND_WIDTH) -> tuple[np.ndarray, np.ndarray]:
    """The person's own colour F (H, W, 3) and a tighter alpha (H, W) under the soft edge of ``alpha`` (H, W) in [0, 1].

    In the mask's soft band a pixel is I = a F + (1 - a) B, the old background showing through (hair, a
    blurred edge); composited over a new background as it is, B shows as a rim of the old background's
    colour, and the segmenter's 256 px mask is softer and wider than the person (a fringe of the
    person's colour around them). B is the photo's background (alpha < 0.02), F the person's colour
    (alpha > 0.98), each spread into the band by normalised Gaussians (``width`` x the image's larger
    side, then 4 and 16 times wider where nothing is that close). Where F and B differ enough in colour,
    a = the projection of I - B on F - B (the colour line between them) replaces the segmenter's; then
    F = (I - (1 - a) B) / a where a is large enough to divide by, blended (a 0.3 -> 0.8) into the
    spread person colour. Outside the band both are returned as given. ``photo_lin`` (H, W, 3) linear RGB.
    """
    from .intrinsics import _normalized_convolution

    img = np.asarray(photo_lin, np.float32)
    a = np.clip(np.asarray(alpha, np.float32), 0.0, 1.0)
    sigma = max(1.0, width * max(a.shape))
    band = (a > 0.002) & (a < 0.98)
    if not band.any() or not (a < 0.02).any() or not (a > 0.98).any():
        return img.copy(), a.copy()

    def spread(where: np.ndarray) -> np.ndarray:
        # Normalised Gaussians from wide to narrow: the narrowest with enough support wins, so colours
        # come from close by and still reach across a band wider than one kernel.
        w = where.astype(np.float32)
        out = img.copy()
        for k in (16.0, 4.0, 1.0):
            avg, den = _normalized_convolution(img, w, min(k * sigma, min(a.shape) / 4.2))  # wide ones on a reduced grid
            trust = np.clip(den / 0.05, 0.0, 1.0)[..., None]
            out = trust * avg + (1.0 - trust) * out
        return out

    back, inner = spread(a < 0.02), spread(a > 0.98)
    diff = inner - back
    contrast = np.sqrt(np.sum(diff * diff, axis=-1))
    on_line = np.clip(np.sum((img - back) * diff, axis=-1) / np.maximum(contrast * contrast, 1e-8), 0.0, 1.0)
    trust = _smoothstep(contrast, 0.04, 0.12)  # linear RGB distance: below it the colours cannot tell them apart
    a_new = np.where(band, trust * on_line + (1.0 - trust) * a, a)
    ac = a_new[..., None]
    unmixed = np.clip((img - (1.0 - ac) * back) / np.maximum(ac, 1e-3), 0.0, None)
    w = _smoothstep(a_new, 0.3, 0.8)[..., None]
    fg = np.where(band[..., None], w * unmixed + (1.0 - w) * inner, img)
    return fg.astype(np.float32), a_new.astype(np.float32)


def _soften(mask: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    import cv2

    return np.clip(cv2.GaussianBlur(np.asarray(mask, np.float32), (0, 0), sigma), 0.0, 1.0)


# ----------------------------------------------------------------------------- lights (camera frame)


def environment_lights(env: np.ndarray, rotate_deg: float = 0.0, rows: int = ENV_SUN_ROWS) -> list[dict]:
    """A lat-long map (camera frame) turned by ``rotate_deg`` about +y as rows x 2 rows suns (camera frame).

    Each cell's sun points at its radiance-weighted mean direction (``environment_to_suns``): the
    map's dominant lights keep their direction, and casting every sun with shadow rays gives the
    cast shadows of the bright lights and the ambient occlusion of the rest.
    """
    from ..envmap import rotation_y
    from ..lightstage.render import environment_to_suns, rotate_suns

    return rotate_suns(environment_to_suns(env, rows), rotation_y(rotate_deg))


def rotated_envmap(env: np.ndarray, rotate_deg: float) -> np.ndarray:
    """The map turned by ``rotate_deg`` about +y: E'(d) = E(rotation_y(-a) d), same size."""
    from ..envmap import latlong_directions, rotation_y, sample_latlong

    if not rotate_deg:
        return np.asarray(env, dtype=np.float32)
    dirs = latlong_directions(env.shape[0], env.shape[1]) @ rotation_y(-rotate_deg).T
    return sample_latlong(env, dirs)


def directional_light(direction, colour=(1.0, 1.0, 1.0)) -> list[dict]:
    """One hard sun from ``direction`` (camera frame, towards the light) with colour (R, G, B) >= 0."""
    from ..lightstage.render import check_light, sun_light

    d = np.asarray(direction, dtype=np.float64).reshape(-1)
    c = np.asarray(colour, dtype=np.float64).reshape(-1)
    if d.size != 3 or not np.isfinite(d).all() or np.linalg.norm(d) < 1e-9:
        raise InputError(f"--light {' '.join(map(str, d))} is not a direction (give three numbers LX LY LZ, not all zero)")
    if c.size != 3 or not np.isfinite(c).all() or (c < 0).any() or c.max() <= 0:
        raise InputError(f"--light-color {' '.join(map(str, c))} is not a colour (give three numbers R G B >= 0, not all zero)")
    light = sun_light(d / np.linalg.norm(d), 1.0, c)
    check_light(light)
    return [light]


def lights_to_latlong(lights: list[dict], rows: int = PHONG_HEIGHT) -> np.ndarray:
    """Splat suns (camera frame) into a (rows, 2 rows, 3) radiance map: each sun's irradiance over its texel's solid angle."""
    from ..envmap import directions_to_uv, solid_angles
    from ..lightstage.render import check_light

    env = np.zeros((rows, 2 * rows, 3), np.float64)
    omega = solid_angles(rows)
    for lt in lights:
        c = check_light(lt)
        u, t = directions_to_uv(c["direction"])
        i = min(int(t * rows), rows - 1)
        j = min(int(u * 2 * rows), 2 * rows - 1)
        env[i, j] += c["rgb"] / omega[i, j]
    return env.astype(np.float32)


def _to_model(lights: list[dict], fit) -> list[dict]:
    """Camera-frame suns -> model-frame suns (R^T d)."""
    from ..lightstage.render import rotate_suns

    return rotate_suns(lights, np.asarray(fit.rotation, dtype=np.float64).T)


def _scaled(lights: list[dict], scale: float) -> list[dict]:
    """Suns with their strengths times ``scale``."""
    return [dict(lt, strength=np.asarray(lt.get("strength", 1.0), dtype=np.float64) * scale) for lt in lights]


# ----------------------------------------------------------------------------- geometry in the photo


def proxy_normals(person: np.ndarray, smooth: float = PROXY_SMOOTH) -> np.ndarray:
    """(H, W, 3) camera-frame unit normals of a surface inflated over a person mask (H, W) in [0, 1].

    Height h = sqrt(d (2 R - d)) of the distance d to the mask's edge (a round cross-section of
    radius R, the 99th percentile of d), Gaussian-smoothed; n = normalize(-dh/dx, dh/dy_down, 1):
    facing the camera inside, turning sideways towards the silhouette. (0, 0, 1) outside the mask.
    """
    import cv2

    inside = np.asarray(person) > 0.5
    n = np.zeros(inside.shape + (3,), np.float32)
    n[..., 2] = 1.0
    if not inside.any():
        return n
    d = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 5).astype(np.float32)
    radius = max(float(np.percentile(d[inside], 99)), 1.0)
    d = np.minimum(d, radius)
    height = np.sqrt(np.maximum(d * (2 * radius - d), 0.0))
    size = float(np.sqrt(inside.sum()))
    height = cv2.GaussianBlur(height, (0, 0), max(1.0, smooth * size))
    gy, gx = np.gradient(height)
    n = np.stack([-gx, gy, np.ones_like(gx)], axis=-1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    n[~inside] = (0.0, 0.0, 1.0)
    return n.astype(np.float32)


# ----------------------------------------------------------------------------- Phong priors


def phong_priors(env: np.ndarray, height: int = PHONG_HEIGHT) -> dict[int, np.ndarray]:
    """PN-Relighting's Phong priors: ``env`` (camera frame) prefiltered at exponents 1, 16, 32, 64
    (``envmap.PHONG_EXPONENTS``) -> {exponent: (height, 2 height, 3)}."""
    from ..envmap import PHONG_EXPONENTS, prefilter_phong

    return {k: prefilter_phong(env, k, height, source_height=min(64, env.shape[0])) for k in PHONG_EXPONENTS}


def _glossy(priors: dict, mirror: np.ndarray) -> np.ndarray:
    """(N, 3) the specular light k_s multiplies: Phong lobes SPECULAR_LOBE_WEIGHTS at mirror directions (N, 3)."""
    from ..envmap import latlong_lookup
    from .intrinsics import SPECULAR_LOBE_WEIGHTS

    some = next(iter(priors.values()))
    sample = latlong_lookup(mirror, some.shape[0], some.shape[1])
    return sum(w * sample(priors[k]) for k, w in SPECULAR_LOBE_WEIGHTS.items() if w)


# ----------------------------------------------------------------------------- relighting


def shadowed_photo_light(gbuf, head: PhotoHead, photo_px: np.ndarray, on_head: np.ndarray, shadows: bool = True,
                         face_px: np.ndarray | None = None):
    """The photo's light refitted with the fitted head's cast shadows and occlusion.

    The SH lighting is fitted without shadows; a photo's shadows then look like dark albedo. Here
    each cell of the photo light's lat-long grid (``head.light``, camera frame) is one white sun cast
    on the head with albedo 1 and shadow rays (B_k per pixel); non-negative cell strengths E_k are
    fitted so that sum_k E_k B_k is the photo's luminance over the skin (head pixels facing the
    camera whose texture albedo is near the median's: one albedo), divided by that median albedo
    (the SH light's units), robustly (three reweighted passes), pulled weakly towards the SH light
    (cells the face does not see keep its value). The light keeps the colour of the SH light as the face
    sees it (its mean unshadowed-cell shading over the head pixels facing the camera).
    gbuf : the head's view (:func:`pipeline.photo_window_view`); photo_px (N, 3) linear photo at its pixels; on_head (N,) bool;
    face_px (N,) bool: the face's skin (``PhotoHead.face``), where the fit looks when it has enough pixels.
    Shiny skin: the skin is modelled as that diffuse shading plus the renderer's GGX lobe of the same
    suns (albedo-free, the light's colour), one specular level F0 for the head; the fit is made for each
    level of SPECULAR_LEVELS and keeps the one with the smallest robust residual (``info["specular_level"]``):
    a diffuse-only fit takes a glossy face's highlights for light.
    Returns (map (rows, 2 rows, 3) camera frame, suns (model frame), diffuse shading (N, 3) with
    shadows of those suns, info dict).
    """
    from ..envmap import latlong_directions, solid_angles
    from ..lightstage.render import render_olat_set, sun_light
    from .intrinsics import luminance

    prior = np.asarray(head.light, dtype=np.float64)
    rows = prior.shape[0]
    dirs = latlong_directions(rows).reshape(-1, 3)
    omega = solid_angles(rows).reshape(-1)
    e0 = luminance(prior.reshape(-1, 3).astype(np.float32)).astype(np.float64) * omega  # each cell's irradiance (luminance)
    dirs_model = dirs @ np.asarray(head.fit.rotation, dtype=np.float64)  # each cell's direction R^T d, model frame
    white = replace(gbuf, albedo=np.ones_like(gbuf.albedo))
    cells = [sun_light(d, 1.0) for d in dirs_model]
    idx = np.flatnonzero(on_head)
    B = np.zeros((len(cells), len(idx)), np.float32)
    for k, frame in enumerate(render_olat_set(white, cells, diffuse_only=True, shadows=shadows, threads=RENDER_THREADS)):
        B[k] = frame.reshape(-1, 3)[gbuf.pixels[idx], 0]
    alb = np.clip(gbuf.albedo[idx], 0.0, 1.0)
    alb_lum = luminance(alb)
    skin = gbuf.n_dot_v[idx] > 0.2
    # The light's colour as the face sees it (the SH light's gauge: the face's mean shading is achromatic);
    # its total over the sphere also counts directions behind the head, where the SH fit is unconstrained.
    face_light = (B[:, skin] if skin.any() else B).mean(1).astype(np.float64) @ (prior.reshape(-1, 3) * omega[:, None])
    if not np.all(face_light > 1e-12):
        face_light = prior.reshape(-1, 3).sum(0)
    colour = face_light / max(float(luminance(face_light[None].astype(np.float32))[0]), 1e-12)  # luminance 1
    if face_px is not None and (skin & face_px[idx]).sum() >= 50:
        # Skin is what looks like the face's skin in the photo: the skull's texture is painted skin, its photo may be hair.
        seen = np.clip(photo_px[idx], 0.0, None)
        seen_chroma = seen / np.maximum(luminance(seen), 1e-6)[:, None]
        ref = np.median(seen_chroma[skin & face_px[idx]], axis=0)
        skin &= face_px[idx] | (np.abs(seen_chroma - ref).max(1) < 0.15)
    info = {"cells": len(cells), "fit_pixels": 0, "skin": np.zeros(0, np.int64), "specular_level": 0.0}
    if skin.sum() < 50:
        E = e0
    else:
        med = float(np.median(alb_lum[skin]))
        # One albedo: the texture's chromaticity near its median (hair, lips, eyes differ); not its
        # luminance, which still holds the photo's shadows.
        chroma = alb / np.maximum(alb_lum, 1e-6)[:, None]
        skin &= np.abs(chroma - np.median(chroma[skin], axis=0)).max(1) < 0.15
        fit_idx = np.flatnonzero(skin)
        fit_idx = fit_idx[:: max(1, len(fit_idx) // 4000)]
        diffuse = B[:, fit_idx].T.astype(np.float64)
        y = luminance(photo_px[idx[fit_idx]]).astype(np.float64) / max(med, 1e-6)
        lam = LIGHT_PRIOR * float((diffuse ** 2).sum()) / (len(cells) * len(y))  # cells the face hardly sees keep the SH light
        best, scale0 = None, None
        for f0 in SPECULAR_LEVELS:
            # Each cell's lobe at the fit's pixels, in the units of y (divided by the skin's albedo).
            A = diffuse + _cell_lobes(gbuf, idx[fit_idx], dirs_model, B[:, fit_idx], f0).T / max(med, 1e-6)
            E, r = _robust_cells(A, y, e0, lam)
            if scale0 is None:  # the diffuse fit's residual scale: one yardstick for every level
                scale0 = 2.0 * (1.4826 * float(np.median(np.abs(r))) + 1e-6)
            loss = float(np.mean(np.log1p((r / scale0) ** 2))) + lam * float(np.sum((E - e0) ** 2)) / scale0 ** 2
            if best is None or loss < best[0]:
                best = (loss, f0, E, r)
        _, f0, E, r = best
        info = {"cells": len(cells), "fit_pixels": int(len(y)), "skin": idx[np.flatnonzero(skin)], "colour": colour.tolist(),
                "specular_level": float(f0),
                "median_relative_residual": round(float(np.median(np.abs(r))) / max(float(np.mean(y)), 1e-6), 4)}
    shading = np.zeros((len(gbuf.pixels), 3), np.float32)
    shading[idx] = (E.astype(np.float32) @ B)[:, None] * colour.astype(np.float32)
    env = (E / omega)[:, None] * colour[None, :]
    suns = [sun_light(d, (e * colour).astype(np.float32)) for d, e in zip(dirs_model, E) if e > 0]
    return env.reshape(rows, 2 * rows, 3).astype(np.float32), suns, shading, info


# Candidate F0 of the photo light's fit (shadowed_photo_light). Skin's is ~0.03; higher levels also fit
# what a camera's tone curve does to the shading (docs/relight.md).
SPECULAR_LEVELS = (0.0, 0.02, 0.05, 0.1)


def _robust_cells(A: np.ndarray, y: np.ndarray, e0: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative cell strengths E (K,) with A (M, K) E ~ y (M,), pulled by ``lam`` towards e0: three passes of
    Cauchy-reweighted NNLS (highlights the model misses, brows and hair fall out). Returns (E, residual (M,))."""
    from scipy.optimize import nnls

    w = np.ones(len(y))
    E = e0
    for _ in range(3):
        sw = np.sqrt(w / len(y))
        try:
            E = nnls(np.concatenate([A * sw[:, None], np.sqrt(lam) * np.eye(len(e0))]),
                     np.concatenate([y * sw, np.sqrt(lam) * e0]), maxiter=10 * len(e0))[0]
        except RuntimeError:  # not converged in time: keep the previous pass (the SH light at first)
            break
        r = A @ E - y
        scale = 1.4826 * float(np.median(np.abs(r))) + 1e-6
        w = 1.0 / (1.0 + (r / (2.0 * scale)) ** 2)
    return E, A @ E - y


def _cell_lobes(gbuf, idx: np.ndarray, dirs_model: np.ndarray, diffuse: np.ndarray, f0: float) -> np.ndarray:
    """(K, M) the renderer's GGX lobe x cosine x visibility of K white unit suns (directions (K, 3), model frame)
    at the view's pixels ``idx`` (M,): F0 = f0, roughness the avatar's mapping of f0. The visibility is the
    one already cast for the diffuse frames ``diffuse`` (K, M) = cosine x visibility / pi."""
    from ..lightstage.render import specular_brdf
    from .export import roughness_metallic_from_specular

    lobes = np.zeros_like(diffuse)
    if f0 <= 0:
        return lobes
    rough = float(roughness_metallic_from_specular(np.full((1, 1), f0, np.float32))[0, 0, 1])
    n, v = gbuf.normal[idx], gbuf.view[idx]
    for k, d in enumerate(np.asarray(dirs_model, np.float32)):
        on = np.flatnonzero(diffuse[k] > 0)  # lit and unoccluded (the cosine is in diffuse)
        if len(on):
            lobes[k, on] = specular_brdf(n[on], v[on], d[None, :], rough, f0) * np.float32(np.pi) * diffuse[k, on]
    return lobes


def _specular(gbuf, lights: list[dict], f0: float, shadows: bool, weight: np.ndarray | None = None) -> np.ndarray:
    """(N, 3) the GGX lobe alone at the view's pixels: F0 = f0 (x ``weight`` (N,) per pixel), roughness = the avatar's mapping of f0."""
    from ..lightstage.render import render_lights
    from .export import roughness_metallic_from_specular

    n = len(gbuf.pixels)
    if f0 <= 0:
        return np.zeros((n, 3), np.float32)
    rough = float(roughness_metallic_from_specular(np.full((1, 1), f0, np.float32))[0, 0, 1])
    level = np.full(n, f0, np.float32) if weight is None else (f0 * np.asarray(weight, np.float32)).astype(np.float32)
    g = replace(gbuf, albedo=np.zeros_like(gbuf.albedo), specular=level, roughness=np.full(n, rough, np.float32))
    return render_lights(g, lights, shadows=shadows, threads=RENDER_THREADS).reshape(-1, 3)[gbuf.pixels]


def skin_likeness(albedo: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """(N,) in [0, 1]: how much each pixel's albedo (N, 3) looks like the face's skin ``skin`` (indices).

    Chromaticity near the skin's median and a level not far below it: the head's specular level is
    skin's, and the fitted head also covers neck, skull and ears that the photo may show clothed or
    haired (black cloth, hair and pupils have dark, noisy colours). Albedo, not photo: a shadowed
    cheek is dark in the photo, not in its albedo.
    """
    from .intrinsics import luminance

    if len(skin) < 50:
        return np.ones(len(albedo), np.float32)
    px = np.clip(albedo, 0.0, None)
    lum = luminance(px)
    chroma = px / np.maximum(px.sum(1, keepdims=True), 1e-6)
    dist = np.abs(chroma - np.median(chroma[skin], axis=0)).max(1)
    level = lum / max(float(np.median(lum[skin])), 1e-6)
    return ((1.0 - _smoothstep(dist, 0.04, 0.10)) * _smoothstep(level, 0.15, 0.4)).astype(np.float32)


def exposure_scale(gbuf, old_lights_model: list[dict], new_lights_model: list[dict]) -> float:
    """Scale for the new lights giving the head's camera-facing pixels the photo light's mean diffuse shading."""
    from .pipeline import relight_exposure

    return relight_exposure(gbuf, new_lights_model) / relight_exposure(gbuf, old_lights_model)


def prepare_relight(head: PhotoHead, *, shadows: bool = True, method: str = "full", specular: str = "ggx") -> SimpleNamespace:
    """Everything of :func:`relight_photo` that the new light does not change, for one photo: the head traced
    from the photo's camera, the photo's light refitted with shadows, the albedo with the photo's
    shadows and highlights taken out, the body's proxy normals and old shading. Relighting one photo
    under several maps computes it once (``relight_photo(..., prepared=...)``)."""
    from ..envmap import render_sh
    from .intrinsics import luminance
    from .pipeline import photo_light_suns, photo_window_view

    if method not in ("full", "sh"):
        raise InputError(f"relight method {method!r} is unknown (use 'full' or 'sh')")
    if specular not in ("ggx", "phong"):
        raise InputError(f"specular model {specular!r} is unknown (use 'ggx' or 'phong')")
    timings: dict[str, float] = {}
    t = time.perf_counter()
    photo_lin = srgb_to_linear(head.photo).astype(np.float32)
    gbuf, win = photo_window_view(head.mesh, head.fit, head.photo.shape[:2])
    if gbuf is None or not gbuf.mask.any():
        raise InputError("the fitted head is outside the photo (use a photo with the face inside the frame)")
    y0, y1, x0, x1 = win
    timings["trace"] = round(time.perf_counter() - t, 3)

    head_win = gbuf.mask & (head.person[y0:y1, x0:x1] > 0.5)
    photo_px = photo_lin[y0:y1, x0:x1].reshape(-1, 3)[gbuf.pixels]
    t = time.perf_counter()
    if method == "full":
        # The photo's light refitted with the head's shadows: its cast shadows are then divided out of the albedo.
        face_px = None if head.face is None else head.face[y0:y1, x0:x1].reshape(-1)[gbuf.pixels]
        old_map, old_model, d_old, fit_info = shadowed_photo_light(gbuf, head, photo_px, head_win.reshape(-1)[gbuf.pixels],
                                                                   shadows=shadows, face_px=face_px)
        skin = fit_info.pop("skin")
    else:
        old_map, old_model, d_old, fit_info = head.light, photo_light_suns(head.light, head.fit), None, {}
    timings["old light"] = round(time.perf_counter() - t, 3)
    R = np.asarray(head.fit.rotation, dtype=np.float64)
    n_cam = gbuf.normal.astype(np.float64) @ R.T  # (N, 3) shading normals (detail normal map) in the camera frame
    prep = SimpleNamespace(shadows=shadows, method=method, specular=specular, photo_lin=photo_lin, gbuf=gbuf, win=win,
                           head_win=head_win, photo_px=photo_px, old_map=old_map, old_model=old_model, fit_info=fit_info,
                           n_cam=n_cam, f0=None, mirror=None, foreground=None, edge_alpha=None, timings=timings)
    t = time.perf_counter()
    if method == "sh":
        prep.d_old = render_sh(n_cam, head.sh)
    else:
        if specular == "phong":
            view = gbuf.view.astype(np.float64) @ R.T
            prep.mirror = 2.0 * np.sum(n_cam * view, axis=1, keepdims=True) * n_cam - view
            s_old = gbuf.specular[:, None].astype(np.float32) * _glossy(phong_priors(old_map), prep.mirror)
        else:
            # The renderer's GGX lobe with the head's one specular level, fitted with the light.
            prep.f0 = float(fit_info.get("specular_level", 0.0))
            s_old = _specular(gbuf, old_model, prep.f0, shadows)
        # Albedo: the photo's (its shadows divided out) where the old light reached, the texture's where it did not.
        ref = max(float(np.median(luminance(d_old))), 1e-6)
        trust = _smoothstep(luminance(d_old) / ref, *TRUST_SHADING)[:, None]
        albedo = np.clip(np.maximum(photo_px - s_old, 0.0) / np.maximum(d_old, 1e-6), 0.0, 1.0)
        # The texture's albedo is in the SH light's units: brought to the photo albedo's level first.
        sure = trust[:, 0] > 0.99
        tex = np.clip(gbuf.albedo, 0.0, 1.0)
        if sure.sum() > 50:
            tex = tex * (np.median(albedo[sure], axis=0) / np.maximum(np.median(tex[sure], axis=0), 1e-6))
        prep.albedo = trust * albedo + (1.0 - trust) * np.clip(tex, 0.0, 1.0)
        prep.d_old, prep.s_old = d_old, s_old
        # What the model misses of the photo (highlights placed elsewhere, clipped albedo, the texture's
        # stand-in): carried over, scaled like the diffuse light, so the photo under its own light comes back unchanged.
        prep.skin_weight = skin_likeness(prep.albedo, skin) if specular == "ggx" else None
        s_model = _specular(gbuf, old_model, prep.f0, shadows, prep.skin_weight) if specular == "ggx" else s_old
        prep.residual = photo_px - prep.albedo * d_old - s_model
        prep.residual_shading = np.maximum(luminance(d_old), TRUST_SHADING[0] * ref)  # k's denominator, once per photo
    timings["albedo"] = round(time.perf_counter() - t, 3)
    # The rest of the person: ratio relighting on the inflated surface (unshadowed).
    t = time.perf_counter()
    prep.on_person = head.person > 0.01  # shaded only where the person is (a 1080p frame is mostly background)
    prep.body_normals = proxy_normals(head.person)[prep.on_person]
    prep.b_old = render_sh(prep.body_normals, head.sh) if method == "sh" else sun_shading(prep.body_normals, _to_cam(old_model, head.fit))
    core = head.person[prep.on_person] > 0.5
    prep.body_floor = 0.05 * max(float(np.median(luminance(prep.b_old[core]))) if core.any() else 0.0, 1e-4)
    timings["body"] = round(time.perf_counter() - t, 3)
    return prep


def relight_photo(head: PhotoHead, lights: list[dict], *, env: np.ndarray | None = None, exposure_ev: float = 0.0,
                  shadows: bool = True, keep_background: bool = False, method: str = "full", specular: str = "ggx",
                  prepared: SimpleNamespace | None = None) -> dict:
    """Relight the photo of ``head`` under ``lights`` (camera-frame suns, e.g. :func:`environment_lights`).

    env : the (already rotated) camera-frame lat-long map the lights come from, for the Phong priors and
    the background (None: the lights are splatted into a map, the background is black).
    exposure_ev : brightness in stops on top of the photo-matched exposure. shadows : cast shadow rays.
    keep_background : keep the photo's background instead of the environment seen from the camera.
    method : "full" (this module's relighting) or "sh" (the SH-only Lambertian baseline: photo x
    SH_new(n) / SH_old(n) with the same normals, no shadows, no specular).
    specular : "ggx" (the renderer's lobe, level fitted by :func:`shadowed_photo_light`) or "phong" (PN-Relighting's Phong priors).
    prepared : :func:`prepare_relight` of this head with the same shadows, method and specular (computed when None).
    Returns dict(linear (H, W, 3) float32, srgb (H, W, 3) tone-mapped, head_mask (H, W) bool, blend (H, W)
    head weight, scale (light scale used), suns, old_light (the refit's residual, specular level),
    layers (H, W, 3) images: shading_old, shading_new, albedo, specular_old, specular_new; timings).
    """
    from ..envmap import envmap_to_sh, render_sh, sh_radiance_to_shading
    from ..lightstage.render import render_lights
    from .intrinsics import luminance
    from .relight import tone_map_highlights

    if prepared is None:
        prepared = prepare_relight(head, shadows=shadows, method=method, specular=specular)
    elif (prepared.shadows, prepared.method, prepared.specular) != (shadows, method, specular):
        raise ValueError("prepared was made with other shadows / method / specular settings")
    p = prepared
    gbuf, photo_lin, photo_px = p.gbuf, p.photo_lin, p.photo_px
    h, w = photo_lin.shape[:2]
    y0, y1, x0, x1 = p.win
    timings = dict(p.timings)
    new_model = _to_model(lights, head.fit)
    scale = exposure_scale(gbuf, p.old_model, new_model) * 2.0 ** float(exposure_ev)
    new_model, new_cam = _scaled(new_model, scale), _scaled(lights, scale)

    t = time.perf_counter()
    if method == "sh":
        sh_new = sh_radiance_to_shading(_lights_sh(new_cam)) if env is None else sh_radiance_to_shading(envmap_to_sh(env) * scale)
        d_new = render_sh(p.n_cam, sh_new)
        relit_px = photo_px * np.clip(d_new, 0, None) / np.maximum(p.d_old, 0.02 * max(float(np.median(luminance(p.d_old))), 1e-4))
    else:
        flat_new = sun_shading(gbuf.normal, new_model) if not shadows or specular == "phong" else None
        if shadows:
            white = replace(gbuf, albedo=np.ones_like(gbuf.albedo))
            d_new = render_lights(white, new_model, diffuse_only=True, threads=RENDER_THREADS).reshape(-1, 3)[gbuf.pixels]
        else:
            d_new = flat_new
        timings["shadows"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        if specular == "phong":
            # PN-Relighting's specular: k_s x Phong priors at the mirror direction, the new one occluded like the diffuse light.
            ks = gbuf.specular[:, None].astype(np.float32)
            new_map = env * np.float32(scale) if env is not None else lights_to_latlong(new_cam)
            occlusion = np.clip(luminance(d_new) / np.maximum(luminance(flat_new), 1e-6), 0.0, 1.0)[:, None]
            s_new = ks * _glossy(phong_priors(new_map), p.mirror) * occlusion
        else:
            s_new = _specular(gbuf, new_model, p.f0, shadows, p.skin_weight)
        relit_px = p.albedo * d_new + s_new
        k = np.clip(luminance(d_new) / p.residual_shading, 0.0, BODY_RATIO_MAX)
        relit_px = np.maximum(relit_px + p.residual * k[:, None], 0.0)
    timings["head"] = round(time.perf_counter() - t, 3)
    layers = {}
    if method == "full":
        for name, px in (("shading_old", p.d_old), ("shading_new", d_new), ("albedo", p.albedo), ("specular_old", p.s_old),
                         ("specular_new", s_new)):
            full = np.zeros((h, w, 3), np.float32)
            full[y0:y1, x0:x1] = gbuf.image(np.asarray(px, np.float32))
            layers[name] = full

    t = time.perf_counter()
    head_relit = np.zeros((h, w, 3), np.float32)
    head_relit[y0:y1, x0:x1] = gbuf.image(relit_px.astype(np.float32))
    head_mask = np.zeros((h, w), bool)
    head_mask[y0:y1, x0:x1] = p.head_win
    b_new = render_sh(p.body_normals, sh_new) if method == "sh" else sun_shading(p.body_normals, new_cam)
    if keep_background:
        body, alpha = photo_lin.copy(), np.clip(head.person, 0.0, 1.0)
    else:  # over a new background the soft edge must not carry the old one along
        if p.foreground is None:
            p.foreground, p.edge_alpha = unmix_soft_edge(photo_lin, head.person)
        body, alpha = p.foreground.copy(), p.edge_alpha
    body[p.on_person] *= np.clip(np.clip(b_new, 0, None) / np.maximum(p.b_old, p.body_floor), 0.0, BODY_RATIO_MAX)
    blend = _feathered(head_mask, FEATHER * float(np.sqrt(max(head_mask.sum(), 1))))
    person_relit = blend[..., None] * head_relit + (1.0 - blend[..., None]) * body
    if keep_background:
        background = photo_lin
    elif env is not None:
        background = camera_background(env * np.float32(scale), head.fit.focal_px, head.fit.principal_point, (h, w))
    else:
        background = np.zeros_like(photo_lin)
    linear = (alpha[..., None] * person_relit + (1.0 - alpha[..., None]) * background).astype(np.float32)
    timings["compose"] = round(time.perf_counter() - t, 3)
    return {"linear": linear, "srgb": linear_to_srgb(tone_map_highlights(linear)), "head_mask": head_mask, "blend": blend,
            "scale": float(scale), "suns": len(lights), "old_light": dict(p.fit_info), "layers": layers,
            "timings": timings}


def _to_cam(lights_model: list[dict], fit) -> list[dict]:
    from ..lightstage.render import rotate_suns

    return rotate_suns(lights_model, fit.rotation)


def _lights_sh(lights: list[dict]) -> np.ndarray:
    """(9, 3) SH radiance of suns (a delta of irradiance E at d projects to E Y(d))."""
    from ..envmap import sh_basis
    from ..lightstage.render import check_light

    out = np.zeros((9, 3))
    for lt in lights:
        c = check_light(lt)
        out += sh_basis(c["direction"])[:, None] * c["rgb"][None, :]
    return out


def _feathered(mask: np.ndarray, width: float) -> np.ndarray:
    """(H, W) float32 weight: 1 deep inside ``mask``, 0 outside, a smooth ramp of ~``width`` px inside its edge."""
    import cv2

    width = max(float(width), 1.0)
    inside = cv2.distanceTransform(np.asarray(mask, np.uint8), cv2.DIST_L2, 5)
    return _smoothstep(inside / width, 0.0, 1.0).astype(np.float32)


def camera_background(env: np.ndarray, focal_px: float, principal_point, shape) -> np.ndarray:
    """(H, W, 3) radiance of a camera-frame lat-long map seen through the photo's pinhole (looking down -z)."""
    from ..envmap import sample_latlong

    h, w = shape
    cx, cy = np.asarray(principal_point, dtype=np.float64)
    j, i = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    dirs = np.stack([(j - cx) / focal_px, -(i - cy) / focal_px, -np.ones_like(j)], axis=-1)
    return sample_latlong(env, dirs).astype(np.float32)


# ----------------------------------------------------------------------------- the command (files in, files out)


def run_relight(photos, out, *, envs=None, light=None, light_colour=(1.0, 1.0, 1.0), rotate_deg: float = 0.0,
                exposure_ev: float = 0.0, avatar=None, shadows: bool = True, keep_background: bool = False,
                exr: bool = False, seed: int = 0, texture_size: int = DEFAULT_TEXTURE_SIZE, sheet_tile: int = 384) -> dict:
    """``pnrelight relight``: relight photo files and write the results. Returns the relight.json dict.

    photos : one or more photo paths. envs : lat-long .exr/.hdr paths (one: a relit photo; several: a
    contact sheet, photo + one tile per map) or None with ``light`` (LX, LY, LZ) a direction in the
    photo's camera frame (x right, y up, z towards the camera) and ``light_colour`` (R, G, B).
    out : OUT.png for one photo (OUT.exr too with ``exr``; settings in OUT.relight.json), a folder for
    several (<stem>_relit.png or <stem>_sheet.png each, and relight.json). avatar : a ``pnrelight avatar``
    folder made from the (single) photo: no refit.
    Every input is checked and every photo relit before the first file is written: bad input raises
    InputError (one line) and writes nothing. Files are written atomically.
    """
    import json

    from ..envmap import envmap_path, load_envmap
    from ..imageio import write_image
    from .photo import load_photo
    from .preview import contact_sheet

    t_start = time.perf_counter()
    photos = [Path(p) for p in photos]
    if not photos:
        raise InputError("no photo given (pnrelight relight PHOTO ... --env MAP.exr -o OUT.png)")
    if (envs is None) == (light is None):
        raise InputError("give --env MAP (or --envs MAP ...) or --light LX LY LZ, one of them")
    out = Path(out)
    batch = len(photos) > 1
    if batch and out.suffix:
        raise InputError(f"-o {out} looks like a file, but {len(photos)} photos need an output folder (give -o FOLDER)")
    if not batch and out.suffix.lower() != ".png":
        raise InputError(f"-o {out} is not a .png file (give -o OUT.png)")
    if avatar is not None and batch:
        raise InputError("--avatar belongs to one photo; relight several photos without --avatar (each is fitted)")
    if not np.isfinite(float(rotate_deg)) or not np.isfinite(float(exposure_ev)) or abs(float(exposure_ev)) > 20:
        raise InputError(f"--rotate {rotate_deg} / --exposure {exposure_ev} must be finite numbers (exposure within +-20 EV)")
    if light is not None and rotate_deg:
        raise InputError("--rotate turns an environment map; with --light give the direction itself")
    envs = None if envs is None else [envmap_path(p) for p in envs]
    maps = [(p.stem, load_envmap(p, strict=True)) for p in envs] if envs is not None else []
    lights_dir = directional_light(light, light_colour) if light is not None else None
    images = [load_photo(p) for p in photos]  # unreadable photos fail here, before any fit
    stems = [p.stem for p in photos]
    if batch and len(set(stems)) < len(stems):
        raise InputError("two photos share a file name; their outputs would collide (rename one)")

    # Each map as the relighting sees it (turned, and as suns), made once for every photo.
    sources = [(name, rotated_envmap(env, rotate_deg), environment_lights(env, rotate_deg)) for name, env in maps] \
        or [("light", None, lights_dir)]
    results, writes = [], []
    for path, image in zip(photos, images):
        t0 = time.perf_counter()
        head = load_photo_head(avatar, image, seed=seed) if avatar is not None else fit_photo_head(image, seed=seed,
                                                                                                   texture_size=texture_size)
        prepared = prepare_relight(head, shadows=shadows)
        t_head = time.perf_counter() - t0
        outputs = []
        for name, env_rot, lights in sources:
            t1 = time.perf_counter()
            r = relight_photo(head, lights, env=env_rot, exposure_ev=exposure_ev, shadows=shadows, keep_background=keep_background,
                              prepared=prepared)
            outputs.append((name, r, round(time.perf_counter() - t1, 3)))
        entry = {"photo": str(path), "image_size": [int(image.shape[1]), int(image.shape[0])], "head": head.source,
                 "seconds": {"head": round(t_head, 3), **{f"relight_{n}": s for n, _, s in outputs}},
                 "relight": [{"light": n, "light_scale": r["scale"], "suns": r["suns"], "old_light": _jsonable(r["old_light"]),
                              "timings_s": r["timings"]} for n, r, _ in outputs]}
        mine = []
        if len(outputs) == 1:
            target = out / f"{path.stem}_relit.png" if batch else out
            mine.append((target, outputs[0][1]["srgb"]))
            if exr:
                mine.append((target.with_suffix(".exr"), outputs[0][1]["linear"]))
        else:
            target = out / f"{path.stem}_sheet.png" if batch else out
            tiles = [(path.name, image)] + [(n + (f" {rotate_deg:+.0f}°" if rotate_deg else ""), r["srgb"]) for n, r, _ in outputs]
            mine.append((target, contact_sheet(tiles, columns=len(tiles), tile=min(sheet_tile, max(image.shape[:2])))))
            if exr:
                mine += [(target.with_name(f"{target.stem}_{n}.exr"), r["linear"]) for n, r, _ in outputs]
        entry["outputs"] = [str(p) for p, _ in mine]
        writes += mine
        results.append(entry)

    summary = {
        "command": "relight",
        "settings": {"envs": [str(p) for p in envs] if envs is not None else None,
                     "light": None if light is None else [float(x) for x in light],
                     "light_colour": None if light is None else [float(x) for x in light_colour],
                     "rotate_deg": float(rotate_deg), "exposure_ev": float(exposure_ev), "avatar": None if avatar is None else str(avatar),
                     "shadows": bool(shadows), "keep_background": bool(keep_background), "exr": bool(exr),
                     "texture_size": int(texture_size), "env_sun_rows": ENV_SUN_ROWS,
                     "frames": "lights and maps in the photo's camera frame (x right, y up, z towards the camera)",
                     "exposure": "the face keeps the photo's mean diffuse shading, times 2^exposure"},
        "seeds": {"seed": int(seed)},
        "photos": results,
        "timings_s": {"total": round(time.perf_counter() - t_start, 3)},
    }
    if batch:
        out.mkdir(parents=True, exist_ok=True)
    for target, img in writes:
        if target.suffix.lower() == ".exr":
            write_image(target, np.asarray(img, np.float32))  # linear radiance
        else:
            write_image(target, np.clip(img, 0.0, 1.0))
    json_path = out / "relight.json" if batch else out.with_name(out.stem + ".relight.json")
    from ..atomic import atomic_output_file

    with atomic_output_file(json_path) as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    summary["json"] = str(json_path)
    return summary


def _jsonable(info: dict) -> dict:
    out = {}
    for k, v in info.items():
        if isinstance(v, np.ndarray):
            continue
        out[k] = v.tolist() if hasattr(v, "tolist") else v
    return out
