"""Preview pictures of RTI models: a row of relit renders under a few lights."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..lights import direction_from_xy
from .model import RTIModel, relight

PREVIEW_LIGHTS_XY = [(0.0, 0.0), (-0.6, 0.4), (0.6, 0.4), (0.0, -0.8)]


def preview_strip(model: RTIModel, *, max_side: int = 256, lights_xy=PREVIEW_LIGHTS_XY, gap: int = 4) -> np.ndarray:
    """(h, k·(w+gap)-gap, 3) float image: the model relit under each (lx, ly) of ``lights_xy``.

    Models over ``4·max_side`` are relit on every n-th coefficient first, so the preview of a
    24 MP model costs what a 1 MP one does.
    """
    stride = max(1, max(model.shape) // (4 * max_side))
    if stride > 1:
        model = replace(model, coefficients=model.coefficients[::stride, ::stride], mask=None)
    tiles = [_shrink(relight(model, direction_from_xy(*xy)), max_side) for xy in lights_xy]
    return tile_row(tiles, gap=gap)


def tile_row(tiles: list[np.ndarray], gap: int = 4, background: float = 1.0) -> np.ndarray:
    h = max(t.shape[0] for t in tiles)
    w = sum(t.shape[1] for t in tiles) + gap * (len(tiles) - 1)
    out = np.full((h, w, 3), background, np.float32)
    x = 0
    for t in tiles:
        out[: t.shape[0], x:x + t.shape[1]] = t if t.ndim == 3 else t[..., None]
        x += t.shape[1] + gap
    return out


def _shrink(img: np.ndarray, max_side: int) -> np.ndarray:
    step = int(np.ceil(max(img.shape[:2]) / max_side))
    if step <= 1:
        return img
    h, w = img.shape[0] // step * step, img.shape[1] // step * step
    return img[:h, :w].reshape(h // step, step, w // step, step, 3).mean(axis=(1, 3))
