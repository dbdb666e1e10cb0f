"""Bake per-pixel maps of a photo into the face model's UV space.

For every texel we find its surface point (texture-space rasterization), project
it into the photo with the fitted camera, keep it only when it passes the
image-space z-buffer test, and weight it by the view-angle confidence
``max(0, n . v)``. Texels with low confidence borrow from their mirrored texel
(:func:`texel_mirror_map`: for the default, left/right symmetric UV layout the mirror of
(u, v) is (1 - u, v); on an atlas such as the ICT head's it is found through the vertex
mirror map, triangle by triangle); texels still seen only at grazing angles fade into a
confidence-weighted local average (grazing views smear a few pixels over many texels);
what is left empty is inpainted (OpenCV Telea) and the UV islands are padded so bilinear
filtering and mip-mapping show no seams. Full-head models fill what the photo cannot see on
the mesh instead (:mod:`pnrelight.avatar.head_texture`).

Normal maps are baked in the MODEL frame (object space of the face model: x to the
right of a viewer facing the face, y up, z out of the face; the face's symmetry plane
is x = 0): camera-frame normals are rotated by ``rotation.T``, so mirroring is a flip of x.
"""
from __future__ import annotations

import numpy as np

from .camera import project, project_with_depth
from .face_model import vertex_normals
from .raster import RasterResult, interpolate, rasterize, rasterize_uv

__all__ = ["bake_textures", "fill_texture_holes", "rasterize_camera", "sample_textures", "texel_mirror_map",
           "uv_layout_is_mirror_symmetric", "weld_vertices"]

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


def weld_vertices(vertices: np.ndarray) -> np.ndarray:
    """(V,) int64 id of each vertex's position: copies split along UV seams (same position) share one id."""
    _, group = np.unique(np.asarray(vertices, dtype=np.float64), axis=0, return_inverse=True)
    return group.reshape(-1).astype(np.int64)


def texel_mirror_map(uvs: np.ndarray, triangles: np.ndarray, uv_mirror: np.ndarray, uv_raster: RasterResult,
                     vertices: np.ndarray | None = None) -> np.ndarray:
    """(T, T) int64 flat index of the texel holding each texel's mirror image (-1: none), for ``bake_textures(mirror=...)``.

    A left/right symmetric layout (:func:`uv_layout_is_mirror_symmetric`) gives the exact (1 - u, v) flip,
    so such models bake exactly as with ``mirror=True``. Otherwise a covered texel on triangle f with
    barycentrics b mirrors to sum_k b_k uv'_k, the uv'_k being the UVs of f's mirrored corners: of the
    triangle whose corners are the mirrors of f's corners when one exists (``vertices``, e.g. the template,
    tells which vertices are UV-seam copies of one point, so the mirror triangle is found whole in one UV
    island), else of the corners' own ``uv_mirror``. Mirror triangles spread over several islands (their
    UV edges far longer than f's) give -1.
    """
    T = uv_raster.face_id.shape[0]
    if uv_layout_is_mirror_symmetric(uvs, uv_mirror):
        flat = np.arange(T * T, dtype=np.int64).reshape(T, T)
        return np.ascontiguousarray(flat[:, ::-1])
    uvs = np.asarray(uvs, dtype=np.float64)
    tris = np.asarray(triangles, dtype=np.int64)
    mirror = np.asarray(uv_mirror, dtype=np.int64)
    corner_uv = uvs[mirror[tris]]  # (F, 3, 2) per-corner fallback
    group = None if vertices is None else weld_vertices(vertices)
    if group is not None and int(group.max()) < 2_000_000:  # triangle keys g0 n^2 + g1 n + g2 fit in int64
        n = int(group.max()) + 1
        tri_g = group[tris]
        key = np.sort(tri_g, axis=1) @ np.array([n * n, n, 1], dtype=np.int64)
        order = np.argsort(key, kind="stable")
        target = group[mirror[tris]]  # groups the mirror triangle's corners must have, in f's corner order
        tkey = np.sort(target, axis=1) @ np.array([n * n, n, 1], dtype=np.int64)
        pos = np.minimum(np.searchsorted(key[order], tkey), len(key) - 1)
        h = order[pos]
        found = key[h] == tkey
        # Corner j of h matching corner k of f: the one with f's k-th target group.
        match = np.argmax(tri_g[h][:, None, :] == target[:, :, None], axis=2)  # (F, 3)
        exact = uvs[tris[h[:, None], match]]
        corner_uv = np.where(found[:, None, None], exact, corner_uv)
    own = uvs[tris]
    edge = lambda t: np.linalg.norm(t - np.roll(t, 1, axis=1), axis=2).max(1)  # noqa: E731  longest UV edge
    compact = edge(corner_uv) <= 4.0 * edge(own) + 2.0 / T
    out = np.full(T * T, -1, dtype=np.int64)
    fid = uv_raster.face_id.reshape(-1)
    idx = np.flatnonzero(fid >= 0)
    f = fid[idx]
    b = uv_raster.bary.reshape(-1, 3)[idx].astype(np.float64)
    uv = np.einsum("nk,nkc->nc", b, corner_uv[f])
    col = np.floor(uv[:, 0] * T).astype(np.int64)
    row = np.floor((1.0 - uv[:, 1]) * T).astype(np.int64)
    ok = compact[f] & (col >= 0) & (col < T) & (row >= 0) & (row < T)
    out[idx[ok]] = row[ok] * T + col[ok]
    return out.reshape(T, T)


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
    mirror: bool | np.ndarray = True,
    image_raster: RasterResult | None = None,
    uv_raster: RasterResult | None = None,
    depth_tolerance: float = 0.01,
    region: np.ndarray | None = None,
    image_mask: np.ndarray | None = None,
    inpaint: np.ndarray | None = None,
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
    mirror : how low-confidence texels find their mirror texel: True = the (1 - u, v) flip (only
        valid for a left/right symmetric UV layout, see :func:`uv_layout_is_mirror_symmetric`),
        False = no mirror fill, or a (T, T) int texel map from :func:`texel_mirror_map` (-1: none).
    image_raster : the mesh already rasterised in the photo (saves time); computed when None.
    uv_raster : ``rasterize_uv(uvs, triangles, texture_size)`` if already computed.
    depth_tolerance : relative depth slack of the visibility test (fraction of the distance).
    region : (T, T) bool texels the photo may texture (default: all covered ones); the others get
        no sample, lend nothing to their neighbours and are only padded (the caller fills them).
    image_mask : (H, W) bool pixels of the photo where ``maps`` hold data (default: all); a texel
        projecting elsewhere counts as unseen.
    inpaint : (T, T) bool texels to inpaint where unknown (default: ``region``); other unknown
        texels take their nearest known value (cheap; for texels the caller overwrites).

    Returns
    -------
    dict with, for each input key, a (T, T, C) (or (T, T)) float32 texture filled everywhere, plus
    "confidence" (T, T) float32 view-angle confidence of the texel's own observation (0 when
    occluded / outside the photo), "filled_confidence" (T, T) after mirroring,
    "coverage" (T, T) bool texels on the mesh, "visible" (T, T) bool texels seen in the photo.
    """
    s = sample_textures(maps, vertices_cam, triangles, uvs, focal_px, principal_point, texture_size, rotation=rotation,
                        normal_keys=normal_keys, mirror=mirror, image_raster=image_raster, uv_raster=uv_raster,
                        depth_tolerance=depth_tolerance, region=region, image_mask=image_mask)
    coverage, weight = s["coverage"], s["weight"]
    out: dict[str, np.ndarray] = {}
    filled_all = fill_texture_holes(s["textures"], s["known"], s["region"] if inpaint is None else inpaint)
    for key, filled in filled_all.items():
        if key in normal_keys:
            filled /= np.maximum(np.linalg.norm(filled, axis=-1, keepdims=True), 1e-12)
        out[key] = filled[..., 0].astype(np.float32) if np.asarray(maps[key]).ndim == 2 else filled.astype(np.float32)
    out["confidence"] = s["confidence"].astype(np.float32)
    out["filled_confidence"] = np.where(coverage, np.minimum(weight, 1.0), 0.0).astype(np.float32)
    out["coverage"] = coverage
    out["visible"] = s["visible"]
    return out


def sample_textures(
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
    mirror: bool | np.ndarray = True,
    image_raster: RasterResult | None = None,
    uv_raster: RasterResult | None = None,
    depth_tolerance: float = 0.01,
    region: np.ndarray | None = None,
    image_mask: np.ndarray | None = None,
) -> dict:
    """The first half of :func:`bake_textures` (same parameters): samples, mirror fill and the
    grazing-angle fade, without the hole filling.

    Returns dict: "textures" name -> (T, T, C) float64 (valid where "known"), "known" (T, T) bool,
    "weight" (T, T) confidence after mirroring, "confidence" (T, T) own confidence,
    "coverage", "visible", "region" (T, T) bool.
    """
    first = next(iter(maps.values()))
    height, width = first.shape[:2]
    tris = np.asarray(triangles, dtype=np.int64)
    verts = np.asarray(vertices_cam, dtype=np.float64)
    T = int(texture_size)

    uv_r = rasterize_uv(uvs, tris, T) if uv_raster is None else uv_raster
    coverage = uv_r.mask
    region = coverage if region is None else (np.asarray(region, dtype=bool) & coverage)
    idx = np.flatnonzero(region.reshape(-1))
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
    if image_mask is not None:
        inside[inside] = np.asarray(image_mask, dtype=bool)[row[inside], col[inside]]
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
    textures = {}
    for key, s in samples.items():
        tex = np.zeros((T * T, s.shape[1]))
        tex[idx] = s
        textures[key] = tex.reshape(T, T, -1)
    conf_img = conf_tex.reshape(T, T)
    weight = conf_img.copy()

    if np.ndim(mirror) == 0 and bool(mirror):  # True: the (1 - u, v) flip
        mirror = np.arange(T * T, dtype=np.int64).reshape(T, T)[:, ::-1]
    if np.ndim(mirror) > 0:
        # The mirror texel of every texel, as flat indices (-1: none).
        mflat = np.asarray(mirror, dtype=np.int64).reshape(-1)
        has = mflat >= 0
        safe = np.where(has, mflat, 0)

        def mirrored(img):
            flat = img.reshape(T * T, -1)[safe]
            flat[~has] = 0.0
            return flat.reshape(img.shape)

        # Blend in the mirrored texel, smoothly more the lower our own confidence (no seam at the threshold).
        conf_m = mirrored(conf_img)
        share = np.clip(1.0 - conf_img / MIRROR_CONFIDENCE, 0.0, 1.0) * conf_m
        total = conf_img + share
        ok = (share > 0) & region
        for key, tex in textures.items():
            mir = mirrored(tex)
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
    cov_f = region.astype(np.float32)
    w = np.where(region, weight, 0.0).astype(np.float32)
    w_blur = cv2.GaussianBlur(w, (0, 0), sigma)
    local_conf = w_blur / np.maximum(cv2.GaussianBlur(cov_f, (0, 0), sigma), 1e-6)
    known = region & (local_conf > LOCAL_CONFIDENCE_MIN) & (w_blur > 1e-6)
    alpha = _smoothstep(weight, CONFIDENCE_FADE[0], CONFIDENCE_FADE[1])[..., None]
    for key, tex in textures.items():
        num = np.stack([cv2.GaussianBlur(np.ascontiguousarray(tex[..., c] * w, dtype=np.float32), (0, 0), sigma)
                        for c in range(tex.shape[2])], axis=-1)
        smooth = num / np.maximum(w_blur, 1e-12)[..., None]
        blended = alpha * tex + (1.0 - alpha) * smooth
        tex[known] = blended[known]
    return {"textures": textures, "known": known, "weight": np.where(region, weight, 0.0), "confidence": conf_img,
            "coverage": coverage, "visible": vis_tex.reshape(T, T), "region": region}


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
