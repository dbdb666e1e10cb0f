"""RTI light bases (numpy, torch-free): PTM and hemispherical harmonics (HSH).

Both follow cnr-isti-vclab/relight and OpenLIME exactly, so coefficient planes
written by either tool evaluate identically here:

* PTM: [1, lx, ly, lx², lx·ly, ly²] (6 terms).
* HSH: the RTIViewer hemispherical harmonics on (theta, phi) with theta clamped to
  pi/2 - 0.01 (relight's clamp) for 4, 9 or 16 terms. Orders 0-2 match relight
  term for term; order 3 (terms 9-15) uses the same normalisation and sign pattern
  (RTIViewer's 16-term HSH).
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..lights import theta_phi

HSH_MAX_THETA = np.pi / 2 - 0.01
HSH_TERMS = (4, 9, 16)
PTM_TERMS = 6


def ptm_basis(dirs: np.ndarray) -> np.ndarray:
    """PTM basis of (N, 3) unit light directions -> (N, 6)."""
    dirs = np.asarray(dirs, dtype=np.float64).reshape(-1, 3)
    x, y = dirs[:, 0], dirs[:, 1]
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)


def hsh_basis(dirs: np.ndarray, terms: int = 9) -> np.ndarray:
    """Hemispherical harmonics of (N, 3) unit light directions -> (N, terms), terms in {4, 9, 16}."""
    if terms not in HSH_TERMS:
        raise InputError(f"HSH supports 4, 9 or 16 terms, not {terms} (use --terms 4, 9 or 16)")
    theta, phi = theta_phi(dirs)
    theta = np.minimum(theta, HSH_MAX_THETA)
    c = np.cos(theta)
    s = np.sqrt(np.maximum(c - c * c, 0.0))  # sqrt(cos - cos^2): sin-like factor of the shifted Legendre functions
    cp, sp = np.cos(phi), np.sin(phi)
    pi = np.pi
    b = [
        np.full_like(c, 1.0 / np.sqrt(2 * pi)),
        np.sqrt(6 / pi) * cp * s,
        np.sqrt(3 / (2 * pi)) * (2 * c - 1),
        np.sqrt(6 / pi) * sp * s,
    ]
    if terms > 4:
        b += [
            np.sqrt(30 / pi) * np.cos(2 * phi) * (c * c - c),
            np.sqrt(30 / pi) * cp * (2 * c - 1) * s,
            np.sqrt(5 / (2 * pi)) * (6 * c * c - 6 * c + 1),
            np.sqrt(30 / pi) * sp * (2 * c - 1) * s,
            np.sqrt(30 / pi) * np.sin(2 * phi) * (c * c - c),
        ]
    if terms > 9:
        cubic = 5 * c * c - 5 * c + 1
        b += [
            2 * np.sqrt(35 / pi) * np.cos(3 * phi) * s**3,
            np.sqrt(210 / pi) * np.cos(2 * phi) * (2 * c - 1) * (c * c - c),
            2 * np.sqrt(21 / pi) * cp * s * cubic,
            np.sqrt(7 / (2 * pi)) * (20 * c**3 - 30 * c * c + 12 * c - 1),
            2 * np.sqrt(21 / pi) * sp * s * cubic,
            np.sqrt(210 / pi) * np.sin(2 * phi) * (2 * c - 1) * (c * c - c),
            2 * np.sqrt(35 / pi) * np.sin(3 * phi) * s**3,
        ]
    return np.stack(b, axis=1)


def basis_matrix(kind: str, dirs: np.ndarray, terms: int | None = None) -> np.ndarray:
    """Basis values (N, T) for ``kind`` in {"ptm", "hsh"}."""
    if kind == "ptm":
        if terms not in (None, PTM_TERMS):
            raise InputError(f"PTM has 6 terms, not {terms} (drop --terms for ptm)")
        return ptm_basis(dirs)
    if kind == "hsh":
        return hsh_basis(dirs, terms or 9)
    raise InputError(f"unknown basis {kind!r} (use ptm, lptm, hsh or neural)")


def basis_terms(kind: str, terms: int | None = None) -> int:
    return PTM_TERMS if kind == "ptm" else int(terms or 9)
