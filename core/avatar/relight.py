"""Display of the avatar's relit renders: the highlight roll-off applied before sRGB encoding.

The renders themselves come from the core's one renderer (:mod:`pnrelight.lightstage.render`,
see :mod:`pnrelight.avatar.pipeline`). PN-Relighting's Phong priors (exponents 1, 16, 32, 64 of a
prefiltered environment) no longer render anything; their glossy lobes survive only as the
yardstick the specular map k_s is measured with (``intrinsics.specular_map``,
``intrinsics.SPECULAR_LOBE_WEIGHTS``).
"""
from __future__ import annotations

import numpy as np

HIGHLIGHT_KNEE = 0.8  # tone_map_highlights: linear values below this are kept as they are


def tone_map_highlights(linear: np.ndarray, knee: float = HIGHLIGHT_KNEE) -> np.ndarray:
    """Soft shoulder for display: linear (..., 3) -> (..., 3) in [0, 1].

    Below ``knee`` (largest channel) colours are unchanged; above it the largest channel m is
    compressed to knee + (1 - knee) (1 - exp(-(m - knee) / (1 - knee))) (continuous slope 1 at the
    knee, approaching 1) and the other channels are scaled by the same factor, so highlights keep
    their hue instead of clipping to flat white or shifting colour channel by channel.
    """
    x = np.clip(np.asarray(linear, dtype=np.float32), 0.0, None)
    peak = x.max(axis=-1, keepdims=True)
    width = np.float32(1.0 - knee)
    squeezed = knee + width * (1.0 - np.exp(-(peak - knee) / width))
    scale = np.where(peak > knee, squeezed / np.maximum(peak, 1e-12), 1.0)
    return (x * scale).astype(np.float32)
