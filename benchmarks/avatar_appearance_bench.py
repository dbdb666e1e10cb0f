"""Appearance stage of the avatar on a 512 x 512 synthetic face-sized crop: timings and accuracy.

Ground truth: a camera-facing sphere (radius 0.45 of the crop, the size of a face crop)
with random bumps (detail normals), a textured albedo and a known order-2 SH light.
Prints a table and writes benchmarks/results/avatar_appearance.json.

Run: .venv/bin/python benchmarks/avatar_appearance_bench.py [--size 512]
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from pnrelight import envmap
from pnrelight.avatar import intrinsics

RESULTS = Path(__file__).resolve().parent / "results"


def scene(size: int, seed: int = 0):
    v, u = np.mgrid[0:size, 0:size] + 0.5
    radius = 0.45 * size
    x, y = (u - size / 2) / radius, -(v - size / 2) / radius
    mask = (x * x + y * y) < 0.96  # keep off the grazing rim
    depth = np.sqrt(np.clip(radius**2 - (u - size / 2) ** 2 - (v - size / 2) ** 2, 1e-6, None))
    rng = np.random.default_rng(seed)
    bump = np.zeros((size, size))
    for _ in range(40):
        cu, cv = rng.uniform(0.2 * size, 0.8 * size, 2)
        s = rng.uniform(0.02, 0.04) * size
        bump += rng.uniform(-1, 1) * 0.6 * s * np.exp(-((u - cu) ** 2 + (v - cv) ** 2) / (2 * s * s))
    def normals_of(zx, zy):
        n = np.stack([-zx, -zy, np.ones_like(zx)], -1)
        n /= np.linalg.norm(n, axis=-1, keepdims=True)
        n[~mask] = 0
        return n.astype(np.float32)
    smooth = normals_of(-(u - size / 2) / depth, (v - size / 2) / depth)
    truth = normals_of(-(u - size / 2) / depth + np.gradient(bump, axis=1), (v - size / 2) / depth - np.gradient(bump, axis=0))
    sc = size / 256.0
    albedo = np.stack([0.55 + 0.1 * np.sin(u / (23 * sc)) * np.cos(v / (31 * sc)), 0.42 + 0.08 * np.cos(u / (19 * sc) + 1), 0.33 + 0.06 * np.sin(v / (17 * sc))], -1)
    albedo = albedo.astype(np.float32)
    sh = np.zeros((9, 3))
    sh[0], sh[1], sh[2], sh[3], sh[4], sh[6], sh[8] = [0.9, 0.85, 0.8], 0.3, 0.45, -0.45, 0.05, -0.06, 0.05
    shading = envmap.render_sh(truth, sh)
    image = albedo * np.clip(shading, 0, None) + rng.normal(0, 0.003, albedo.shape)
    highlight = 0.5 * np.exp(-((u - 0.4 * size) ** 2 + (v - 0.35 * size) ** 2) / (2 * (0.012 * size) ** 2))
    image = np.clip(image + highlight[..., None], 0, None).astype(np.float32)
    image[~mask] = 0
    return image, truth, smooth, mask, albedo, sh


def angular_error(a, b, mask):
    return float(np.degrees(np.arccos(np.clip(np.sum(a * b, -1), -1, 1)))[mask].mean())


def psnr(a, b, mask):
    return float(10 * np.log10(1.0 / np.mean((a[mask] - b[mask]) ** 2)))


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    import torch  # imported up front so its import time is not charged to the first stage

    image, truth, smooth, mask, albedo_true, sh_true = scene(args.size)
    rows = []
    sh_known, t = timed(intrinsics.estimate_sh_lighting, image, smooth, mask, albedo=albedo_true)
    rows.append(("estimate_sh_lighting (300 Adam steps, 20k px)", t, f"SH rel. error {np.linalg.norm(sh_known - sh_true) / np.linalg.norm(sh_true):.4f} (mesh normals, known albedo)"))
    sh, t = timed(intrinsics.estimate_sh_lighting, image, smooth, mask)
    rows.append(("estimate_sh_lighting, unknown albedo", t, ""))
    shading_true = envmap.render_sh(truth, sh_true)
    naive = np.clip(image / np.maximum(shading_true, 1e-4), 0, 1)
    albedo, t = timed(intrinsics.albedo_by_division, image, shading_true, mask)
    rows.append(("albedo_by_division", t, f"PSNR {psnr(albedo, albedo_true, mask):.2f} dB (naive division {psnr(naive, albedo_true, mask):.2f} dB), true shading"))
    refined, t = timed(intrinsics.refine_normals_sfs, image, albedo_true, sh_true, smooth, mask)
    rows.append(("refine_normals_sfs (100 steps)", t, f"normal error {angular_error(smooth, truth, mask):.2f} -> {angular_error(refined, truth, mask):.2f} deg"))
    spec, t = timed(intrinsics.specular_map, image, albedo, shading_true, mask)
    rows.append(("specular_map", t, ""))
    result, t = timed(intrinsics.decompose, image, smooth, mask)
    # decompose's albedo is only defined up to the light's scale/colour: compare after a per-channel gain
    gain = np.median(albedo_true[mask], axis=0) / np.median(result.albedo[mask], axis=0)
    rows.append(("decompose (whole §5.1 chain)", t, f"albedo PSNR {psnr(np.clip(result.albedo * gain, 0, 1), albedo_true, mask):.2f} dB after gain; normals {angular_error(result.normals, truth, mask):.2f} deg"))
    # The same face in a 1080p frame (decompose crops to the face's bounding box).
    frame, frame_n, frame_m = np.zeros((1080, 1920, 3), np.float32), np.zeros((1080, 1920, 3), np.float32), np.zeros((1080, 1920), bool)
    frame_n[..., 2] = 1.0
    r0, c0 = (1080 - args.size) // 2, (1920 - args.size) // 2
    window = (slice(r0, r0 + args.size), slice(c0, c0 + args.size))
    frame[window], frame_m[window] = image, mask
    frame_n[window] = np.where(mask[..., None], smooth, frame_n[window])
    _, t = timed(intrinsics.decompose, frame, frame_n, frame_m)
    rows.append(("decompose, same face in a 1920x1080 frame", t, ""))

    print(f"appearance stage, {args.size}x{args.size}, torch {torch.__version__}, {platform.processor() or platform.machine()}")
    print(f"{'stage':48s} {'seconds':>8s}  notes")
    for name, sec, note in rows:
        print(f"{name:48s} {sec:8.3f}  {note}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "avatar_appearance.json"
    out.write_text(json.dumps({"size": args.size, "seed": 0, "rows": [{"stage": n, "seconds": s, "notes": k} for n, s, k in rows]}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
