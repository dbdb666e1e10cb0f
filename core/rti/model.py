"""The in-memory RTI model and its relighting (numpy, torch-free).

Coefficient layouts, ``coefficients`` being (H, W, C) float32 in units of [0, 1] pixel values:

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
    coefficients: np.ndarray     # (H, W, C) float32, see module docstring
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


def relight(model: RTIModel, light: np.ndarray, *, clip: bool = True) -> np.ndarray:
    """Render the model under one light direction (3,) (or (lx, ly)) -> (H, W, 3) float32."""
    light = np.asarray(light, dtype=np.float64).ravel()
    if light.size == 2:
        from ..lights import direction_from_xy

        light = direction_from_xy(*light)
    light = normalize_directions(light[None])[0]
    h, w = model.shape
    coeffs = model.coefficients.reshape(h * w, -1)
    if model.kind == "neural":
        return mlp.decode(coeffs, light[:2], model.layers, clip=clip).reshape(h, w, 3)
    weights = basis_matrix(model.kind, light[None], model.terms)[0].astype(np.float32)
    if model.colorspace == "lrgb":
        lum = coeffs[:, 3:] @ weights
        out = coeffs[:, :3] * lum[:, None]
    else:
        out = coeffs.reshape(-1, model.terms, 3).transpose(0, 2, 1) @ weights
    out = out.reshape(h, w, 3)
    return np.clip(out, 0.0, 1.0) if clip else out


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
