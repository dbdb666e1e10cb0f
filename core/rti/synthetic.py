"""Procedural multi-light image collections with known geometry and material.

Used for the bundled demo example and for tests: a relief "coin" (height field)
with a coloured albedo pattern, rendered Lambert + Blinn-Phong under directional lights.
Run ``python -m pnrelight.rti.synthetic OUT_DIR`` to regenerate the shipped example.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..lights import hemisphere_directions


def relief_coin(size: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Height field, albedo and mask of a relief disc.

    Returns normals (H, W, 3), albedo (H, W, 3) in [0, 1], mask (H, W) bool.
    """
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    u = (x + 0.5) / size * 2 - 1
    v = 1 - (y + 0.5) / size * 2                       # image y up
    r = np.hypot(u, v)
    mask = r < 0.92
    height = 0.08 * np.exp(-((r - 0.78) / 0.05) ** 2)  # raised rim
    for cx, cy, s, a in [(-0.3, 0.25, 0.18, 0.25), (0.35, 0.2, 0.12, -0.18), (0.0, -0.35, 0.22, 0.2)]:
        height += a * np.exp(-((u - cx) ** 2 + (v - cy) ** 2) / (2 * s * s)) * 0.4
    height += 0.015 * np.sin(18 * u) * np.sin(14 * v) * (r < 0.7)   # fine engraving
    height *= mask
    gy, gx = np.gradient(height * size / 2)
    normals = np.stack([-gx, gy, np.ones_like(gx)], axis=-1)       # gradient rows run down the image
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    hue = np.arctan2(v, u)
    albedo = np.stack([0.55 + 0.25 * np.cos(hue), 0.45 + 0.2 * np.cos(hue - 2.1), 0.35 + 0.2 * np.cos(hue + 2.1)], axis=-1)
    albedo *= (0.85 + 0.15 * (np.sin(25 * r) > 0))[..., None]
    albedo[~mask] = 0.12
    return normals, np.clip(albedo, 0, 1), mask


def render(normals: np.ndarray, albedo: np.ndarray, lights: np.ndarray, *, specular: float = 0.35, shininess: float = 40.0) -> np.ndarray:
    """Lambert + Blinn-Phong under (N, 3) directional lights, viewer along +z -> (N, H, W, 3)."""
    view = np.array([0.0, 0.0, 1.0])
    out = []
    for l in np.asarray(lights, np.float64):
        ndl = np.clip(normals @ l, 0.0, None)
        half = (l + view) / np.linalg.norm(l + view)
        spec = specular * np.clip(normals @ half, 0.0, None) ** shininess * (ndl > 0)
        out.append(np.clip(albedo * ndl[..., None] + spec[..., None], 0.0, 1.0))
    return np.stack(out).astype(np.float32)


def relief_rows(width: int, height: int, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows y0:y1 of a procedural relief of any size, for collections too large to hold as floats.

    A few broad bumps (in image-relative units) plus an engraving and albedo stripes whose
    periods are in pixels, so every size has detail at the pixel scale. The height field's
    gradient is analytic: rows can be made independently, in any order.
    Returns normals (y1 - y0, width, 3) and albedo (y1 - y0, width, 3), float32.
    """
    y, x = np.mgrid[y0:y1, 0:width].astype(np.float64)
    scale = min(width, height) / 2.0
    u = (x + 0.5 - width / 2) / scale                  # image-relative, y up
    v = (height / 2 - y - 0.5) / scale
    dh_du = np.zeros_like(u)
    dh_dv = np.zeros_like(u)
    for cx, cy, s, a in [(-0.6, 0.3, 0.35, 0.30), (0.5, 0.25, 0.25, -0.22), (0.0, -0.45, 0.4, 0.25), (0.9, -0.5, 0.2, 0.15)]:
        g = a * np.exp(-((u - cx) ** 2 + (v - cy) ** 2) / (2 * s * s))
        dh_du -= g * (u - cx) / (s * s)
        dh_dv -= g * (v - cy) / (s * s)
    k1, k2 = 2 * np.pi / 37.0, 2 * np.pi / 23.0      # engraving periods in pixels
    depth = 1.2                                        # engraving amplitude in pixels
    gx = dh_du / scale + depth * k1 * np.cos(k1 * x) * np.sin(k2 * y)   # d(height in px)/dx
    gy = -dh_dv / scale + depth * k2 * np.sin(k1 * x) * np.cos(k2 * y)  # along image rows (down)
    normals = np.stack([-gx * scale, gy * scale, np.full_like(gx, scale)], axis=-1)
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    hue = np.arctan2(v, u)
    albedo = np.stack([0.55 + 0.25 * np.cos(hue), 0.45 + 0.2 * np.cos(hue - 2.1), 0.35 + 0.2 * np.cos(hue + 2.1)], axis=-1)
    albedo *= (0.85 + 0.15 * (np.sin(2 * np.pi * (x + y) / 29.0) > 0))[..., None]
    return normals.astype(np.float32), np.clip(albedo, 0, 1).astype(np.float32)


def write_example(out_dir: str | Path, *, size: int = 128, train_lights: int = 40, test_lights: int = 10, seed: int = 7) -> Path:
    """Write a train MLIC to ``out_dir`` and a held-out one to ``out_dir/test`` (JPEG + dirs.lp + mask.png)."""
    from ..formats.lp import write_lp
    from ..imageio import write_image

    out_dir = Path(out_dir)
    normals, albedo, mask = relief_coin(size)
    for folder, count, s in [(out_dir, train_lights, None), (out_dir / "test", test_lights, seed)]:
        folder.mkdir(parents=True, exist_ok=True)
        dirs = hemisphere_directions(count, min_elevation_deg=15.0, seed=s)
        images = render(normals, albedo, dirs)
        names = [f"light{i:02d}.jpg" for i in range(count)]
        for name, img in zip(names, images):
            write_image(folder / name, img, quality=95)
        write_lp(folder / "dirs.lp", names, dirs)
        write_image(folder / "mask.png", mask.astype(np.float32))
    return out_dir


if __name__ == "__main__":
    write_example(sys.argv[1] if len(sys.argv) > 1 else "assets/examples/rti_synthetic")
