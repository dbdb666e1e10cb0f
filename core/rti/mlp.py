"""NeuralRTI decoders evaluated with numpy (torch-free, used by the CLI relight and Blender).

A decoder is a list of dense layers ``[(W, b), ...]`` with ``W`` shaped (out, in)
(the OpenLIME layout), ELU between layers and none after the last. Its input is the
pixel's latent code followed by the light's (lx, ly).
"""
from __future__ import annotations

import numpy as np

Layers = list  # list[tuple[np.ndarray (out, in), np.ndarray (out,)]]


def decode(latent: np.ndarray, light_xy: np.ndarray, layers: Layers, *, chunk: int = 1 << 14) -> np.ndarray:
    """Evaluate the decoder.

    latent : (N, K) float32 codes.
    light_xy : (2,) one light for all pixels, or (N, 2) one per pixel.
    Returns (N, out) float32.

    With a single light the light's part of the first layer is folded into its bias,
    so the first layer costs K multiply-adds per unit instead of K + 2.
    """
    latent = np.asarray(latent, dtype=np.float32)
    n, k = latent.shape
    light_xy = np.asarray(light_xy, dtype=np.float32)
    w0, b0 = (np.asarray(a, dtype=np.float32) for a in layers[0])
    out_dim = np.asarray(layers[-1][0]).shape[0]
    result = np.empty((n, out_dim), dtype=np.float32)
    per_pixel = light_xy.ndim == 2
    w0_code_t = np.ascontiguousarray(w0[:, :k].T)
    w0_light = w0[:, k:k + 2]
    folded_bias = b0 + (w0_light @ light_xy if not per_pixel else 0.0)
    rest = [(np.ascontiguousarray(np.asarray(w, np.float32).T), np.asarray(b, np.float32)) for w, b in layers[1:]]
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        h = latent[start:stop] @ w0_code_t
        h += folded_bias
        if per_pixel:
            h += light_xy[start:stop] @ w0_light.T
        for wt, b in rest:
            _elu_inplace(h)
            h = h @ wt
            h += b
        result[start:stop] = h
    return result


def _elu_inplace(h: np.ndarray) -> None:
    # ELU(x) = max(x, exp(min(x, 0)) - 1): four SIMD passes, no masks (e^x - 1 >= x everywhere)
    t = np.minimum(h, 0.0)
    np.exp(t, out=t)
    t -= 1.0
    np.maximum(h, t, out=h)


def decoder_parameters(layers: Layers) -> int:
    """Number of weights and biases."""
    return int(sum(np.asarray(w).size + np.asarray(b).size for w, b in layers))


def hidden_widths(layers: Layers) -> list[int]:
    return [int(np.asarray(w).shape[0]) for w, _ in layers[:-1]]
