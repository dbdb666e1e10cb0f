"""Least-squares fitting of PTM and HSH models (numpy, torch-free)."""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..formats.mlic import MLIC
from .bases import basis_matrix, basis_terms
from .model import RTIModel


def fit_linear(mlic: MLIC, kind: str, terms: int | None = None, colorspace: str = "rgb") -> RTIModel:
    """Fit a PTM/HSH model per pixel by least squares.

    kind : "ptm" or "hsh"; terms : 6 for PTM, 4/9/16 for HSH; colorspace : "rgb"
    (one fit per channel) or "lrgb" (a per-pixel colour times a fitted luminance).
    Returns an RTIModel with (H, W, 3·T) or (H, W, 3 + T) coefficients.
    """
    t = basis_terms(kind, terms)
    n = len(mlic.directions)
    if n < t:
        raise InputError(f"{n} lights are fewer than the {t} terms of {kind.upper()}-{t} (capture more lights or use fewer --terms)")
    basis = basis_matrix(kind, mlic.directions, t)                # (N, T)
    solve = np.linalg.pinv(basis).astype(np.float32)               # (T, N)
    images = mlic.float_images()                                   # (N, H, W, 3)
    _, h, w, _ = images.shape
    if colorspace == "rgb":
        coeffs = np.tensordot(solve, images, axes=(1, 0))          # (T, H, W, 3)
        coeffs = np.moveaxis(coeffs, 0, 2).reshape(h, w, 3 * t)   # term-major: 3·t + channel
    elif colorspace == "lrgb":
        colour, lum = split_luminance(images)
        lum_coeffs = np.moveaxis(np.tensordot(solve, lum, axes=(1, 0)), 0, 2)  # (H, W, T)
        coeffs = np.concatenate([colour, lum_coeffs], axis=2)
    else:
        raise InputError(f"unknown colorspace {colorspace!r} (use rgb or lrgb)")
    meta = {"fit": "least squares", "lights": int(n)}
    return RTIModel(kind=kind, colorspace=colorspace, coefficients=coeffs.astype(np.float32), terms=t, mask=mlic.mask, meta=meta)


def split_luminance(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Factor (N, H, W, 3) images as luminance (N, H, W) times a per-pixel colour (H, W, 3).

    The colour is the mean over lights scaled so its largest channel is 1 (it fits an
    8-bit plane); each luminance is the least-squares scale of that colour to the pixel.
    """
    mean = images.mean(axis=0)
    colour = mean / np.maximum(mean.max(axis=2, keepdims=True), 1e-6)
    norm2 = np.maximum((colour * colour).sum(axis=2), 1e-6)
    lum = np.einsum("nhwc,hwc->nhw", images, colour) / norm2
    return colour.astype(np.float32), lum.astype(np.float32)
