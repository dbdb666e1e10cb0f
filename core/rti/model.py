"""The in-memory RTI model and its relighting (numpy, torch-free).

Coefficient layouts, ``coefficients`` being (H, W, C) float32 in units of [0, 1] pixel values
(float16 for large PTM/HSH fits, see :mod:`pnrelight.rti.fit`; every reader here takes both):

* ``rgb`` (PTM/HSH): C = 3·T, term-major: index ``3·t + channel`` (relight's plane order).
* ``lrgb`` (PTM/HSH): C = 3 + T: an RGB colour in [0, 1], then T luminance coefficients;
  pixel = (Σ_t basis_t · lum_t) · colour.
* ``neural``: C = latent size (9 for OpenLIME); the decoder maps latent + (lx, ly) to RGB.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..lights import normalize_directions
from . import mlp
from .bases import basis_matrix

KINDS = ("ptm", "hsh", "neural")


@dataclass
class RTIModel:
    kind: str                    # "ptm" | "hsh" | "neural"
    colorspace: str              # "rgb" | "lrgb"
    coefficients: np.ndarray     # (H, W, C) float32 (float16 when large), see module docstring
    terms: int                   # basis terms, or latent size for neural
    layers: list | None = None   # neural decoder [(W (out, in), b (out,)), ...]
    mask: np.ndarray | None = None  # (H, W) bool
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return self.coefficients.shape[0], self.coefficients.shape[1]

    @property
    def label(self) -> str:
        if self.kind == "neural":
            return f"neural {'x'.join(str(w) for w in mlp.hidden_widths(self.layers))}"
        prefix = "l" if self.colorspace == "lrgb" else ""
        return f"{prefix}{self.kind}-{self.terms}"


RELIGHT_CHUNK_PIXELS = 1 << 16   # pixels per chunk: a chunk's float32 temporaries stay in cache


def relight(model: RTIModel, light: np.ndarray, *, clip: bool = True, chunk_pixels: int = RELIGHT_CHUNK_PIXELS) -> np.ndarray:
    """Render the model under one light direction (3,) (or (lx, ly)) -> (H, W, 3) float32.

    PTM/HSH are evaluated in chunks of ``chunk_pixels`` pixels in float32 (coefficients may
    be float32 or float16): the only full-size array made is the result.
    """
    light = np.asarray(light, dtype=np.float64).ravel()
    if light.size == 2:
        from ..lights import direction_from_xy

        light = direction_from_xy(*light)
    light = normalize_directions(light[None])[0]
    h, w = model.shape
    coeffs = model.coefficients.reshape(h * w, -1)
    if model.kind == "neural" and coeffs.dtype == np.float32:  # decode chunks internally; one call keeps its buffers
        return mlp.decode(coeffs, light[:2], model.layers, clip=clip).reshape(h, w, 3)
    out = np.empty((h * w, 3), np.float32)
    if model.kind == "neural":
        for s in range(0, h * w, chunk_pixels):
            out[s:s + chunk_pixels] = mlp.decode(coeffs[s:s + chunk_pixels], light[:2], model.layers, clip=clip)
        return out.reshape(h, w, 3)
    weights = basis_matrix(model.kind, light[None], model.terms)[0].astype(np.float32)  # (T,)
    if model.colorspace == "rgb":
        # pixel_c = Σ_t w_t · coeff_{3t+c}: one (P, 3T) @ (3T, 3) product per chunk
        mix = np.kron(weights[:, None], np.eye(3, dtype=np.float32))                  # (3T, 3)
    for s in range(0, h * w, chunk_pixels):
        c = np.asarray(coeffs[s:s + chunk_pixels], np.float32)
        o = out[s:s + chunk_pixels]
        if model.colorspace == "lrgb":
            np.multiply(c[:, :3], (c[:, 3:] @ weights)[:, None], out=o)
        else:
            np.matmul(c, mix, out=o)
        if clip:
            np.clip(o, 0.0, 1.0, out=o)
    return out.reshape(h, w, 3)


def check_model(model: RTIModel) -> None:
    """Validate shapes; InputError names what is inconsistent."""
    if model.kind not in KINDS:
        raise InputError(f"unknown RTI model type {model.kind!r} (supported: ptm, hsh, neural)")
    c = model.coefficients.shape[-1]
    if model.kind == "neural":
        if not model.layers:
            raise InputError("neural model has no decoder weights (info.json needs 'weights' and 'biases')")
        w0 = np.asarray(model.layers[0][0])
        if w0.shape[1] < c + 2:
            raise InputError(f"decoder's first layer takes {w0.shape[1]} inputs but the model has {c} coefficients + 2 light values")
        return
    expected = 3 * model.terms if model.colorspace == "rgb" else 3 + model.terms
    if c != expected:
        raise InputError(f"{model.kind} {model.colorspace} with {model.terms} terms needs {expected} coefficient planes, found {c}")
