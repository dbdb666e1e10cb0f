"""Cameras for the avatar's free-view renders (the renders themselves: :mod:`pnrelight.lightstage.render`).

:func:`orbit_pose` places an OpenGL camera (camera-to-world, looking down its -z) on a circle
around a centre; :func:`framing` picks the centre and distance that fit a mesh into the field of view.
"""
from __future__ import annotations

import numpy as np


def orbit_pose(center: np.ndarray, distance: float, yaw_deg: float, pitch_deg: float = 0.0) -> np.ndarray:
    """Camera-to-world (4, 4) pose of an OpenGL camera (looking down its -z) that orbits ``center``.

    yaw 0 looks at the face from the front (+z side of the model); positive yaw moves the
    camera towards +x (the viewer's right), positive pitch moves it up.
    """
    a, b = np.radians(yaw_deg), np.radians(pitch_deg)
    eye = np.asarray(center, dtype=np.float64) + distance * np.array([np.sin(a) * np.cos(b), np.sin(b), np.cos(a) * np.cos(b)])
    z = eye - center
    z /= np.linalg.norm(z)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x, y, z, eye
    return pose


def framing(vertices: np.ndarray, yfov_deg: float = 30.0, margin: float = 1.15) -> tuple[np.ndarray, float]:
    """Centre (3,) and camera distance that fit the mesh's bounding sphere into the field of view."""
    v = np.asarray(vertices, dtype=np.float64)
    center = 0.5 * (v.min(0) + v.max(0))
    radius = float(np.linalg.norm(v - center, axis=1).max())
    return center, margin * radius / np.sin(np.radians(yfov_deg) / 2)
