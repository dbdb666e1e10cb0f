"""Image quality metrics inside an optional mask."""
from __future__ import annotations

import numpy as np


def psnr(image: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None, data_range: float = 1.0) -> float:
    """PSNR in dB of (H, W[, C]) arrays; only pixels where ``mask`` (H, W) is True count."""
    diff = np.asarray(image, np.float64) - np.asarray(reference, np.float64)
    sq = diff * diff
    if sq.ndim == 3:
        sq = sq.mean(axis=2)
    mse = float(sq[mask].mean() if mask is not None else sq.mean())
    if mse <= 0:
        return float("inf")
    return float(10.0 * np.log10(data_range * data_range / mse))


def ssim(image: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None, data_range: float = 1.0) -> float:
    """Mean SSIM (Gaussian window, sigma 1.5, as Wang et al. 2004) over the pixels in ``mask``."""
    from skimage.metrics import structural_similarity

    image = np.asarray(image, np.float64)
    reference = np.asarray(reference, np.float64)
    kwargs = dict(data_range=data_range, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, full=True)
    if image.ndim == 3:
        _, smap = structural_similarity(image, reference, channel_axis=2, **kwargs)
        smap = smap.mean(axis=2)
    else:
        _, smap = structural_similarity(image, reference, **kwargs)
    return float(smap[mask].mean() if mask is not None else smap.mean())
