"""Textures all round for a full head model (ICT-FaceKit): the photo on the face, plausible colour elsewhere.

A head model (``FaceModel.part_names`` holding "face" and "head", see
:mod:`pnrelight.avatar.build_ict_face_model`) has one UV atlas with a cell per part. One photo
sees only the front of the face, so :func:`bake_head_textures` builds the atlas in layers:

1. *Photo*: the face part's texels (of the UV islands that are mostly face: the face cell) are
   baked as for the face-only model (:func:`pnrelight.avatar.uv.sample_textures`: visibility,
   view-angle confidence, mirror fill through the atlas's texel mirror map, grazing-angle fade),
   restricted to photo pixels where the intrinsics hold data; unknown texels where the photo layer
   shows are inpainted (small occluded pockets such as the nostrils included).
2. *Skin fill on the mesh*: every skin vertex (face, skull, neck, mouth and eye sockets) gets a
   colour from a screened Poisson problem on the welded mesh (UV-seam copies are one vertex)::

       (L + M diag(lam c + mu)) x = M (lam c d + mu p)

   L is the cotangent Laplacian (clamped to non-negative weights), M the lumped vertex areas,
   d the photo's colour splatted from the well-seen, skin-coloured face texels with confidence c,
   p a per-part prior (the face's median skin on face and head, dark red-brown in the sockets).
   ``lam`` = 1 / SKIN_DATA_LENGTH^2 makes x a ~8 mm low-pass of the seen skin where there is data;
   away from it x relaxes to the median skin over MEDIAN_LENGTH (the back of the head) and to the
   socket colour over SOCKET_LENGTH. The colour of a texel is then the barycentric blend of its
   triangle's vertex colours, so the same 3D point gets the same colour from every UV island
   (no seams between the face cell and the head cell). Normals there are the mesh's own (model
   frame), specular the median of the seen face.
3. *Photo weight*: alpha per vertex -- the texels' confidence after mirroring, splatted to the
   vertices, kept beyond the landmarks' reach (scalp, ears, lower neck) only where the photo looks
   like skin, smoothed over PHOTO_WEIGHT_LENGTH on the mesh, brought to 0 within BOUNDARY_RAMP of
   the photo layer's border -- blends layer 1 (alpha = 1) into layer 2 (alpha = 0) texel by texel.

Eyes, teeth, gums/tongue are painted from their 3D template position (so their own UV seams do
not show either): on the eyeball, by the angle from the eye's axis, a dark pupil, the iris
coloured from the photo at the mediapipe iris landmarks (468, 473) with radial fibres and a
limbal ring (painted on the cornea of the eyeball mesh and on the iris disc alike), the sclera
off-white going reddish towards the back; teeth ivory, gums and tongue pink-red, both darker
deeper into the mouth.

Hair is not modelled: hair seen over the forehead stays in the face texture as colour (layer 1),
the skull gets skin (layer 2).
"""
from __future__ import annotations

import numpy as np

from .face_model import vertex_normals
from .raster import RasterResult, interpolate
from .uv import fill_texture_holes, sample_textures, texel_mirror_map, weld_vertices

__all__ = ["bake_head_textures", "is_head_model", "iris_colour_from_photo", "mesh_laplacian", "paint_features",
           "screened_smooth", "skin_likeness", "uv_islands"]

SKIN_PARTS = ("face", "head", "mouth_socket", "eye_socket")
SKIN_DATA_LENGTH = 0.008  # metres: low-pass length of the photo's skin colour in the fill
MEDIAN_LENGTH = 0.05  # metres: far from the seen face the fill relaxes to the median skin over this length
SOCKET_LENGTH = 0.003  # metres: the sockets reach their own colour within a few mm of the lips / eyelids
PHOTO_WEIGHT_LENGTH = 0.003  # metres: smoothing of the photo weight (no hard edge at occlusion boundaries)
PHOTO_WEIGHT_FADE = (0.08, 0.3)  # smoothed confidence below/above: fill / photo, smooth in between
BOUNDARY_RAMP = 0.002  # metres: the photo weight fades to 0 over this distance from the face part's border
DATA_CONFIDENCE = (0.3, 0.6)  # texel confidence ramp of the skin data (grazing views smear, leave them out)
LANDMARK_REACH = 0.008  # metres: beyond this from every landmark the photo must look like skin to stay
POCKET_AREA = 4e-4  # m^2: unseen face regions smaller than this (nostrils, ear folds) are inpainted from the photo
# Linear albedo of the painted parts (sRGB in the comments).
MOUTH_SOCKET_COLOUR = (0.13, 0.035, 0.03)  # dark red-brown (0.40, 0.21, 0.19)
EYE_SOCKET_COLOUR = (0.10, 0.04, 0.03)  # dark brown (0.35, 0.22, 0.19)
SCLERA_COLOUR = (0.68, 0.60, 0.53)  # off-white (0.85, 0.80, 0.76)
SCLERA_EDGE_COLOUR = (0.60, 0.36, 0.31)  # reddish towards the back (0.80, 0.64, 0.60)
TEETH_COLOUR = (0.62, 0.54, 0.40)  # ivory (0.81, 0.76, 0.67)
GUMS_COLOUR = (0.46, 0.13, 0.13)  # pink-red (0.71, 0.40, 0.40)
PUPIL_COLOUR = (0.012, 0.010, 0.010)
DEFAULT_IRIS_COLOUR = (0.09, 0.05, 0.025)  # brown, when the photo gives none
# Specular reflectance k_s of the painted parts (skin takes the median of the seen face).
PART_SPECULAR = {"mouth_socket": 0.01, "eye_socket": 0.01, "gums_tongue": 0.12, "teeth": 0.2, "sclera": 0.35, "iris": 0.35}


def is_head_model(model) -> bool:
    """True for a model with a face part and a head part (textured by :func:`bake_head_textures`)."""
    names = getattr(model, "part_names", None) or []
    return getattr(model, "vertex_part", None) is not None and "face" in names and "head" in names


# ----------------------------------------------------------------------------- mesh operators


def mesh_laplacian(vertices: np.ndarray, triangles: np.ndarray, n: int | None = None):
    """Cotangent Laplacian (n, n) sparse CSC (weights clamped at 0, so the maximum principle holds)
    and lumped vertex areas (n,) of a mesh. vertices (n, 3), triangles (F, 3) indices into them."""
    from scipy import sparse

    v = np.asarray(vertices, dtype=np.float64)
    t = np.asarray(triangles, dtype=np.int64)
    n = len(v) if n is None else int(n)
    p = v[t]  # (F, 3, 3)
    rows, cols, vals = [], [], []
    area = 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1)
    for k in range(3):
        i, j, o = t[:, (k + 1) % 3], t[:, (k + 2) % 3], k  # edge (i, j) opposite corner o
        a = p[:, (k + 1) % 3] - p[:, o]
        b = p[:, (k + 2) % 3] - p[:, o]
        cot = (a * b).sum(1) / np.maximum(np.linalg.norm(np.cross(a, b), axis=1), 1e-20)
        w = 0.5 * np.clip(cot, 0.0, 1e3)
        rows += [i, j]
        cols += [j, i]
        vals += [w, w]
    W = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    L = sparse.diags(np.asarray(W.sum(1)).ravel()) - W
    mass = np.bincount(t.reshape(-1), weights=np.repeat(area / 3.0, 3), minlength=n)
    return L.tocsc(), mass


def screened_smooth(L, mass: np.ndarray, data_weight: np.ndarray, data: np.ndarray, prior_weight: np.ndarray,
                    prior: np.ndarray) -> np.ndarray:
    """Solve (L + M diag(data_weight + prior_weight)) x = M (data_weight d + prior_weight p).

    L (n, n) sparse Laplacian, mass (n,), weights (n,) in 1/m^2 (a weight 1/l^2 lets x follow its
    target over a length l); data, prior (n, C). prior_weight must be > 0 where no data reaches.
    Vertices without area (not on the mesh) are left out and keep their prior. Returns x (n, C) float64.
    """
    from scipy import sparse
    from scipy.sparse.linalg import splu

    data_weight = np.asarray(data_weight, dtype=np.float64)
    prior_weight = np.asarray(prior_weight, dtype=np.float64)
    data, prior = np.asarray(data, dtype=np.float64), np.asarray(prior, dtype=np.float64)
    x = prior.copy()  # vertices off the mesh (no area) keep their prior
    on = np.flatnonzero(mass > 0)
    if not len(on):
        return x
    m = mass[on]
    A = (L[on][:, on] + sparse.diags(m * (data_weight[on] + prior_weight[on]))).tocsc()
    rhs = m[:, None] * (data_weight[on, None] * data[on] + prior_weight[on, None] * prior[on])
    x[on] = splu(A).solve(np.ascontiguousarray(rhs))
    return x


def _splat(uv_raster: RasterResult, triangles: np.ndarray, group: np.ndarray, n: int, weights: np.ndarray,
           values: np.ndarray | None = None):
    """Texels -> welded vertices by the texels' barycentric weights.

    weights (T, T) per texel; values (T, T, C) or None. Returns (sum of b w (n,), sum of b w v (n, C) or None,
    sum of b (n,)) over the covered texels.
    """
    fid = uv_raster.face_id.reshape(-1)
    idx = np.flatnonzero(fid >= 0)
    corners = group[np.asarray(triangles, dtype=np.int64)[fid[idx]]].reshape(-1)
    b = uv_raster.bary.reshape(-1, 3)[idx].astype(np.float64)
    w = weights.reshape(-1)[idx][:, None] * b
    den = np.bincount(corners, weights=b.reshape(-1), minlength=n)
    wsum = np.bincount(corners, weights=w.reshape(-1), minlength=n)
    if values is None:
        return wsum, None, den
    vals = values.reshape(len(fid), -1)[idx]
    num = np.stack([np.bincount(corners, weights=(w * vals[:, c:c + 1]).reshape(-1), minlength=n)
                    for c in range(vals.shape[1])], 1)
    return wsum, num, den


def _ramp_from(sources: np.ndarray, lengths_graph, length: float) -> np.ndarray:
    """(n,) smoothstep of the graph distance (metres along edges) from ``sources`` over ``length``."""
    from scipy.sparse.csgraph import dijkstra

    n = lengths_graph.shape[0]
    if not sources.any():
        return np.ones(n)
    d = dijkstra(lengths_graph, directed=False, indices=np.flatnonzero(sources), min_only=True, limit=length)
    t = np.clip(np.nan_to_num(d, posinf=length) / length, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _edge_graph(vertices: np.ndarray, triangles: np.ndarray, n: int):
    """(n, n) sparse upper-triangular edge lengths of a mesh (for graph distances and components)."""
    from scipy import sparse

    e = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    e = np.unique(np.sort(e, axis=1), axis=0)
    e = e[e[:, 0] != e[:, 1]]
    length = np.linalg.norm(vertices[e[:, 0]] - vertices[e[:, 1]], axis=1) + 1e-9
    return sparse.csr_matrix((length, (e[:, 0], e[:, 1])), shape=(n, n))


# ----------------------------------------------------------------------------- skin colour


def _colour_features(rgb: np.ndarray) -> np.ndarray:
    """(N, 3): log R/G, log B/G (chromaticity: shading changes it little) and log luminance."""
    eps = 1e-4
    rgb = np.asarray(rgb, dtype=np.float64)
    lum = 0.2126 * rgb[:, 0] + 0.7152 * rgb[:, 1] + 0.0722 * rgb[:, 2]
    return np.stack([np.log((rgb[:, 0] + eps) / (rgb[:, 1] + eps)), np.log((rgb[:, 2] + eps) / (rgb[:, 1] + eps)),
                     np.log(lum + eps)], 1)


def skin_likeness(colours: np.ndarray, reference: np.ndarray, sigmas: float = 2.5) -> tuple[np.ndarray, np.ndarray]:
    """Soft skin mask: how close each colour is to the dominant colour of ``reference``.

    colours (N, 3), reference (M, 3) linear RGB (e.g. well-seen face texels: mostly skin).
    Distance in robust standard deviations (MAD) of chromaticity and log luminance; returns
    (likeness (N,) = exp(-d^2 / (2 sigmas^2)), median colour (3,) of the reference's skin-like texels).
    Hair, brows, lips, eyes and stubble drop out; shading left in the albedo hardly matters.
    """
    f = _colour_features(colours)
    r = _colour_features(reference)
    centre = np.median(r, axis=0)
    spread = np.maximum(1.4826 * np.median(np.abs(r - centre), axis=0), (0.03, 0.03, 0.1))
    d2 = (((f - centre) / spread) ** 2).sum(1)
    like = np.exp(-0.5 * d2 / sigmas ** 2)
    ref_like = np.exp(-0.5 * (((r - centre) / spread) ** 2).sum(1) / sigmas ** 2)
    skin = reference[ref_like > 0.25] if (ref_like > 0.25).sum() >= 10 else reference
    return like, np.median(skin, axis=0)


# ----------------------------------------------------------------------------- eyes, teeth, mouth


def iris_colour_from_photo(photo_linear: np.ndarray, points_px: np.ndarray, sh: np.ndarray | None = None,
                           normals_image: np.ndarray | None = None) -> np.ndarray:
    """Linear iris albedo (3,) from the photo around the mediapipe iris landmarks (468-472, 473-477).

    Pixels of an annulus (0.35-0.9 of the iris radius: no pupil, little eyelid) are pooled over
    both eyes; the brightest third (highlights, sclera) and darkest tenth (lashes) are dropped, the
    median is divided by the SH shading of the eye's normal. Falls back to DEFAULT_IRIS_COLOUR when
    there are no iris landmarks or too few pixels.
    """
    pts = np.asarray(points_px, dtype=np.float64)
    default = np.array(DEFAULT_IRIS_COLOUR)
    if pts.ndim != 2 or len(pts) < 478 or not np.isfinite(pts[468:478, :2]).all():
        return default
    h, w = photo_linear.shape[:2]
    samples, shading = [], []
    for centre, ring in ((468, range(469, 473)), (473, range(474, 478))):
        c = pts[centre, :2]
        radius = float(np.mean(np.linalg.norm(pts[list(ring), :2] - c, axis=1)))
        if not radius > 1.0:
            continue
        # Pixels of the annulus, from a window around the iris only (photos may be large).
        r0, r1 = int(max(c[1] - radius - 1, 0)), int(min(c[1] + radius + 2, h))
        c0, c1 = int(max(c[0] - radius - 1, 0)), int(min(c[0] + radius + 2, w))
        rows, cols = np.mgrid[r0:r1, c0:c1]
        d = np.hypot(cols + 0.5 - c[0], rows + 0.5 - c[1]) / radius
        sel = (d > 0.35) & (d < 0.9)
        samples.append(np.asarray(photo_linear[r0:r1, c0:c1], dtype=np.float64)[sel])
        if sh is not None and normals_image is not None:
            from ..envmap import render_sh

            i, j = int(np.clip(c[1], 0, h - 1)), int(np.clip(c[0], 0, w - 1))
            shading.append(render_sh(np.asarray(normals_image[i, j], dtype=np.float64)[None], sh)[0])
    if not samples or sum(len(s) for s in samples) < 6:
        return default
    px = np.concatenate(samples)
    lum = px @ np.array([0.2126, 0.7152, 0.0722])
    lo, hi = np.percentile(lum, [10, 67])
    keep = px[(lum >= lo) & (lum <= hi)]
    colour = np.median(keep if len(keep) >= 3 else px, axis=0)
    if shading:
        colour = colour / np.maximum(np.mean(shading, axis=0), 0.05)
    # An iris is dark and not very saturated: clamp what glare, closed eyes or glasses can produce.
    lum_c = float(colour @ np.array([0.2126, 0.7152, 0.0722]))
    if not np.isfinite(lum_c) or lum_c <= 0:
        return default
    colour = colour * (np.clip(lum_c, 0.01, 0.3) / lum_c)
    return np.clip(colour, 0.003, 0.6)


def _value_noise(points: np.ndarray, scale: float, seed: int) -> np.ndarray:
    """Smooth deterministic noise in [-1, 1] of 3D points (sum of random plane waves, wavelength ~ scale)."""
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(8, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    freq = 2 * np.pi / scale * rng.uniform(0.7, 1.4, 8)
    phase = rng.uniform(0, 2 * np.pi, 8)
    return np.sin(points @ (dirs * freq[:, None]).T + phase).mean(1) * np.sqrt(2.0)


def _eye_frames(template: np.ndarray, part: np.ndarray, part_names: list[str]):
    """Per eye (x < 0, x > 0): (side, eyeball centre (3,), forward axis (3,), iris and pupil angular radii (radians))."""
    sclera = part == part_names.index("sclera")
    iris = part == part_names.index("iris")
    frames = []
    for side in (-1.0, 1.0):
        s = sclera & (np.sign(template[:, 0]) == side)
        i = iris & (np.sign(template[:, 0]) == side)
        p = template[s]
        # Least-squares sphere through the sclera: |p|^2 = 2 c.p + (r^2 - |c|^2).
        A = np.concatenate([2 * p, np.ones((len(p), 1))], 1)
        sol = np.linalg.lstsq(A, (p * p).sum(1), rcond=None)[0]
        centre = sol[:3]
        # The iris disc is the iris part's front-most layer.
        q = template[i]
        front = q[q[:, 2] > np.percentile(q[:, 2], 100.0 * (1 - 0.35))] if len(q) else p[p[:, 2] > np.percentile(p[:, 2], 90)]
        axis = front.mean(0) - centre
        axis /= np.linalg.norm(axis)
        ang = np.arccos(np.clip(((front - centre) / np.linalg.norm(front - centre, axis=1, keepdims=True)) @ axis, -1, 1))
        iris_angle = float(np.percentile(ang, 99)) if len(ang) else 0.55
        pupil_angle = float(np.percentile(ang, 1)) if len(ang) else 0.2
        pupil_angle = float(np.clip(pupil_angle, 0.25 * iris_angle, 0.6 * iris_angle))
        frames.append((side, centre, axis, iris_angle, pupil_angle))
    return frames


def _smooth01(x, lo, hi):
    t = np.clip((np.asarray(x, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def paint_eye(points: np.ndarray, frame, iris_colour: np.ndarray, azimuth: np.ndarray | None = None) -> np.ndarray:
    """Linear albedo (N, 3) of eyeball points (template, one eye): pupil, iris, limbus and sclera by the
    angle from the eye's axis seen from the eyeball centre; iris fibres by ``azimuth`` (N,) radians.

    Both eyes share the eye cells (a texel is painted from whichever eye won it), so the colour must
    depend only on what the two eyes have in common at a texel: this angle and the texel's own UV
    position (the caller's azimuth, around its UV island's centre). The fibres fade out before the
    iris edge, where the eye's UV seams lie.
    """
    _, centre, axis, iris_angle, pupil_angle = frame
    d = points - centre
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    theta = np.arccos(np.clip(d @ axis, -1.0, 1.0))
    rho = theta / iris_angle  # 1 at the iris edge
    iris = np.asarray(iris_colour, dtype=np.float64)
    # Radial fibres (fixed random harmonics of the azimuth), a brighter collarette, a dark limbal ring.
    fibres = np.zeros(len(points))
    if azimuth is not None:
        rng = np.random.default_rng(7)
        k = rng.integers(12, 48, 10)
        fibres = np.mean([np.sin(kk * azimuth + rng.uniform(0, 2 * np.pi)) for kk in k], axis=0)
        fibres *= _smooth01(rho, 0.3, 0.5) * (1.0 - _smooth01(rho, 0.8, 0.95))
    collarette = np.exp(-0.5 * ((rho - 0.45) / 0.08) ** 2)
    shade = (1.0 + 0.35 * fibres) * (1.0 + 0.35 * collarette) * (1.0 - 0.55 * _smooth01(rho, 0.75, 0.98))
    iris_rgb = np.clip(iris[None] * shade[:, None], 0.0, 1.0)
    pupil = 1.0 - _smooth01(theta, pupil_angle * 0.92, pupil_angle * 1.08)
    iris_rgb = pupil[:, None] * np.array(PUPIL_COLOUR) + (1 - pupil[:, None]) * iris_rgb
    # Sclera: off-white near the cornea, reddish towards the back.
    edge = _smooth01(theta, 0.8, 1.6)[:, None]
    sclera = (1 - edge) * np.array(SCLERA_COLOUR) + edge * np.array(SCLERA_EDGE_COLOUR)
    limbus = _smooth01(rho, 0.98, 1.12)[:, None]  # iris -> sclera, through the dark limbal ring above
    return (1 - limbus) * iris_rgb + limbus * sclera


def paint_features(template: np.ndarray, vertex_part: np.ndarray, part_names: list[str], points: np.ndarray,
                   part: np.ndarray, iris_colour: np.ndarray, azimuth: np.ndarray | None = None) -> np.ndarray:
    """Linear albedo (N, 3) of points (N, 3) on the eyes, teeth and gums/tongue (template model frame,
    ``part`` (N,) their labels); other parts' rows are grey. ``template`` (V, 3) and ``vertex_part`` (V,)
    locate the eyeballs and the mouth; ``azimuth`` (N,): see :func:`paint_eye`."""
    out = np.full((len(points), 3), 0.18)
    vpart = np.asarray(vertex_part)
    tmpl = np.asarray(template, dtype=np.float64)
    names = list(part_names)
    eye_sel = np.isin(part, [names.index("sclera"), names.index("iris")])
    if eye_sel.any():
        for side, *rest in _eye_frames(tmpl, vpart, names):
            sel = eye_sel & (np.sign(points[:, 0]) == side)
            out[sel] = paint_eye(points[sel], (side, *rest), iris_colour, None if azimuth is None else azimuth[sel])
    mouth = np.isin(vpart, [names.index("teeth"), names.index("gums_tongue")])
    if mouth.any():
        z_front, z_back = tmpl[mouth, 2].max(), tmpl[mouth, 2].min()
        for name, colour, wobble in (("teeth", TEETH_COLOUR, 0.05), ("gums_tongue", GUMS_COLOUR, 0.12)):
            sel = part == names.index(name)
            if not sel.any():
                continue
            # Deeper into the mouth is darker (what little light gets in): baked occlusion.
            depth = _smooth01(points[sel, 2], z_back, z_front)
            shade = (0.35 + 0.65 * depth) * (1.0 + wobble * _value_noise(points[sel], 0.006, 11))
            out[sel] = np.asarray(colour)[None] * shade[:, None]
    return out


# ----------------------------------------------------------------------------- the whole atlas


def bake_head_textures(
    maps: dict[str, np.ndarray],
    model,
    fit,
    uv_raster: RasterResult,
    *,
    image_raster: RasterResult | None = None,
    image_mask: np.ndarray | None = None,
    photo_linear: np.ndarray | None = None,
    landmarks_px: np.ndarray | None = None,
    sh: np.ndarray | None = None,
    normals_image: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Albedo, normal and specular atlases of a head model from one photo (module doc).

    maps : "albedo" (H, W, 3) linear, "normal" (H, W, 3) camera-frame unit normals, "specular" (H, W)
        image-space maps (the intrinsics). model : a head :class:`FaceModel` (:func:`is_head_model`);
        fit : its :class:`FaceFit`. uv_raster : ``rasterize_uv(model.uvs, model.triangles, T)``.
    image_raster : the fitted mesh rasterised in the photo. image_mask : (H, W) bool pixels where the
        maps hold data (the intrinsics mask). photo_linear (H, W, 3), landmarks_px (478, 2+), sh (9, 3)
        and normals_image (H, W, 3): for the iris colour (default brown without them).

    Returns the keys of :func:`pnrelight.avatar.uv.bake_textures` ("albedo" (T, T, 3), "normal"
    (T, T, 3) model frame, "specular" (T, T), "confidence", "filled_confidence", "coverage", "visible")
    plus "photo_weight" (T, T): the share of the photo in each texel (alpha), "iris_colour" (3,).
    """
    T = uv_raster.face_id.shape[0]
    tris = np.asarray(model.triangles, dtype=np.int64)
    names = list(model.part_names)
    vpart = np.asarray(model.vertex_part, dtype=np.int64)
    R = np.asarray(fit.rotation, dtype=np.float64)
    verts_cam = np.asarray(fit.vertices, dtype=np.float64)
    verts_model = (verts_cam - np.asarray(fit.translation, dtype=np.float64)) @ R  # fitted shape, model frame
    template = np.asarray(model.vertices, dtype=np.float64)
    coverage = uv_raster.mask
    fid = np.maximum(uv_raster.face_id, 0)
    # A triangle's part: the most specific (largest) label of its corners (face/head border triangles are head).
    tri_part = vpart[tris].max(1)
    texel_part = np.where(coverage, tri_part[fid], -1)
    face_id = names.index("face")
    skin_ids = [names.index(p) for p in SKIN_PARTS if p in names]
    # The photo layer: face triangles of UV islands that are mostly face. The few face-labelled triangles
    # of other islands (rims of the socket islands, a band of the skull island) are filled like the head,
    # so the photo layer fades out before every UV seam that leaves the face cell.
    island = uv_islands(tris, len(template))
    photo_tri = (tri_part == face_id) & _mostly_face_islands(template, tris, island, tri_part == face_id)
    face_tex = coverage & photo_tri[fid]

    # -- layer 1, the photo: sampled on the face cell's texels
    mirror = None
    if model.uv_mirror is not None:
        mirror = texel_mirror_map(model.uvs, tris, model.uv_mirror, uv_raster, template)
    s = sample_textures(maps, verts_cam, tris, model.uvs, fit.focal_px, fit.principal_point, T, rotation=R,
                        mirror=False if mirror is None else mirror, image_raster=image_raster, uv_raster=uv_raster,
                        region=face_tex, image_mask=image_mask)
    weight = np.clip(s["weight"], 0.0, 1.0)

    # -- mesh: welded skin vertices, operators in the fitted shape's metric
    group = weld_vertices(template)
    n = int(group.max()) + 1
    pos = np.zeros((n, 3))
    pos[group] = verts_model
    gpart = np.full(n, -1)
    np.maximum.at(gpart, group, vpart)
    skin_tri = np.isin(tri_part, skin_ids)
    tg = group[tris]
    L, mass = mesh_laplacian(pos, tg[skin_tri], n)
    graph = _edge_graph(pos, tg[skin_tri], n)
    on_skin = mass > 0
    # Photo-layer vertices that touch another triangle: the photo layer's border.
    border = np.zeros(n, dtype=bool)
    border[tg[skin_tri & ~photo_tri].reshape(-1)] = True
    face_v = np.zeros(n, dtype=bool)
    face_v[tg[photo_tri].reshape(-1)] = True

    # -- skin colour of the photo layer (before inpainting: only what the photo saw)
    known = s["known"] & face_tex
    albedo_s = s["textures"]["albedo"]
    inner = _inner_face_texels(model, verts_model, uv_raster, tris) & known & (weight > 0.5)
    if inner.sum() < 50:
        inner = known & (weight > 0.5)
    reference = albedo_s[inner] if inner.any() else np.full((1, 3), 0.3)
    like, skin_median = skin_likeness(albedo_s.reshape(-1, 3), reference)
    like = np.where(known, like.reshape(T, T), 0.0)

    # -- layer 3, the photo weight per vertex
    wsum, _, den = _splat(uv_raster, tris, group, n, np.where(face_tex, weight, 0.0))
    w_v = np.where(den > 0, wsum / np.maximum(den, 1e-12), 0.0)
    # Away from the face proper (scalp, neck, ears: beyond the landmarks) the photo stays only where it
    # looks like skin: collars and hair there give way to the skin fill.
    lsum, _, _ = _splat(uv_raster, tris, group, n, np.where(known, like, 0.0) * np.where(face_tex, weight, 0.0))
    like_v = np.where(wsum > 0, lsum / np.maximum(wsum, 1e-12), 0.0)
    beyond = _beyond_landmarks(model, verts_model, pos, fit=fit, landmarks_px=landmarks_px,
                               image_shape=None if image_mask is None else image_mask.shape)
    w_v = w_v * (1.0 - beyond * (1.0 - like_v ** 2))
    w_v[~face_v | border] = 0.0
    w_v = _close_pockets(w_v, face_v & ~border, graph, mass, beyond)
    has = (den > 0) | ~face_v
    tiny = 1.0 / MEDIAN_LENGTH ** 2 * 1e-3  # keeps the system definite where no texel lands
    a = screened_smooth(L, mass, np.where(has, 1.0 / PHOTO_WEIGHT_LENGTH ** 2, 0.0), w_v[:, None],
                        np.full(n, tiny), np.zeros((n, 1)))[:, 0]
    alpha_v = _smooth01(a, *PHOTO_WEIGHT_FADE) * _ramp_from(border | (on_skin & ~face_v), graph, BOUNDARY_RAMP)
    alpha_v[~face_v] = 0.0
    alpha = np.where(face_tex, interpolate(alpha_v[group], tris, uv_raster), 0.0)

    # Inpaint only where the photo layer shows (alpha > 0); elsewhere the cheap nearest fill is overwritten.
    photo = fill_texture_holes(s["textures"], s["known"], face_tex & (alpha > 1e-4))

    # -- layer 2, the skin fill on the mesh: data = well-seen, skin-coloured texels
    c_tex = np.where(known, _smooth01(weight, *DATA_CONFIDENCE) * like, 0.0)
    csum, num, den_d = _splat(uv_raster, tris, group, n, c_tex, albedo_s)
    d = num / np.maximum(csum, 1e-12)[:, None]
    c_v = np.where(den_d > 0, csum / np.maximum(den_d, 1e-12), 0.0)
    spec_seen = s["textures"]["specular"][..., 0][c_tex > 0.5] if (c_tex > 0.5).any() else np.zeros(1)
    skin_spec = float(np.median(spec_seen))
    prior = np.tile(np.append(skin_median, skin_spec), (n, 1))
    prior_w = np.full(n, 1.0 / MEDIAN_LENGTH ** 2)
    for name, colour in (("mouth_socket", MOUTH_SOCKET_COLOUR), ("eye_socket", EYE_SOCKET_COLOUR)):
        if name in names:
            sel = gpart == names.index(name)
            prior[sel] = (*colour, PART_SPECULAR[name])
            prior_w[sel] = 1.0 / SOCKET_LENGTH ** 2
    data = np.concatenate([d, np.full((n, 1), skin_spec)], 1)
    fill_v = screened_smooth(L, mass, c_v / SKIN_DATA_LENGTH ** 2, data, prior_w, prior)
    # Mesh normals of the fitted shape in the model frame, welded (no crease along UV seams).
    nrm_v = vertex_normals(pos, tg)
    per_vertex = interpolate(np.concatenate([fill_v, nrm_v], 1)[group], tris, uv_raster).astype(np.float64)
    fill, mesh_n = per_vertex[..., :4], per_vertex[..., 4:]

    # -- composite
    photo_n = photo["normal"] / np.maximum(np.linalg.norm(photo["normal"], axis=-1, keepdims=True), 1e-12)
    a3 = alpha[..., None]
    skin = np.isin(texel_part, skin_ids)[..., None]
    albedo = np.where(skin, a3 * photo["albedo"] + (1 - a3) * fill[..., :3], 0.0)
    spec = np.where(skin[..., 0], alpha * photo["specular"][..., 0] + (1 - alpha) * fill[..., 3], 0.0)
    normal = np.where(skin, a3 * photo_n + (1 - a3) * mesh_n, mesh_n)
    # Painted parts: eyes, teeth, gums/tongue from their template position.
    iris = np.array(DEFAULT_IRIS_COLOUR)
    if photo_linear is not None and landmarks_px is not None:
        iris = iris_colour_from_photo(photo_linear, landmarks_px, sh, normals_image)
    painted = coverage & ~skin[..., 0]
    if painted.any():
        pts = interpolate(template, tris, uv_raster)[painted]
        azimuth = _uv_azimuth(model.uvs, tris, island, uv_raster)[painted]
        albedo[painted] = paint_features(template, vpart, names, pts, texel_part[painted], iris, azimuth)
        spec[painted] = np.array([PART_SPECULAR.get(names[p], 0.1) for p in range(len(names))])[texel_part[painted]]
    normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-12)
    # Pad past the islands with the nearest covered texel (bilinear lookups and mip-maps never see black).
    from scipy import ndimage

    _, (ri, ci) = ndimage.distance_transform_edt(~coverage, return_indices=True)
    out = {"albedo": np.clip(albedo[ri, ci], 0.0, 1.0).astype(np.float32), "normal": normal[ri, ci].astype(np.float32),
           "specular": np.clip(spec[ri, ci], 0.0, 1.0).astype(np.float32)}
    out["confidence"] = np.where(face_tex, s["confidence"], 0.0).astype(np.float32)
    out["filled_confidence"] = np.where(face_tex, weight, 0.0).astype(np.float32)
    out["coverage"] = coverage
    out["visible"] = s["visible"] & face_tex
    out["photo_weight"] = alpha.astype(np.float32)
    out["iris_colour"] = np.asarray(iris, dtype=np.float32)
    return out


def uv_islands(triangles: np.ndarray, num_vertices: int) -> np.ndarray:
    """(F,) UV island of each triangle: connected components by vertex index (vertices are split along UV seams)."""
    from scipy import sparse
    from scipy.sparse.csgraph import connected_components

    t = np.asarray(triangles, dtype=np.int64)
    e = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    adj = sparse.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(num_vertices, num_vertices))
    return connected_components(adj, directed=False)[1][t[:, 0]]


def _uv_azimuth(uvs: np.ndarray, tris: np.ndarray, island: np.ndarray, uv_raster: RasterResult) -> np.ndarray:
    """(T, T) angle of each texel's UV around the UV centroid of its island."""
    uv_t = np.asarray(uvs, dtype=np.float64)[tris].mean(1)  # triangle centroids
    count = np.bincount(island)
    cu = np.bincount(island, weights=uv_t[:, 0]) / np.maximum(count, 1)
    cv = np.bincount(island, weights=uv_t[:, 1]) / np.maximum(count, 1)
    texel_uv = interpolate(uvs, tris, uv_raster)
    isl = island[np.maximum(uv_raster.face_id, 0)]
    return np.arctan2(texel_uv[..., 1] - cv[isl], texel_uv[..., 0] - cu[isl])


def _mostly_face_islands(vertices: np.ndarray, tris: np.ndarray, island: np.ndarray, face_tri: np.ndarray) -> np.ndarray:
    """(F,) bool: triangles of UV islands (``island`` (F,)) whose 3D area is mostly face-part triangles."""
    p = vertices[tris]
    area = 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1)
    total = np.bincount(island, weights=area)
    face = np.bincount(island, weights=area * face_tri, minlength=len(total))
    return (face > 0.5 * total)[island]


def _inner_face_texels(model, verts_model: np.ndarray, uv_raster: RasterResult, tris: np.ndarray) -> np.ndarray:
    """(T, T) bool: texels inside the box of the mediapipe landmarks (the face proper, not the scalp or neck)."""
    lm = model.landmark_points(verts_model.astype(np.float32))
    lm = lm[np.isfinite(lm[:, 0])]
    if len(lm) < 10:
        return uv_raster.mask
    lo, hi = lm.min(0), lm.max(0)
    margin = 0.1 * (hi - lo)
    p = interpolate(verts_model, tris, uv_raster)
    inside = np.all((p[..., :2] > lo[:2] + margin[:2]) & (p[..., :2] < hi[:2] - margin[:2]), axis=-1)
    return inside & uv_raster.mask


def _beyond_landmarks(model, verts_model: np.ndarray, points: np.ndarray, *, fit=None, landmarks_px=None,
                      image_shape=None) -> np.ndarray:
    """(n,) in [0, 1]: 0 on the face proper (within LANDMARK_REACH of a mediapipe landmark), rising to 1
    at twice that distance (scalp, neck, ears).

    The face proper also takes the front-facing vertices that project inside the detected landmarks'
    outline (their convex hull): the model has no fixed points for mediapipe's face-oval landmarks, yet
    the cheeks up to that outline are face.
    """
    from scipy.spatial import cKDTree

    lm = model.landmark_points(verts_model.astype(np.float32))
    lm = lm[np.isfinite(lm[:, 0])]
    if fit is not None and landmarks_px is not None and image_shape is not None:
        from .camera import project
        from .face_model import vertex_normals
        from .pipeline import landmark_hull_mask

        cam = np.asarray(fit.vertices, dtype=np.float64)
        facing = (vertex_normals(cam, model.triangles) * -cam).sum(1) > 0
        px = np.floor(project(cam, fit.focal_px, fit.principal_point)).astype(np.int64)
        h, w = image_shape[:2]
        ok = facing & (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
        hull = landmark_hull_mask(landmarks_px, (h, w))
        inside = np.zeros(len(cam), dtype=bool)
        inside[ok] = hull[px[ok, 1], px[ok, 0]]
        if model.vertex_part is not None and model.part_names and "face" in model.part_names:
            inside &= model.vertex_part == model.part_names.index("face")
        lm = np.concatenate([lm, verts_model[inside].astype(np.float32)])
    if len(lm) < 10:
        return np.zeros(len(points))
    dist, _ = cKDTree(lm).query(points)
    return _smooth01(dist, LANDMARK_REACH, 2 * LANDMARK_REACH)


def _components(sel: np.ndarray, graph, mass: np.ndarray):
    """Connected components of the vertices ``sel`` (n,) bool: (their indices, component label of each, area per component)."""
    from scipy.sparse.csgraph import connected_components

    idx = np.flatnonzero(sel)
    ncomp, label = connected_components(graph[idx][:, idx], directed=False)
    return idx, label, np.bincount(label, weights=mass[idx], minlength=ncomp)


def _close_pockets(w_v: np.ndarray, interior: np.ndarray, graph, mass: np.ndarray, beyond: np.ndarray) -> np.ndarray:
    """Clean the photo weight (n,) of the face part's ``interior`` vertices on the mesh:

    * unseen regions that are small and enclosed by seen ones (nostrils, ear folds, under the nose
      wings) keep the photo layer: weight 1, so they are inpainted, not filled with skin;
    * small seen islands away from the face proper (``beyond`` > 0.5 throughout: a skin-coloured
      speck of collar or hair) are dropped: weight 0.
    """
    out = w_v.copy()
    unseen = interior & (w_v < PHOTO_WEIGHT_FADE[0])
    if unseen.any():
        idx, label, area = _components(unseen, graph, mass)
        # A pocket must not reach the face part's border (then it is the unseen outside, e.g. behind the ears).
        touches = np.zeros(len(area), dtype=bool)
        nbr_outside = np.asarray((graph + graph.T) @ (~interior).astype(np.float64)).ravel() > 0
        touches[label[nbr_outside[idx]]] = True
        pocket = (area < POCKET_AREA) & ~touches
        out[idx[pocket[label]]] = 1.0
    seen = interior & (out >= PHOTO_WEIGHT_FADE[0])
    if seen.any():
        idx, label, area = _components(seen, graph, mass)
        near = np.zeros(len(area), dtype=bool)
        near[label[beyond[idx] < 0.5]] = True
        speck = (area < POCKET_AREA) & ~near
        out[idx[speck[label]]] = 0.0
    return out
