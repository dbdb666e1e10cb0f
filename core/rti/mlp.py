"""NeuralRTI decoders evaluated with numpy (torch-free, used by the CLI relight and Blender).

A decoder is a list of dense layers ``[(W, b), ...]`` with ``W`` shaped (out, in)
(the OpenLIME layout), ELU between layers and none after the last. Its input is the
pixel's latent code followed by the light's (lx, ly).
"""
from __future__ import annotations

import numpy as np

Layers = list  # list[tuple[np.ndarray (out, in), np.ndarray (out,)]]


def decode(latent: np.ndarray, light_xy: np.ndarray, layers: Layers, *, chunk: int = 2048,
           clip: bool = False) -> np.ndarray:
    """Evaluate the decoder.

    latent : (N, K) float32 codes.
    light_xy : (2,) one light for all pixels, or (N, 2) one per pixel.
    clip : clamp the output to [0, 1] (done per chunk while it is in cache).
    Returns (N, out) float32.

    Chunks are evaluated feature-major ((units, pixels) arrays): BLAS is fastest with
    the pixel count as the long dimension, and a chunk's activations stay in cache. The
    last layer is computed pixel-major straight into the result (BLAS reads the
    transposed activations), which saves a transposing copy per chunk.
    Every activation buffer carries a last row of ones and every weight matrix its bias
    as a last column (the last layer's matrix is kept transposed, so there a last row),
    so biases cost no separate pass; with a single light its part of
    the first layer is folded into that bias too. Elementwise operands are full arrays,
    never broadcast scalars or columns (numpy's broadcast loops are 2-3x slower here).
    """
    latent = np.asarray(latent, dtype=np.float32)
    n, k = latent.shape
    light_xy = np.asarray(light_xy, dtype=np.float32)
    w0, b0 = (np.asarray(a, dtype=np.float32) for a in layers[0])
    per_pixel = light_xy.ndim == 2
    w0_light = np.ascontiguousarray(w0[:, k:k + 2])
    first_bias = b0 + (w0_light @ light_xy if not per_pixel else 0.0)
    augmented = [np.ascontiguousarray(np.hstack([w0[:, :k], first_bias[:, None]]))]
    augmented += [np.ascontiguousarray(np.hstack([np.asarray(w, np.float32), np.asarray(b, np.float32)[:, None]]))
                  for w, b in layers[1:]]
    last = np.ascontiguousarray(augmented.pop().T)  # (in + 1, out)
    out_dim = last.shape[1]
    result = np.empty((n, out_dim), dtype=np.float32)
    # Preallocated buffers (fresh large arrays would page-fault on every chunk); row -1 is ones.
    inputs = [np.ones((k + 1, chunk), np.float32)] + [np.ones((w.shape[0] + 1, chunk), np.float32) for w in augmented]
    widest = max(b.shape[0] for b in inputs)
    scratch = np.empty((widest, chunk), np.float32)
    zeros = np.zeros((widest, chunk), np.float32)
    out_zeros = np.zeros((chunk, out_dim), np.float32)
    out_ones = np.ones((chunk, out_dim), np.float32)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        m = stop - start
        np.copyto(inputs[0][:k, :m], latent[start:stop].T)
        for i, w in enumerate(augmented):
            h = np.matmul(w, inputs[i][:, :m], out=inputs[i + 1][:-1, :m])
            if i == 0 and per_pixel:
                h += w0_light @ light_xy[start:stop].T
            _elu_inplace(h, scratch[:h.shape[0], :m], zeros[:h.shape[0], :m])
        out = np.matmul(inputs[-1][:, :m].T, last, out=result[start:stop])
        if clip:
            np.minimum(out, out_ones[:m], out=out)
            np.maximum(out, out_zeros[:m], out=out)
    return result


def _elu_inplace(h: np.ndarray, t: np.ndarray, zeros: np.ndarray) -> None:
    # ELU(x) = max(x, expm1(min(x, 0))): three SIMD passes, no masks (e^x - 1 >= x everywhere)
    np.minimum(h, zeros, out=t)
    np.expm1(t, out=t)
    np.maximum(h, t, out=h)


def decoder_parameters(layers: Layers) -> int:
    """Number of weights and biases."""
    return int(sum(np.asarray(w).size + np.asarray(b).size for w, b in layers))


def hidden_widths(layers: Layers) -> list[int]:
    return [int(np.asarray(w).shape[0]) for w, _ in layers[:-1]]
