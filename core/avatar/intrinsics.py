"""Intrinsic decomposition of a face photo (PN-Relighting §5.1): SH lighting, albedo, detail normals, specular.

All images are *linear* float32 (H, W, 3) (decode with ``pnrelight.avatar.color.srgb_to_linear``),
normals unit vectors in the camera frame (x right, y up, z to the viewer), masks (H, W) bool.

* :func:`estimate_sh_lighting` -- Eq. 1: order-2 SH shading coefficients minimising
  MSE(A * P(N, w), I) with Adam (lr 0.01), on a random subsample of reliable pixels.
* :func:`albedo_by_division` -- Eq. 3: A = I / P(N, w), with confidence weights that
  drop attached shadows, clipped pixels and highlights, filled from the neighbourhood.
* :func:`refine_normals_sfs` -- shape-from-shading detail on top of the mesh normals (numpy).
* :func:`specular_map` -- the highlight left over after the diffuse model.
* :func:`decompose` -- the four steps in the order the avatar pipeline uses them.

Shading convention: ``render_sh(n, sh)`` is the diffuse shading (irradiance / pi), so
image = albedo * shading for a Lambertian surface (``pnrelight.envmap.sh_radiance_to_shading``
turns an environment's radiance SH into this). Torch is imported inside the functions that learn.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..envmap import render_sh, sh_basis  # noqa: F401 - re-exported: one SH basis for the project
from ..errors import InputError

LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)  # Rec. 709 / sRGB primaries
SATURATED_LINEAR = 0.95  # ~0.98 in sRGB: treat as clipped
CHROMA_SIGMAS = 2.5  # light fit without albedo: keep pixels this close (robust sigmas) to the skin's chromaticity; 0 = off
SPECULAR_MIN_LIGHT = 0.5  # specular_map: the mirror-direction light is taken as at least this x the shading
# specular_map measures k_s against these normalised Phong lobes {exponent: weight} of the SH light
# (PN-Relighting's priors 16/32/64, mostly the broad sheen): an estimation yardstick only -- the
# renders use k_s as the GGX specular level F0 (pipeline.avatar_mesh).
SPECULAR_LOBE_WEIGHTS = {16: 0.7, 32: 0.2, 64: 0.1}
# decompose's SfS: albedo blur (fraction of the face size), prior, smoothness, Adam step (checked on
# benchmarks/avatar_quality.py: weaker priors or smoother offsets do not lower the normal error).
SFS_ALBEDO_BLUR = 0.05
SFS_PRIOR = 0.1
SFS_SMOOTHNESS = 0.05
SFS_LR = 0.05


def luminance(image: np.ndarray) -> np.ndarray:
    """Linear luminance (..., 3) -> (...)."""
    return np.asarray(image, dtype=np.float32) @ LUMA


def _smoothstep(x, lo, hi):
    t = np.clip((np.asarray(x, dtype=np.float32) - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _valid_normals(normals: np.ndarray) -> np.ndarray:
    n = np.asarray(normals, dtype=np.float32)
    length = np.linalg.norm(n, axis=-1)
    return np.isfinite(length) & (length > 0.5)


class _torch_threads:
    """Run small torch problems single-threaded (thread sync dominates them on a busy 2-core box); restores the setting."""

    def __init__(self, count: int = 1):
        self.count = count

    def __enter__(self):
        import torch

        self.saved = torch.get_num_threads()
        torch.set_num_threads(self.count)

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.saved)


def _check(image, normals, mask):
    image = np.asarray(image, dtype=np.float32)
    normals = np.asarray(normals, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    if image.ndim != 3 or image.shape[2] != 3 or normals.shape != image.shape or mask.shape != image.shape[:2]:
        raise ValueError(f"expected image (H, W, 3), normals (H, W, 3), mask (H, W); got {image.shape}, {normals.shape}, {mask.shape}")
    return image, normals, mask


# ----------------------------------------------------------------------------- Eq. 1: SH lighting


def estimate_sh_lighting(
    image_linear: np.ndarray,
    normals: np.ndarray,
    mask: np.ndarray,
    iterations: int = 300,
    lr: float = 0.01,
    seed: int = 0,
    *,
    albedo: np.ndarray | None = None,
    max_samples: int = 20000,
    normalize: bool = True,
) -> np.ndarray:
    """Order-2 SH shading coefficients (9, 3) from an image and its normals (Eq. 1, Adam, lr 0.01).

    Minimises MSE(A * render_sh(N, w), I) over a random subsample (``max_samples``, ``seed``)
    of mask pixels that are neither clipped, nor in deep shadow, nor facing away. After a third
    and after two thirds of the ``iterations``, samples whose residual is an outlier (highlights,
    cast shadows: > 2.5 robust sigmas of the current fit) are dropped and Adam continues on the rest.
    For speed and stability Adam runs in a whitened parameterisation of w (same objective,
    same minimiser; the per-channel SH Gram matrix of the samples is factored once).

    albedo : (H, W, 3), (3,) or None. With None the albedo is unknown: the fit uses A = 1
        and, if ``normalize``, fixes the albedo/light scale ambiguity by making the mean
        shading over the face achromatic (equal in R, G, B) and scaling so the 90th percentile
        of the face's shading luminance is 1; the albedo then carries the colour.
    Returns (9, 3) float64 for :func:`render_sh`.
    """
    import torch

    image, normals, mask = _check(image_linear, normals, mask)
    lum = luminance(image)
    valid = mask & _valid_normals(normals) & np.all(np.isfinite(image), axis=-1)
    valid &= normals[..., 2] > 0.1  # grazing normals of a fitted mesh are unreliable
    valid &= image.max(axis=-1) < SATURATED_LINEAR
    if valid.sum() < 50:
        raise InputError(
            f"only {int(valid.sum())} face pixels are neither clipped nor facing away, too few to estimate the lighting "
            "(use a better exposed, more frontal photo)"
        )
    valid &= lum > 0.1 * np.median(lum[valid])  # deep shadows are not explained by SH shading
    if albedo is None and CHROMA_SIGMAS:
        valid &= _skin_coloured(image, valid, CHROMA_SIGMAS)
    idx = np.flatnonzero(valid.ravel())
    rng = np.random.default_rng(seed)
    if idx.size > max_samples:
        idx = np.sort(rng.choice(idx, max_samples, replace=False))
    n = normals.reshape(-1, 3)[idx].astype(np.float64)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    y = image.reshape(-1, 3)[idx].astype(np.float64)
    if albedo is None:
        a = np.ones_like(y)
    else:
        albedo = np.asarray(albedo, dtype=np.float64)
        a = np.broadcast_to(albedo, (3,)).reshape(1, 3).repeat(len(idx), 0) if albedo.ndim == 1 else albedo.reshape(-1, 3)[idx]
    basis = sh_basis(n)  # (N, 9)
    design = a.T[:, :, None] * basis[None]  # (3, N, 9): per-channel A * Y
    count = len(idx)

    # Whitening: gram_c = L_c L_c^T, theta_c = L_c^T w_c, prediction = (design_c L_c^-T) theta_c.
    gram = np.einsum("cnk,cnl->ckl", design, design) / count + 1e-9 * np.eye(9)
    chol = np.linalg.cholesky(gram)
    q = np.stack([np.linalg.solve(chol[c], design[c].T).T for c in range(3)])  # (3, N, 9), q_c^T q_c / N = I
    w0 = np.zeros((3, 9))
    w0[:, 0] = y.mean(axis=0) / np.maximum(a.mean(axis=0), 1e-6) / 0.28209479177387814  # DC-only start
    theta0 = np.einsum("ckl,ck->cl", chol, w0)  # L^T w

    torch.manual_seed(seed)
    theta = torch.tensor(theta0, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=lr)
    reweight_at = {max(1, iterations // 3), max(2, (2 * iterations) // 3)}
    with _torch_threads(1):
        _adam_sh(opt, theta, q, y, iterations, reweight_at)
    theta_np = theta.detach().numpy()
    sh = np.stack([np.linalg.solve(chol[c].T, theta_np[c]) for c in range(3)], axis=1)  # (9, 3)
    if albedo is None and normalize:
        sh = _normalize_sh(sh, normals[valid])
    return sh


def _skin_coloured(image: np.ndarray, valid: np.ndarray, sigmas: float) -> np.ndarray:
    """(H, W) bool: pixels whose chromaticity (log R/G, log B/G) lies within ``sigmas`` robust standard
    deviations of the median over ``valid`` -- the dominant (skin) albedo colour. Shading changes the
    brightness but hardly the chromaticity of a white-ish light, so hair, brows, lips and stubble drop out."""
    eps = 1e-4
    chroma = np.stack([np.log((image[..., 0] + eps) / (image[..., 1] + eps)), np.log((image[..., 2] + eps) / (image[..., 1] + eps))], -1)
    ref = np.median(chroma[valid], axis=0)
    dev = chroma - ref
    spread = 1.4826 * np.median(np.abs(dev[valid]), axis=0) + 1e-3
    dist = np.sqrt(((dev / spread) ** 2).sum(-1))
    keep = dist < sigmas
    return keep if (keep & valid).sum() >= 0.5 * valid.sum() else np.ones_like(valid)


def _adam_sh(opt, theta, q, y, iterations, reweight_at):
    """Adam on MSE(q theta, y) per channel. The MSE is evaluated exactly from its sufficient
    statistics (q^T q, q^T y, y^T y over the kept samples), so a step costs O(81), not O(N)."""
    import torch

    def statistics(keep):
        qk, yk = q[:, keep], y[keep].T  # (3, K, 9), (3, K)
        count = max(int(keep.sum()), 1)
        gram = torch.from_numpy(np.einsum("cnk,cnl->ckl", qk, qk) / count)
        cross = torch.from_numpy(np.einsum("cnk,cn->ck", qk, yk) / count)
        const = torch.from_numpy(np.einsum("cn,cn->c", yk, yk) / count)
        return gram, cross, const

    keep = np.ones(y.shape[0], bool)
    gram, cross, const = statistics(keep)
    for step in range(iterations):
        if step in reweight_at:  # robust reweighting: drop highlight / cast-shadow outliers
            res = (np.einsum("cnk,ck->cn", q, theta.detach().numpy()) - y.T).T @ LUMA.astype(np.float64)
            med = np.median(res)
            sigma = max(1.4826 * np.median(np.abs(res - med)), 1e-3 * float(np.median(y @ LUMA)))
            keep = np.abs(res - med) < 2.5 * sigma
            gram, cross, const = statistics(keep)
        opt.zero_grad()
        # mean over channels of mean_n (q theta - y)^2, expanded
        loss = torch.mean(torch.einsum("ck,ckl,cl->c", theta, gram, theta) - 2 * torch.sum(cross * theta, dim=1) + const) / 3.0
        loss.backward()
        opt.step()


def _normalize_sh(sh: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Fix the albedo/light gauge on the face normals (N, 3): achromatic mean shading, 90th percentile luminance 1.

    (Equalising only the DC term is not enough on a face: over one hemisphere the DC and the
    z-facing band-1 term are nearly interchangeable.)
    """
    mean = render_sh(normals, sh).mean(axis=0)
    if np.all(mean > 1e-8):
        sh = sh * (float(mean @ LUMA) / mean)[None, :]
    shade = luminance(render_sh(normals, sh))
    p90 = float(np.percentile(shade, 90)) if shade.size else 1.0
    return sh / p90 if p90 > 1e-8 else sh


# ----------------------------------------------------------------------------- Eq. 3: albedo


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(np.ascontiguousarray(image, dtype=np.float32), (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE)


def _normalized_convolution(values: np.ndarray, weights: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Weighted Gaussian average of (H, W, C) values; returns (average, local weight density).

    Wide kernels run on a grid reduced by ~sigma / 2 (the result is smooth at that scale anyway).
    """
    import cv2

    num = values * weights[..., None]
    den = np.ascontiguousarray(weights, dtype=np.float32)
    h, w = den.shape
    factor = int(sigma // 2)
    if factor >= 2 and min(h, w) >= 8 * factor:
        size = (max(1, round(w / factor)), max(1, round(h / factor)))
        num_s = _blur(cv2.resize(np.ascontiguousarray(num, dtype=np.float32), size, interpolation=cv2.INTER_AREA), sigma / factor)
        den_s = _blur(cv2.resize(den, size, interpolation=cv2.INTER_AREA), sigma / factor)
        num = cv2.resize(num_s, (w, h), interpolation=cv2.INTER_LINEAR)
        den = cv2.resize(den_s, (w, h), interpolation=cv2.INTER_LINEAR)
    else:
        num, den = _blur(num, sigma), _blur(den, sigma)
    if num.ndim == 2:
        num = num[..., None]
    return num / np.maximum(den, 1e-6)[..., None], den


def _face_scale(mask: np.ndarray) -> float:
    return float(np.sqrt(max(int(mask.sum()), 1)))


def albedo_by_division(
    image_linear: np.ndarray,
    shading: np.ndarray,
    mask: np.ndarray,
    *,
    protect: np.ndarray | None = None,
    return_confidence: bool = False,
):
    """Albedo A = I / shading (Eq. 3), robust to shadows and highlights.

    image_linear, shading : (H, W, 3) linear. mask : (H, W) bool face pixels.
    A white excess over (neighbourhood albedo x shading), present in all three channels,
    is treated as specular and subtracted before dividing. Each pixel then gets a
    confidence in [0, 1]: low where the shading is small (attached shadows, grazing
    angles: division amplifies noise), where the image is clipped, where the quotient is
    still much brighter than its neighbourhood (strong highlights), and where it is much
    darker in an already dim area (cast shadows; only partly separable from dark albedo). Low-confidence
    pixels are blended towards a confidence-weighted Gaussian average of their
    neighbourhood (sigma ~ 3% of the face size), falling back to the face's median
    albedo. ``protect`` (H, W) bool marks pixels (eyes, lips, teeth) that keep their
    quotient even when it is an outlier. Outside the mask the neighbourhood average
    continues the albedo smoothly (useful for texture sampling at the border).

    Returns albedo (H, W, 3) float32 in [0, 1] (and the confidence (H, W) if asked).
    """
    image = np.asarray(image_linear, dtype=np.float32)
    shading = np.asarray(shading, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    protect = None if protect is None else np.asarray(protect, dtype=bool)
    # Work on the mask's bounding box plus a margin for the neighbourhood filters (a face in a
    # 1080p photo is a small part of it); beyond the margin the albedo is the face median.
    crop = _mask_crop(mask, margin=int(4 * max(1.5, 0.03 * _face_scale(mask))) + 2)
    albedo_c, conf_c, median = _albedo_by_division_crop(image[crop], shading[crop], mask[crop], None if protect is None else protect[crop])
    albedo = np.empty(image.shape, np.float32)
    albedo[...] = np.clip(median, 0.0, 1.0)
    albedo[crop] = albedo_c
    if return_confidence:
        conf = np.zeros(mask.shape, np.float32)
        conf[crop] = conf_c
        return albedo, conf
    return albedo


def _coarse_median(values: np.ndarray, valid: np.ndarray, grid: int = 48, window: int = 7) -> np.ndarray:
    """Median of valid (H, W, C) values in a window of ``window`` cells on a ~``grid``-cell grid, upsampled (H, W, C).

    Cells without valid pixels take the global median of the valid ones.
    """
    import cv2

    h, w = valid.shape
    factor = max(1, int(np.ceil(max(h, w) / grid)))
    gh, gw = -(-h // factor), -(-w // factor)
    pad_v = np.zeros((gh * factor, gw * factor, values.shape[2]), np.float32)
    pad_w = np.zeros((gh * factor, gw * factor), np.float32)
    pad_v[:h, :w] = np.where(valid[..., None], values, 0.0)
    pad_w[:h, :w] = valid
    cell_w = pad_w.reshape(gh, factor, gw, factor).sum(axis=(1, 3))
    cell_v = pad_v.reshape(gh, factor, gw, factor, -1).sum(axis=(1, 3)) / np.maximum(cell_w, 1e-6)[..., None]
    cell_v[cell_w < 0.25 * factor * factor] = np.nan
    r = window // 2
    padded = np.pad(cell_v, ((r, r), (r, r), (0, 0)), constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (window, window), axis=(0, 1))  # (gh, gw, C, win, win)
    flat = windows.reshape(gh, gw, values.shape[2], -1)
    fallback = np.median(values[valid], axis=0) if valid.any() else np.full(values.shape[2], 0.5)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(flat, axis=-1)
    med = np.where(np.isfinite(med), med, fallback[None, None, :]).astype(np.float32)
    big = cv2.resize(med, (gw * factor, gh * factor), interpolation=cv2.INTER_LINEAR)
    return big[:h, :w].reshape(h, w, -1)


def _white_part(excess: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Split excess (..., 3) = alpha * colour + h * (1, 1, 1) by least squares; return h >= 0 (...).

    alpha * colour is a brighter (or darker) albedo of the same chromaticity; h is white
    light added on top, i.e. a specular highlight. Where colour is nearly grey the two are
    indistinguishable and h is 0 (the excess stays in the albedo).
    """
    cc = np.einsum("...i,...i->...", colour, colour)
    cw = colour.sum(axis=-1)
    ce = np.einsum("...i,...i->...", colour, excess)
    we = excess.sum(axis=-1)
    det = 3.0 * cc - cw * cw
    ok = det > 0.02 * 3.0 * cc  # chromaticity at least ~8 degrees away from grey
    h = np.where(ok, (cc * we - cw * ce) / np.where(ok, det, 1.0), 0.0)
    h = np.minimum(h, excess.max(axis=-1))  # never more than the largest channel's excess
    return np.clip(h, 0.0, None).astype(np.float32)


def _mask_crop(mask: np.ndarray, margin: int) -> tuple[slice, slice]:
    if not mask.any():
        return (slice(0, mask.shape[0]), slice(0, mask.shape[1]))
    rows, cols = np.nonzero(mask)
    return (slice(max(rows.min() - margin, 0), min(rows.max() + margin + 1, mask.shape[0])),
            slice(max(cols.min() - margin, 0), min(cols.max() + margin + 1, mask.shape[1])))


def _albedo_by_division_crop(image, shading, mask, protect):
    s_lum = luminance(shading)
    ref_s = float(np.median(s_lum[mask & (s_lum > 0)])) if np.any(mask & (s_lum > 0)) else 1.0
    s_rel = s_lum / max(ref_s, 1e-8)
    safe_s = np.maximum(shading, 1e-3 * max(ref_s, 1e-8))
    raw = np.where(np.isfinite(image / safe_s), image / safe_s, 0.0).astype(np.float32)
    base = (mask & np.all(np.isfinite(image), axis=-1)).astype(np.float32)
    base *= _smoothstep(s_rel, 0.08, 0.3)  # attached shadows / grazing: division amplifies noise
    base *= (image.max(axis=-1) < SATURATED_LINEAR).astype(np.float32)  # clipped
    protect = np.zeros(mask.shape, bool) if protect is None else protect
    sigma = max(1.5, 0.03 * _face_scale(mask))

    def outlier_weights(values, ref):
        ratio = luminance(values) / np.maximum(luminance(ref), 1e-6)
        w_highlight = 1.0 - _smoothstep(ratio, 1.25, 1.7)
        w_cast = 1.0 - (1.0 - _smoothstep(ratio, 0.3, 0.6)) * (1.0 - _smoothstep(s_rel, 0.4, 0.8))
        return np.where(protect, 1.0, w_highlight * w_cast)

    def white_excess(ref):
        # A white highlight adds the same radiance to R, G and B on top of albedo * shading.
        diffuse_pred = ref * shading
        excess = _white_part(image - diffuse_pred, diffuse_pred)
        relative = excess / np.maximum(luminance(diffuse_pred), 1e-6)
        return np.where(protect, 0.0, excess * _smoothstep(relative, 0.1, 0.25))

    # Reference albedo: first a coarse masked median (robust to highlights up to ~6% of the face
    # across), then a neighbourhood average over trusted pixels, re-estimated without outliers.
    ref = _coarse_median(raw, base > 0.5)
    for _ in range(3):
        trusted = base * outlier_weights(raw, ref) * (white_excess(ref) <= 0.0)
        ref, density = _normalized_convolution(raw, trusted, sigma)
    # Remove the white (specular) excess, then trust what is left unless it is still an outlier.
    diffuse = (image - white_excess(ref)[..., None]) / safe_s
    conf = base * outlier_weights(diffuse, ref)
    good = conf > 0.5
    median = np.median(diffuse[good], axis=0) if good.sum() >= 10 else np.median(raw[mask], axis=0) if mask.any() else np.full(3, 0.5)
    # Where the neighbourhood holds no trusted pixels either, use the face median.
    trust = _smoothstep(density, 0.02, 0.2)[..., None]
    fill = trust * ref + (1.0 - trust) * median[None, None, :]
    albedo = conf[..., None] * diffuse + (1.0 - conf[..., None]) * fill
    return np.clip(albedo, 0.0, 1.0).astype(np.float32), conf.astype(np.float32), median


# ----------------------------------------------------------------------------- specular


def specular_map(
    image_linear: np.ndarray,
    albedo: np.ndarray,
    shading: np.ndarray,
    mask: np.ndarray,
    *,
    normals: np.ndarray | None = None,
    sh: np.ndarray | None = None,
    view_dir=(0.0, 0.0, 1.0),
) -> np.ndarray:
    """Specular intensity (H, W) float32 in [0, 1]: the white light left after the diffuse model.

    residual = I - albedo * shading is split into a part with the albedo's chromaticity and a
    white part h (a highlight raises R, G and B equally). The specular reflectance k_s is h divided
    by the light arriving from the mirror direction: with ``normals`` and the shading ``sh`` given,
    the photo's band-limited SH radiance at reflect(view_dir, n) seen through the Phong lobes
    SPECULAR_LOBE_WEIGHTS (PN-Relighting's glossy priors; estimation only), but not less
    than the shading; otherwise the shading luminance (which overestimates k_s under a frontal
    light). Zero outside the mask, lightly smoothed.
    """
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros(mask.shape, np.float32)
    crop = _mask_crop(mask, margin=4)
    image = np.asarray(image_linear, dtype=np.float32)[crop]
    albedo = np.broadcast_to(np.asarray(albedo, dtype=np.float32), mask.shape + (3,))[crop]
    shading = np.asarray(shading, dtype=np.float32)[crop]
    m = mask[crop]
    white = _white_part(image - albedo * shading, albedo * shading)
    if normals is not None and sh is not None:
        from ..envmap import latlong_directions, prefilter_phong, sample_latlong, sh_shading_to_radiance

        n = np.asarray(normals, dtype=np.float32)[crop]
        v = np.asarray(view_dir, dtype=np.float32)
        mirror = (2.0 * (n @ v)[..., None] * n - v).reshape(-1, 3)
        # The light k_s multiplies: the weighted Phong lobes of the SH radiance at the mirror direction
        # (albedo x shading + k_s x these lobes gives the photo back).
        radiance = np.clip(render_sh(latlong_directions(16), sh_shading_to_radiance(sh)), 0.0, None)
        glossy = sum(w * sample_latlong(prefilter_phong(radiance, k, 32, source_height=16), mirror)
                     for k, w in SPECULAR_LOBE_WEIGHTS.items() if w)
        glossy = luminance(glossy).reshape(m.shape)
        # The radiance behind a hemisphere SH fit is unreliable (band 2 is amplified 4x):
        # never let it fall far below the shading, which bounds k_s from above.
        incoming = np.maximum(glossy, SPECULAR_MIN_LIGHT * luminance(shading))
    else:
        incoming = luminance(shading)
    ref = float(np.median(incoming[m])) if m.any() else 1.0
    ks = white / np.maximum(incoming, 0.1 * max(ref, 1e-6))
    ks = _blur(np.where(m, ks, 0.0).astype(np.float32), max(0.7, 0.003 * _face_scale(mask)))
    out[crop] = np.clip(np.where(m, ks, 0.0), 0.0, 1.0)
    return out


# ----------------------------------------------------------------------------- shape from shading


def refine_normals_sfs(
    image_linear: np.ndarray,
    albedo: np.ndarray,
    sh: np.ndarray,
    normals_init: np.ndarray,
    mask: np.ndarray,
    iterations: int = 100,
    smoothness: float = 0.02,
    *,
    prior: float = 0.01,
    integrability: float = 1.0,
    lr: float = 0.05,
    working_size: int = 256,
) -> np.ndarray:
    """Shape-from-shading detail normals on top of the mesh normals (vectorised numpy, Adam steps).

    The unknown is a per-pixel surface-gradient offset g = (gx, gy) of a height field added
    to the mesh along the view axis: n = normalize(n0 / n0_z - (gx, gy, 0)), x right, y up.
    Energy on luminance (sums over the mask divided by its pixel count):
      |albedo * render_sh(n, sh) - I|^2 / mean(I^2)                    shading data term
      + prior * |g|^2                                                 stay near the mesh normals
      + smoothness * |grad g|^2                                       smooth detail
      + integrability * (d gx/dy - d gy/dx)^2                         g is the gradient of a height field
    minimised by ``iterations`` Adam steps (``lr``) with the analytic gradient; deterministic.
    The offset is solved on the mask's bounding box area-resized so its longer side is at most
    ``working_size`` pixels, then upsampled bilinearly onto the full-resolution mesh normals.
    Pass a *smooth* albedo (e.g. a blurred :func:`albedo_by_division`): shading detail
    that the albedo already explains cannot become geometry. Clipped pixels are ignored.
    Returns unit normals (H, W, 3) float32; outside the mask the input normals are kept.
    """
    import cv2

    image, normals0, mask = _check(image_linear, normals_init, mask)
    albedo = np.broadcast_to(np.asarray(albedo, dtype=np.float32), image.shape)
    valid = mask & _valid_normals(normals0)
    out = normals0.copy()
    if valid.sum() < 16 or iterations <= 0:
        return out
    rows, cols = np.nonzero(valid)
    r0, r1 = max(rows.min() - 2, 0), min(rows.max() + 3, mask.shape[0])
    c0, c1 = max(cols.min() - 2, 0), min(cols.max() + 3, mask.shape[1])
    crop = (slice(r0, r1), slice(c0, c1))
    full_shape = (r1 - r0, c1 - c0)
    n_full = normals0[crop] / np.maximum(np.linalg.norm(normals0[crop], axis=-1, keepdims=True), 1e-6)
    n_full = np.where(valid[crop][..., None], n_full, np.array([0, 0, 1], np.float32)).astype(np.float32)
    base_full = n_full / np.maximum(n_full[..., 2:3], 0.3)  # mesh surface gradient (-zx, -zy, 1), bounded at grazing angles
    lum_img = luminance(image[crop])
    lum_alb = luminance(albedo[crop])
    clipped = (image[crop].max(axis=-1) >= SATURATED_LINEAR).astype(np.float32)
    factor = max(full_shape) / float(working_size)
    if factor > 1.0:  # solve on a smaller grid: SfS detail below ~2 working pixels is noise anyway
        size = (max(2, round(full_shape[1] / factor)), max(2, round(full_shape[0] / factor)))
        shrink = lambda a: cv2.resize(np.ascontiguousarray(a, dtype=np.float32), size, interpolation=cv2.INTER_AREA)  # noqa: E731
        v = shrink(valid[crop].astype(np.float32)) > 0.999
        base = shrink(base_full)
        lum_img, lum_alb, clipped = shrink(lum_img), shrink(lum_alb), shrink(clipped)
        resized = True  # g is a slope offset (dimensionless): it needs no rescaling
    else:
        v = valid[crop]
        base = base_full
        resized = False
    g = _sfs_adam(v, base, lum_img, lum_alb, clipped, np.asarray(sh, np.float64) @ LUMA.astype(np.float64), iterations, smoothness, prior, integrability, lr)
    if resized:
        g = cv2.resize(g, (full_shape[1], full_shape[0]), interpolation=cv2.INTER_LINEAR)
    m = base_full.copy()
    m[..., :2] -= g
    refined = m / np.linalg.norm(m, axis=-1, keepdims=True)
    out[crop] = np.where(valid[crop][..., None], refined, out[crop])
    return out.astype(np.float32)


def _sfs_adam(v, base, lum_img, lum_alb, clipped, w, iterations, smoothness, prior, integrability, lr):
    """Adam on the gradient offset g (h, w, 2); see :func:`refine_normals_sfs` for the energy."""
    count = float(v.sum())
    if count < 4:
        return np.zeros(v.shape + (2,), np.float32)
    scale = float(np.mean(lum_img[v] ** 2)) + 1e-8
    nz = base[..., 2] / np.linalg.norm(base, axis=-1)
    w_data = v.astype(np.float32) * (clipped < 0.5) * np.clip(nz / 0.3, 0.0, 1.0)  # less trust near silhouettes
    w_res = ((2.0 / (count * scale)) * w_data * lum_alb).astype(np.float32)  # d data / d shading = w_res * residual
    alb = lum_alb.astype(np.float32)
    vm = v.astype(np.float32)[..., None]
    mx = (v[:, 1:] & v[:, :-1]).astype(np.float32)[..., None]
    my = (v[1:, :] & v[:-1, :]).astype(np.float32)[..., None]
    mxy = (v[1:, 1:] & v[:-1, 1:] & v[1:, :-1] & v[:-1, :-1]).astype(np.float32)
    w = [np.float32(c) for c in w]
    c0, c1, c2, c3, c4 = (np.float32(c) for c in (0.28209479177387814, 0.4886025119029199, 1.0925484305920792, 0.31539156525252005, 0.5462742152960396))
    k_prior = np.float32(2.0 * prior / count)
    k_smooth = np.float32(2.0 * smoothness / count)
    k_curl = np.float32(integrability / count)
    g = np.zeros(v.shape + (2,), np.float32)
    m1 = np.zeros_like(g)
    m2 = np.zeros_like(g)
    b1, b2, eps = 0.9, 0.999, 1e-8
    m = base.astype(np.float32).copy()
    for step in range(1, iterations + 1):
        m[..., :2] = base[..., :2] - g
        inv_len = 1.0 / np.sqrt(np.einsum("...i,...i->...", m, m))
        x, y, z = m[..., 0] * inv_len, m[..., 1] * inv_len, m[..., 2] * inv_len
        shading = w[0] * c0 + c1 * (y * w[1] + z * w[2] + x * w[3])
        shading += c2 * (x * y * w[4] + y * z * w[5] + x * z * w[7]) + c3 * (3 * z * z - 1) * w[6] + c4 * (x * x - y * y) * w[8]
        gr = w_res * (alb * shading - lum_img)
        # d data / d n from the SH basis derivatives, then through the normalisation
        dx = gr * (c1 * w[3] + c2 * (y * w[4] + z * w[7]) + 2 * c4 * x * w[8])
        dy = gr * (c1 * w[1] + c2 * (x * w[4] + z * w[5]) - 2 * c4 * y * w[8])
        dz = gr * (c1 * w[2] + c2 * (y * w[5] + x * w[7]) + 6 * c3 * z * w[6])
        radial = x * dx + y * dy + z * dz
        grad = np.empty_like(g)
        grad[..., 0] = -(dx - x * radial) * inv_len
        grad[..., 1] = -(dy - y * radial) * inv_len
        grad += k_prior * vm * g
        dgx = mx * (g[:, 1:] - g[:, :-1])
        dgy = my * (g[1:, :] - g[:-1, :])
        grad[:, 1:] += k_smooth * dgx
        grad[:, :-1] -= k_smooth * dgx
        grad[1:, :] += k_smooth * dgy
        grad[:-1, :] -= k_smooth * dgy
        gx, gy = g[..., 0], g[..., 1]
        curl = mxy * 0.5 * ((gx[:-1, :-1] - gx[1:, :-1]) + (gx[:-1, 1:] - gx[1:, 1:]) - (gy[:-1, 1:] - gy[:-1, :-1]) - (gy[1:, 1:] - gy[1:, :-1]))
        kc = k_curl * curl
        grad[:-1, :-1, 0] += kc
        grad[1:, :-1, 0] -= kc
        grad[:-1, 1:, 0] += kc
        grad[1:, 1:, 0] -= kc
        grad[:-1, 1:, 1] -= kc
        grad[:-1, :-1, 1] += kc
        grad[1:, 1:, 1] -= kc
        grad[1:, :-1, 1] += kc
        m1 *= b1
        m1 += (1 - b1) * grad
        m2 *= b2
        m2 += (1 - b2) * grad * grad
        g -= (lr / (1 - b1**step)) * m1 / (np.sqrt(m2 / (1 - b2**step)) + eps)
        g *= vm
    return g


# ----------------------------------------------------------------------------- the whole §5.1 chain


@dataclass
class Intrinsics:
    """Result of :func:`decompose` (all (H, W, ...) float32, linear)."""

    sh: np.ndarray  # (9, 3) shading SH (render_sh gives irradiance / pi)
    shading: np.ndarray  # (H, W, 3) with the refined normals
    albedo: np.ndarray  # (H, W, 3) in [0, 1]
    normals: np.ndarray  # (H, W, 3) detail normals (unit; input normals outside the mask)
    specular: np.ndarray  # (H, W) in [0, 1]
    confidence: np.ndarray  # (H, W) albedo confidence in [0, 1]
    seed: int


def divide_by_shading(intr: Intrinsics, image_linear: np.ndarray, mask: np.ndarray, shading: np.ndarray, *,
                      protect: np.ndarray | None = None) -> Intrinsics:
    """``intr`` with albedo, confidence and specular divided out of another shading (H, W, 3) of its
    normals: the light a renderer will actually cast (the SH light made non-negative), so that
    albedo x that shading gives the photo back. The SH light and the normals are kept."""
    albedo, conf = albedo_by_division(image_linear, shading, mask, protect=protect, return_confidence=True)
    spec = specular_map(image_linear, albedo, shading, mask, normals=intr.normals, sh=intr.sh)
    return replace(intr, shading=np.asarray(shading, np.float32), albedo=albedo, specular=spec, confidence=conf)


def decompose(
    image_linear: np.ndarray,
    normals: np.ndarray,
    mask: np.ndarray,
    *,
    seed: int = 0,
    sh_iterations: int = 300,
    sfs_iterations: int = 100,
    protect: np.ndarray | None = None,
) -> Intrinsics:
    """SH lighting (Eq. 1) -> albedo (Eq. 3) -> SfS detail normals -> albedo again -> specular.

    image_linear (H, W, 3) linear, normals (H, W, 3) mesh normals in the camera frame,
    mask (H, W) face pixels; ``protect`` (H, W) bool marks what is not skin (eyes, brows, lips):
    left out of the light fit (unless that leaves less than half the face) and out of the
    albedo's highlight / shadow logic.
    The first albedo is blurred before SfS so shading detail goes into the normals; the
    final albedo divides by the shading of the refined normals. Albedo and light share an
    unknown scale/colour: the light is made achromatic (see :func:`estimate_sh_lighting`).
    """
    image, normals, mask = _check(image_linear, normals, mask)
    normals_init_full = normals
    # Everything happens on the face's bounding box (plus the filters' margin), pasted back after.
    crop = _mask_crop(mask, margin=int(4 * max(1.5, 0.05 * _face_scale(mask))) + 2)
    full_shape = mask.shape
    protect_c = None if protect is None else np.asarray(protect, dtype=bool)[crop]
    image, normals, mask = image[crop], normals[crop], mask[crop]
    # Eyes, brows and lips are not skin: leave them out of the light fit (the albedo is assumed uniform there).
    sh_mask = mask if protect_c is None or (mask & ~protect_c).sum() < 0.5 * mask.sum() else mask & ~protect_c
    sh = estimate_sh_lighting(image, normals, sh_mask, iterations=sh_iterations, seed=seed)
    shading0 = np.where(mask[..., None], render_sh(normals, sh), 0.0).astype(np.float32)
    albedo0 = albedo_by_division(image, shading0, mask, protect=protect_c)
    # Albedo smoothed at ~5% of the face: finer shading variation is left for the normals to explain.
    # SfS is kept conservative (prior 0.1): albedo and shape detail are not separable in general.
    smooth_albedo = _blur(albedo0, max(1.5, SFS_ALBEDO_BLUR * _face_scale(mask)))
    refined = refine_normals_sfs(image, smooth_albedo, sh, normals, mask, iterations=sfs_iterations, prior=SFS_PRIOR,
                                 smoothness=SFS_SMOOTHNESS, lr=SFS_LR)
    shading = np.where(mask[..., None], render_sh(refined, sh), 0.0).astype(np.float32)
    albedo, conf = albedo_by_division(image, shading, mask, protect=protect_c, return_confidence=True)
    spec = specular_map(image, albedo, shading, mask, normals=refined, sh=sh)

    def paste(part, fill):
        full = np.empty(full_shape + part.shape[2:], np.float32)
        full[...] = fill
        full[crop] = part
        return full

    median = np.median(albedo[mask], axis=0) if mask.any() else 0.5
    refined_full = np.asarray(normals_init_full, dtype=np.float32).copy()
    refined_full[crop] = refined
    shading, albedo, spec, conf = paste(shading, 0.0), paste(albedo, median), paste(spec, 0.0), paste(conf, 0.0)
    refined = refined_full
    return Intrinsics(sh=sh, shading=shading, albedo=albedo, normals=refined, specular=spec, confidence=conf, seed=seed)
