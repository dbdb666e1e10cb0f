"""Image quality metrics inside an optional mask."""
from __future__ import annotations

import numpy as np


BAND_PIXELS = 1 << 20   # pixels per row band: float64 temporaries of ~8 MB per channel and array
SSIM_RADIUS = 5         # skimage's Gaussian window radius for sigma 1.5 (truncate 3.5): int(3.5 * 1.5 + 0.5)


def _bands(height: int, width: int) -> list[tuple[int, int]]:
    rows = max(4 * SSIM_RADIUS, BAND_PIXELS // max(1, width))
    return [(y, min(height, y + rows)) for y in range(0, height, rows)]


def psnr(image: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None, data_range: float = 1.0) -> float:
    """PSNR in dB of (H, W[, C]) arrays; only pixels where ``mask`` (H, W) is True count.

    Summed in row bands: float64 temporaries of one band, not of the image.
    """
    total, count = 0.0, 0
    for y0, y1 in _bands(*np.shape(image)[:2]):
        diff = np.asarray(image[y0:y1], np.float64) - np.asarray(reference[y0:y1], np.float64)
        sq = diff * diff
        if sq.ndim == 3:
            sq = sq.mean(axis=2)
        sq = sq[mask[y0:y1]] if mask is not None else sq
        total += float(sq.sum())
        count += sq.size
    mse = total / count if count else float("nan")
    if mse <= 0:
        return float("inf")
    return float(10.0 * np.log10(data_range * data_range / mse))


def ssim(image: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None, data_range: float = 1.0) -> float:
    """Mean SSIM (Gaussian window, sigma 1.5, as Wang et al. 2004) over the pixels in ``mask``.

    The SSIM map is computed in row bands with SSIM_RADIUS rows of context on each side, so
    every kept row sees the same window as in a whole-image computation (reflected only at the
    image's own borders): the same value with float64 temporaries of one band.
    """
    total, count = 0.0, 0
    h = np.shape(image)[0]
    for y0, y1 in _bands(*np.shape(image)[:2]):
        a0, a1 = max(0, y0 - SSIM_RADIUS), min(h, y1 + SSIM_RADIUS)
        if a1 - a0 < 2 * SSIM_RADIUS + 1:  # skimage needs a full window: more context changes nothing
            a0 = max(0, a1 - (2 * SSIM_RADIUS + 1))
            a1 = min(h, a0 + 2 * SSIM_RADIUS + 1)
        smap = _ssim_map(image[a0:a1], reference[a0:a1], data_range)[y0 - a0:y1 - a0]
        smap = smap[mask[y0:y1]] if mask is not None else smap
        total += float(smap.sum())
        count += smap.size
    return total / count if count else float("nan")


def _ssim_map(image: np.ndarray, reference: np.ndarray, data_range: float) -> np.ndarray:
    """(H, W) SSIM map of (H, W[, C]) images (channel mean for colour)."""
    from skimage.metrics import structural_similarity

    image = np.asarray(image, np.float64)
    reference = np.asarray(reference, np.float64)
    kwargs = dict(data_range=data_range, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, full=True)
    if image.ndim == 3:
        _, smap = structural_similarity(image, reference, channel_axis=2, **kwargs)
        return smap.mean(axis=2)
    _, smap = structural_similarity(image, reference, **kwargs)
    return smap
