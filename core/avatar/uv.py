"""Bake per-pixel maps of a photo into the face model's UV space.

For every texel we find its surface point (texture-space rasterization), project
it into the photo with the fitted camera, keep it only when it passes the
image-space z-buffer test, and weight it by the view-angle confidence
``max(0, n . v)``. Texels with low confidence borrow from their mirrored texel
(the default UV layout is left/right symmetric: the mirror of (u, v) is (1 - u, v));
texels still seen only at grazing angles fade into a confidence-weighted local average
(grazing views smear a few pixels over many texels); what is left empty is inpainted
(OpenCV Telea) and the UV islands are padded so bilinear filtering and mip-mapping show no seams.

Normal maps are baked in the MODEL frame (object space of the face model: x to the
right of a viewer facing the face, y up, z out of the face; the face's symmetry plane
is x = 0): camera-frame normals are rotated by ``rotation.T``, so mirroring is a flip of x.
"""
from __future__ import annotations

import numpy as np

from .camera import project, project_with_depth
from .face_model import vertex_normals
from .raster import RasterResult, interpolate, rasterize, rasterize_uv

__all__ = ["bake_textures", "fill_texture_holes", "rasterize_camera", "uv_layout_is_mirror_symmetric"]

MIRROR_CONFIDENCE = 0.3  # below this view-angle confidence the mirrored texel is blended in
CONFIDENCE_FADE = (0.05, 0.3)  # texels below/above: local average / their own sample, smooth in between
SMOOTH_SIGMA = 0.01  # local-average radius (Gaussian sigma) as a fraction of the texture size
LOCAL_CONFIDENCE_MIN = 0.05  # mean confidence nearby below which a texel is inpainted instead
PAD_TEXELS = 8  # padding around UV islands (inpainted), beyond that nearest-texel fill


def rasterize_camera(vertices_cam: np.ndarray, triangles: np.ndarray, focal_px: float, principal_point, height: int, width: int) -> RasterResult:
    """Perspective-correct z-buffer rasterization of a camera-frame mesh into an (height, width) image."""
    verts = project_with_depth(vertices_cam, focal_px, principal_point).astype(np.float64)
    verts[:, 2] = np.asarray(vertices_cam, dtype=np.float64)[:, 2]  # full-precision depth
    return rasterize(verts, triangles, height, width, perspective_correct=True)


def uv_layout_is_mirror_symmetric(uvs: np.ndarray, uv_mirror: np.ndarray | None, tol: float = 2e-3) -> bool:
    """True when the vertex mirror map sends (u, v) to (1 - u, v) (texel mirroring is then valid)."""
    if uv_mirror is None:
        return False
    uvs = np.asarray(uvs, dtype=np.float64)
    m = uvs[np.asarray(uv_mirror, dtype=np.int64)]
    return bool(np.all(np.abs(m[:, 0] - (1.0 - uvs[:, 0])) < tol) and np.all(np.abs(m[:, 1] - uvs[:, 1]) < tol))


def bake_textures(
    maps: dict[str, np.ndarray],
    vertices_cam: np.ndarray,
    triangles: np.ndarray,
    uvs: np.ndarray,
    focal_px: float,
    principal_point,
    texture_size: int = 1024,
    *,
    rotation: np.ndarray | None = None,
    normal_keys: tuple[str, ...] = ("normal",),
    mirror: bool = True,
    image_raster: RasterResult | None = None,
    uv_raster: RasterResult | None = None,
    depth_tolerance: float = 0.01,
) -> dict[str, np.ndarray]:
    """Sample image-space maps into UV textures with visibility, confidence, mirror fill and inpainting.

    Parameters
    ----------
    maps : name -> (H, W, C) or (H, W) float image-space maps (e.g. "albedo" linear RGB,
        "normal" unit camera-frame normals, "specular" scalar). Keys in ``normal_keys`` are
        treated as unit normals: renormalised, rotated to the model frame, x-flipped when mirrored.
    vertices_cam : (V, 3) fitted vertices in the camera frame (OpenGL: camera looks down -z).
    triangles : (F, 3) counter-clockwise (seen from outside) triangles. uvs : (V, 2), v up.
    focal_px, principal_point : pinhole camera, see :func:`pnrelight.avatar.camera.project`.
    texture_size : T, textures are T x T (row 0 is v = 1, as in glTF images).
    rotation : (3, 3) model-to-camera rotation of the fit; normals are returned in the model
        frame (``R.T @ n``). None keeps camera-frame normals.
    mirror : fill low-confidence texels from their (1 - u, v) mirror; only valid for a
        left/right symmetric UV layout (see :func:`uv_layout_is_mirror_symmetric`).
    image_raster : the mesh already rasterised in the photo (saves time); computed when None.
    uv_raster : ``rasterize_uv(uvs, triangles, texture_size)`` if already computed.
    depth_tolerance : relative depth slack of the visibility test (fraction of the distance).

    Returns
    -------
    dict with, for each input key, a (T, T, C) (or (T, T)) float32 texture filled everywhere, plus
    "confidence" (T, T) float32 view-angle confidence of the texel's own observation (0 when
    occluded / outside the photo), "filled_confidence" (T, T) after mirroring,
    "coverage" (T, T) bool texels on the mesh, "visible" (T, T) bool texels seen in the photo.
    """
    first = next(iter(maps.values()))
    height, width = first.shape[:2]
    tris = np.asarray(triangles, dtype=np.int64)
    verts = np.asarray(vertices_cam, dtype=np.float64)
    T = int(texture_size)

    uv_r = rasterize_uv(uvs, tris, T) if uv_raster is None else uv_raster
    coverage = uv_r.mask
    idx = np.flatnonzero(coverage.reshape(-1))
    pts = interpolate(verts, tris, uv_r).reshape(-1, 3)[idx].astype(np.float64)
    nrm = interpolate(vertex_normals(verts, tris), tris, uv_r).reshape(-1, 3)[idx].astype(np.float64)
    nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)

    # Visibility: the texel's depth must match the photo's z-buffer at its projection.
    if image_raster is None:
        image_raster = rasterize_camera(verts, tris, focal_px, principal_point, height, width)
    pix = project(pts, focal_px, principal_point).astype(np.float64)
    col = np.floor(pix[:, 0]).astype(np.int64)
    row = np.floor(pix[:, 1]).astype(np.int64)
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height) & (pts[:, 2] < 0)
    zb = np.full(len(idx), np.inf)
    zb[inside] = image_raster.depth[row[inside], col[inside]]
    visible = inside & (pts[:, 2] >= zb - depth_tolerance * np.abs(pts[:, 2]))

    view = -pts / np.maximum(np.linalg.norm(pts, axis=1, keepdims=True), 1e-12)
    conf = np.where(visible, np.clip((nrm * view).sum(1), 0.0, 1.0), 0.0)

    # Bilinear samples of every map at the projected positions (cv2 pixel centres are integers).
    import cv2

    # cv2.remap needs maps under 32767 rows/cols: lay the samples out in rows of 1024.
    n = len(idx)
    rows = max(1, -(-n // 1024))
    mx = np.zeros(rows * 1024, np.float32)
    my = np.zeros(rows * 1024, np.float32)
    mx[:n] = pix[:, 0] - 0.5
    my[:n] = pix[:, 1] - 0.5
    mx, my = mx.reshape(rows, 1024), my.reshape(rows, 1024)
    rot = None if rotation is None else np.asarray(rotation, dtype=np.float64)
    samples = {}
    for key, img in maps.items():
        img = np.asarray(img, dtype=np.float32)
        chans = img.reshape(height, width, -1)
        s = np.stack(
            [cv2.remap(np.ascontiguousarray(chans[..., c]), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(-1)[:n]
             for c in range(chans.shape[2])],
            axis=1,
        ).astype(np.float64)
        if key in normal_keys:
            s /= np.maximum(np.linalg.norm(s, axis=1, keepdims=True), 1e-12)
            if rot is not None:
                s = s @ rot  # rows: R.T @ n
        samples[key] = s

    conf_tex = np.zeros(T * T)
    conf_tex[idx] = conf
    vis_tex = np.zeros(T * T, dtype=bool)
    vis_tex[idx] = visible
    out: dict[str, np.ndarray] = {}
    textures = {}
    for key, s in samples.items():
        tex = np.zeros((T * T, s.shape[1]))
        tex[idx] = s
        textures[key] = tex.reshape(T, T, -1)
    conf_img = conf_tex.reshape(T, T)
    weight = conf_img.copy()

    if mirror:
        # Blend in the mirrored texel, smoothly more the lower our own confidence (no seam at the threshold).
        conf_m = conf_img[:, ::-1]
        share = np.clip(1.0 - conf_img / MIRROR_CONFIDENCE, 0.0, 1.0) * conf_m
        total = conf_img + share
        ok = (share > 0) & coverage
        for key, tex in textures.items():
            mir = tex[:, ::-1].copy()
            if key in normal_keys:
                mir[..., 0] = -mir[..., 0]
            blend = (tex * conf_img[..., None] + mir * share[..., None]) / np.maximum(total, 1e-12)[..., None]
            tex[ok] = blend[ok]
            if key in normal_keys:
                tex /= np.maximum(np.linalg.norm(tex, axis=-1, keepdims=True), 1e-12)
        weight = np.where(ok, total, conf_img)

    # Grazing views smear a few photo pixels over many texels (streaks): fade low-confidence texels
    # into a confidence-weighted local average (normalised convolution); where the neighbourhood
    # holds too little confidence either, the texel is left to inpainting.
    sigma = max(1.0, SMOOTH_SIGMA * T)
    cov_f = coverage.astype(np.float32)
    w = np.where(coverage, weight, 0.0).astype(np.float32)
    w_blur = cv2.GaussianBlur(w, (0, 0), sigma)
    local_conf = w_blur / np.maximum(cv2.GaussianBlur(cov_f, (0, 0), sigma), 1e-6)
    known = coverage & (local_conf > LOCAL_CONFIDENCE_MIN) & (w_blur > 1e-6)
    alpha = _smoothstep(weight, CONFIDENCE_FADE[0], CONFIDENCE_FADE[1])[..., None]
    for key, tex in textures.items():
        num = np.stack([cv2.GaussianBlur(np.ascontiguousarray(tex[..., c] * w, dtype=np.float32), (0, 0), sigma)
                        for c in range(tex.shape[2])], axis=-1)
        smooth = num / np.maximum(w_blur, 1e-12)[..., None]
        blended = alpha * tex + (1.0 - alpha) * smooth
        tex[known] = blended[known]
    filled_all = fill_texture_holes(textures, known, coverage)
    for key, filled in filled_all.items():
        if key in normal_keys:
            filled /= np.maximum(np.linalg.norm(filled, axis=-1, keepdims=True), 1e-12)
        out[key] = filled[..., 0].astype(np.float32) if np.asarray(maps[key]).ndim == 2 else filled.astype(np.float32)
    out["confidence"] = conf_img.astype(np.float32)
    out["filled_confidence"] = np.where(coverage, np.minimum(weight, 1.0), 0.0).astype(np.float32)
    out["coverage"] = coverage
    out["visible"] = vis_tex.reshape(T, T)
    return out


def _smoothstep(x, lo, hi):
    t = np.clip((np.asarray(x, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def fill_texture_holes(textures: dict[str, np.ndarray], known: np.ndarray, coverage: np.ndarray, *, pad: int = PAD_TEXELS, radius: int = 4) -> dict[str, np.ndarray]:
    """Fill unknown texels: Telea inpainting inside the islands and a ``pad``-texel ring around
    them, then nearest-known-texel values everywhere else.

    textures : name -> (T, T, C) float; known, coverage : (T, T) bool (shared by all textures).
    Returns name -> (T, T, C) float64.
    """
    import cv2
    from scipy import ndimage

    if not known.any():
        return {k: np.zeros(np.shape(t)) for k, t in textures.items()}
    # Nearest known texel everywhere first: gives inpainting sane boundary values and fills the far background.
    _, (ri, ci) = ndimage.distance_transform_edt(~known, return_indices=True)
    region = ndimage.binary_dilation(coverage, iterations=pad) if pad > 0 else coverage
    hole = (region & ~known).astype(np.uint8)
    crop = None
    if hole.any():  # inpaint only a crop around the holes (Telea is O(hole area))
        rows, cols = np.flatnonzero(hole.any(1)), np.flatnonzero(hole.any(0))
        r0, r1 = max(rows[0] - radius - 2, 0), min(rows[-1] + radius + 3, hole.shape[0])
        c0, c1 = max(cols[0] - radius - 2, 0), min(cols[-1] + radius + 3, hole.shape[1])
        crop = (slice(r0, r1), slice(c0, c1))
        crop_mask = np.ascontiguousarray(hole[crop])
    out = {}
    for key, texture in textures.items():
        base = np.asarray(texture, dtype=np.float64)[ri, ci]
        if crop is not None:
            for c in range(base.shape[2]):
                # OpenCV's Telea overshoots wildly on float32 input (4.11); 16-bit is exact enough (1/65535 of the range).
                src = base[crop + (c,)]
                lo, hi = float(src.min()), float(src.max())
                scale = (hi - lo) if hi > lo else 1.0
                q = np.rint((src - lo) / scale * 65535.0).astype(np.uint16)
                filled = cv2.inpaint(q, crop_mask, radius, cv2.INPAINT_TELEA)
                base[crop + (c,)] = np.where(crop_mask > 0, filled.astype(np.float64) / 65535.0 * scale + lo, src)
        out[key] = base
    return out
