"""Least-squares fitting of PTM and HSH models (numpy, torch-free), out of core.

The fit streams the collection in row tiles (:meth:`MLIC.rows`): a tile's float32 copy is
about :data:`TILE_BYTES`, so the only full-size arrays are the stored collection (uint8 for
JPEGs) and the coefficients. The pseudo-inverse of the basis is computed once; every pixel's
fit is the same matrix product as the in-memory fit, so tiles change nothing but float
rounding order (tests: tiled == in-memory to 1e-6).

How coefficients are held: float32 (H, W, C) up to :data:`FLOAT16_ABOVE_BYTES` (1 GiB, e.g.
a 3200 x 3200 HSH-9 rgb model), float16 above. Measured (benchmarks/rti_scale.py) on a 24 MP
(6000 x 4000), 50-light 8-bit capture, whose collection is 3.6 GB: float32 HSH-9 rgb
coefficients are 2.6 GB and the fit peaks at 6.35 GB, at the 6.4 GB target (1.5 x collection
+ 1 GB) with nothing to spare; float16 (1.3 GB) peaks at 5.03 GB. float16 keeps 11
significant bits: on a 4 MP fit the relit images differ from float32 by at most 4e-4 (a
tenth of an 8-bit level; 82 dB PSNR), while the exported 8-bit planes (what viewers show)
quantise each coefficient over its whole range in 255 steps. Small images, whose fits must not
change, stay float32; ``dtype=np.float32`` (``rti fit --precision float32``) forces it.
``RTIModel``/``relight``/``save_model`` accept either; ``coefficients.npy`` keeps the dtype.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..formats.mlic import MLIC
from .bases import basis_matrix, basis_terms
from .model import RTIModel

TILE_BYTES = 64 << 20            # float32 bytes of one tile of the collection
FLOAT16_ABOVE_BYTES = 1 << 30    # float32 coefficient bytes above which coefficients are float16


def coefficient_dtype(height: int, width: int, planes: int, dtype=None) -> np.dtype:
    """The dtype coefficients of an (height, width, planes) model are held in (see module docstring)."""
    if dtype is not None:
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float16):
            raise InputError(f"coefficients can be float32 or float16, not {dtype}")
        return dtype
    return np.dtype(np.float16 if height * width * planes * 4 > FLOAT16_ABOVE_BYTES else np.float32)


def tile_rows(mlic: MLIC, tile_bytes: int = TILE_BYTES) -> int:
    """Rows per tile so that one float32 tile of every light is about ``tile_bytes``."""
    _, w = mlic.shape
    return max(1, int(tile_bytes // max(1, mlic.count * w * 3 * 4)))


def fit_linear(mlic: MLIC, kind: str, terms: int | None = None, colorspace: str = "rgb", *,
               dtype=None, tile_bytes: int = TILE_BYTES, progress=None) -> RTIModel:
    """Fit a PTM/HSH model per pixel by least squares, one row tile at a time.

    kind : "ptm" or "hsh"; terms : 6 for PTM, 4/9/16 for HSH; colorspace : "rgb"
    (one fit per channel) or "lrgb" (a per-pixel colour times a fitted luminance).
    dtype : coefficient dtype, None for the size rule of :func:`coefficient_dtype`.
    tile_bytes : float32 bytes of one tile of the collection (tests force tiny tiles).
    Returns an RTIModel with (H, W, 3·T) or (H, W, 3 + T) coefficients.
    """
    t = basis_terms(kind, terms)
    n = mlic.count
    if n < t:
        raise InputError(f"{n} lights are fewer than the {t} terms of {kind.upper()}-{t} (capture more lights or use fewer --terms)")
    if colorspace not in ("rgb", "lrgb"):
        raise InputError(f"unknown colorspace {colorspace!r} (use rgb or lrgb)")
    basis = basis_matrix(kind, mlic.directions, t)                # (N, T)
    solve = np.linalg.pinv(basis).astype(np.float32)               # (T, N), once for every tile
    h, w = mlic.shape
    planes = 3 * t if colorspace == "rgb" else 3 + t
    coeffs = np.empty((h, w, planes), coefficient_dtype(h, w, planes, dtype))
    step = tile_rows(mlic, tile_bytes)
    starts = range(0, h, step)
    if progress is not None:
        starts = progress(starts, total=len(starts), desc="fitting", unit="tile")
    for y0 in starts:
        y1 = min(h, y0 + step)
        tile = mlic.rows(y0, y1)                                   # (N, r, W, 3) float32
        if colorspace == "rgb":
            c = np.tensordot(solve, tile, axes=(1, 0))             # (T, r, W, 3)
            coeffs[y0:y1] = np.moveaxis(c, 0, 2).reshape(y1 - y0, w, planes)  # term-major: 3·t + channel
        else:
            colour, lum = split_luminance(tile)
            coeffs[y0:y1, :, :3] = colour
            coeffs[y0:y1, :, 3:] = np.moveaxis(np.tensordot(solve, lum, axes=(1, 0)), 0, 2)  # (r, W, T)
        del tile
    meta = {"fit": "least squares", "lights": int(n)}
    return RTIModel(kind=kind, colorspace=colorspace, coefficients=coeffs, terms=t, mask=mlic.mask, meta=meta)


def split_luminance(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Factor (N, H, W, 3) images as luminance (N, H, W) times a per-pixel colour (H, W, 3).

    The colour is the mean over lights scaled so its largest channel is 1 (it fits an
    8-bit plane); each luminance is the least-squares scale of that colour to the pixel.
    Per pixel, so a row tile of a collection gives that tile's part of the whole.
    """
    mean = images.mean(axis=0)
    colour = mean / np.maximum(mean.max(axis=2, keepdims=True), 1e-6)
    norm2 = np.maximum((colour * colour).sum(axis=2), 1e-6)
    lum = np.einsum("nhwc,hwc->nhw", images, colour) / norm2
    return colour.astype(np.float32), lum.astype(np.float32)
