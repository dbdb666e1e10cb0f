"""Pinhole camera in the OpenGL frame (x right, y up, z towards the viewer; the camera looks down -z).

Pixel coordinates: u right, v down, pixel centres at integer + 0.5:
``u = cx + f * X / (-Z)``, ``v = cy - f * Y / (-Z)``.
"""
from __future__ import annotations

import numpy as np


def default_focal_px(height: int, width: int) -> float:
    """Focal-length prior for a portrait: 1.2 * max(H, W) (about a 45 degree field of view)."""
    return 1.2 * float(max(height, width))


def default_principal_point(height: int, width: int) -> np.ndarray:
    """(2,) image centre (cx, cy) in pixels."""
    return np.array([width / 2.0, height / 2.0], dtype=np.float32)


def project(points_cam: np.ndarray, focal_px: float, principal_point) -> np.ndarray:
    """(N, 3) camera-frame points -> (N, 2) float32 pixel coordinates (u, v)."""
    p = np.asarray(points_cam, dtype=np.float64)
    cx, cy = np.asarray(principal_point, dtype=np.float64)
    depth = np.maximum(-p[..., 2], 1e-9)
    u = cx + focal_px * p[..., 0] / depth
    v = cy - focal_px * p[..., 1] / depth
    return np.stack([u, v], axis=-1).astype(np.float32)


def project_with_depth(points_cam: np.ndarray, focal_px: float, principal_point) -> np.ndarray:
    """(N, 3) camera-frame points -> (N, 3) float32 (u, v, camera z) for the rasterizer (larger z = closer)."""
    uv = project(points_cam, focal_px, principal_point)
    return np.concatenate([uv, np.asarray(points_cam, dtype=np.float32)[..., 2:3]], axis=-1)


def intrinsics_matrix(focal_px: float, principal_point) -> np.ndarray:
    """(3, 3) OpenCV-style K for the same camera (OpenCV frame: y down, z forward)."""
    cx, cy = np.asarray(principal_point, dtype=np.float64)
    return np.array([[focal_px, 0.0, cx], [0.0, focal_px, cy], [0.0, 0.0, 1.0]])


def axis_angle_to_matrix(axis_angle) -> np.ndarray:
    """(3,) rotation vector (radians) -> (3, 3) rotation matrix (Rodrigues)."""
    r = np.asarray(axis_angle, dtype=np.float64)
    theta = np.linalg.norm(r)
    if theta < 1e-12:
        return np.eye(3)
    k = r / theta
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * K + (1 - np.cos(theta)) * K @ K


def matrix_to_axis_angle(rotation: np.ndarray) -> np.ndarray:
    """(3, 3) rotation matrix -> (3,) rotation vector (radians)."""
    R = np.asarray(rotation, dtype=np.float64)
    cos = np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0)
    theta = np.arccos(cos)
    if theta < 1e-8:
        return np.zeros(3)
    if np.pi - theta < 1e-5:  # near 180 degrees: axis from the symmetric part
        w, vecs = np.linalg.eigh((R + np.eye(3)) / 2.0)
        return vecs[:, -1] * theta
    v = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    return v / (2.0 * np.sin(theta)) * theta


def rotation_angle_deg(r1: np.ndarray, r2: np.ndarray) -> float:
    """Angle (degrees) of the relative rotation between two (3, 3) rotation matrices."""
    cos = (np.trace(np.asarray(r1).T @ np.asarray(r2)) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
