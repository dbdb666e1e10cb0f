"""Light directions: the one convention used everywhere.

A light direction is a unit vector (lx, ly, lz) pointing from the surface towards
the light, in the image frame of an RTI capture: x to the right of the image,
y up the image, z out of the image towards the camera (the ``.lp`` convention
of RTIBuilder, relight and NeuralRTI). Elevation is measured from the image plane,
theta (polar angle) from +z, phi (azimuth) counter-clockwise from +x.
"""
from __future__ import annotations

import numpy as np

from .errors import InputError


def normalize_directions(dirs: np.ndarray, *, what: str = "light direction") -> np.ndarray:
    """Return unit vectors; raise InputError on a zero (or non-finite) vector.

    dirs : (N, 3) array. Returns (N, 3) float64.
    """
    dirs = np.asarray(dirs, dtype=np.float64).reshape(-1, 3)
    norms = np.linalg.norm(dirs, axis=1)
    bad = np.flatnonzero(~np.isfinite(norms) | (norms < 1e-9))
    if bad.size:
        raise InputError(f"{what} {int(bad[0]) + 1} is a zero vector (give a non-zero lx ly lz)")
    return dirs / norms[:, None]


def direction_from_xy(lx: float, ly: float) -> np.ndarray:
    """Complete (lx, ly) to a unit upper-hemisphere direction (3,). Points outside the unit disc are projected onto it."""
    r = float(np.hypot(lx, ly))
    if r > 1.0:
        lx, ly = lx / r, ly / r
    return np.array([lx, ly, np.sqrt(max(0.0, 1.0 - lx * lx - ly * ly))])


def theta_phi(dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Polar angle theta in [0, pi] from +z and azimuth phi in [0, 2 pi) of (N, 3) unit vectors."""
    dirs = np.asarray(dirs, dtype=np.float64).reshape(-1, 3)
    theta = np.arccos(np.clip(dirs[:, 2], -1.0, 1.0))
    phi = np.mod(np.arctan2(dirs[:, 1], dirs[:, 0]), 2 * np.pi)
    return theta, phi


def elevation_deg(dirs: np.ndarray) -> np.ndarray:
    """Elevation above the image plane in degrees, (N,)."""
    theta, _ = theta_phi(dirs)
    return 90.0 - np.degrees(theta)


def hemisphere_directions(count: int, *, min_elevation_deg: float = 10.0, seed: int | None = None) -> np.ndarray:
    """Roughly uniform upper-hemisphere directions (Fibonacci spiral), (count, 3).

    Elevations span [min_elevation_deg, 90). With ``seed`` the spiral is rotated randomly.
    """
    i = np.arange(count) + 0.5
    zmin = np.sin(np.radians(min_elevation_deg))
    z = 1.0 - i / count * (1.0 - zmin)
    r = np.sqrt(np.clip(1.0 - z * z, 0.0, 1.0))
    golden = np.pi * (3.0 - np.sqrt(5.0))
    offset = 0.0 if seed is None else np.random.default_rng(seed).uniform(0, 2 * np.pi)
    phi = golden * i + offset
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def rotate_about_z(dirs: np.ndarray, angle_rad: float) -> np.ndarray:
    """Rotate (N, 3) directions counter-clockwise about +z by ``angle_rad``."""
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return np.asarray(dirs, dtype=np.float64) @ rot.T
