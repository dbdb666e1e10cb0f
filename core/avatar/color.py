"""sRGB <-> linear transfer functions (IEC 61966-2-1), elementwise on float arrays in [0, 1].

Intrinsic decomposition and relighting work in linear light; images are read
and written sRGB-encoded.
"""
from __future__ import annotations

import numpy as np


def srgb_to_linear(image: np.ndarray) -> np.ndarray:
    """Decode sRGB values to linear light. Any shape; returns float32, negatives clipped to 0."""
    x = np.clip(np.asarray(image, dtype=np.float32), 0.0, None)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(image: np.ndarray) -> np.ndarray:
    """Encode linear light as sRGB. Any shape; returns float32 clipped to [0, 1]."""
    x = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1.0 / 2.4) - 0.055).astype(np.float32)
