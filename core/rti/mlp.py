"""NeuralRTI decoders evaluated with numpy (torch-free, used by the CLI relight and Blender).

A decoder is a list of dense layers ``[(W, b), ...]`` with ``W`` shaped (out, in)
(the OpenLIME layout), ELU between layers and none after the last. Its input is the
pixel's latent code followed by the light's (lx, ly).
"""
from __future__ import annotations

import numpy as np

Layers = list  # list[tuple[np.ndarray (out, in), np.ndarray (out,)]]


def decode(latent: np.ndarray, light_xy: np.ndarray, layers: Layers, *, chunk: int = 4096) -> np.ndarray:
    """Evaluate the decoder.

    latent : (N, K) float32 codes.
    light_xy : (2,) one light for all pixels, or (N, 2) one per pixel.
    Returns (N, out) float32.

    With a single light the light's part of the first layer is folded into its bias,
    so the first layer costs K multiply-adds per unit instead of K + 2. Chunks are
    evaluated feature-major ((units, pixels) arrays): BLAS is fastest with the pixel
    count as the long dimension, and a chunk's activations stay in cache.
    """
    latent = np.asarray(latent, dtype=np.float32)
    n, k = latent.shape
    light_xy = np.asarray(light_xy, dtype=np.float32)
    w0, b0 = (np.asarray(a, dtype=np.float32) for a in layers[0])
    out_dim = np.asarray(layers[-1][0]).shape[0]
    result = np.empty((n, out_dim), dtype=np.float32)
    per_pixel = light_xy.ndim == 2
    w0_code = np.ascontiguousarray(w0[:, :k])
    w0_light = np.ascontiguousarray(w0[:, k:k + 2])
    folded_bias = (b0 + (w0_light @ light_xy if not per_pixel else 0.0))[:, None]
    rest = [(np.ascontiguousarray(np.asarray(w, np.float32)), np.asarray(b, np.float32)[:, None]) for w, b in layers[1:]]
    # Preallocated per-layer buffers: fresh large arrays would page-fault on every chunk.
    widths = [w0.shape[0]] + [w.shape[0] for w, _ in rest]
    bufs = [np.empty((wd, chunk), np.float32) for wd in widths]
    scratch = np.empty((max(widths), chunk), np.float32)
    lat_t = np.empty((k, chunk), np.float32)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        m = stop - start
        np.copyto(lat_t[:, :m], latent[start:stop].T)
        h = np.matmul(w0_code, lat_t[:, :m], out=bufs[0][:, :m])
        h += folded_bias
        if per_pixel:
            h += w0_light @ light_xy[start:stop].T
        for i, (w, b) in enumerate(rest, start=1):
            _elu_inplace(h, scratch[: h.shape[0], :m])
            h = np.matmul(w, h, out=bufs[i][:, :m])
            h += b
        result[start:stop] = h.T
    return result


def _elu_inplace(h: np.ndarray, t: np.ndarray) -> None:
    # ELU(x) = max(x, exp(min(x, 0)) - 1): four SIMD passes, no masks (e^x - 1 >= x everywhere)
    np.minimum(h, 0.0, out=t)
    np.exp(t, out=t)
    t -= 1.0
    np.maximum(h, t, out=h)


def decoder_parameters(layers: Layers) -> int:
    """Number of weights and biases."""
    return int(sum(np.asarray(w).size + np.asarray(b).size for w, b in layers))


def hidden_widths(layers: Layers) -> list[int]:
    return [int(np.asarray(w).shape[0]) for w, _ in layers[:-1]]
