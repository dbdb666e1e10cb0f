"""Avatar quality: intrinsics on synthetic ground truth, and the astronaut re-rendered from its textures.

1. Synthetic ground truth (PN-Relighting Tables 2 and 3 formats). The default face mesh fitted
   to skimage's astronaut is rendered with a KNOWN albedo texture and a KNOWN normal map (the
   textures estimated from the astronaut, so their statistics are a real face's) under a KNOWN
   order-2 SH lighting (the shipped "studio" environment map projected to SH, different from the
   photo's), composited over the photo's background. The full pipeline (landmarks, fit,
   intrinsics, UV textures) runs on that render; its image-space normals and albedo are compared
   with the ground truth inside the face (ground-truth mesh mask & pipeline face mask):
   normal mean angular error and % of pixels under 5/15/25 degrees (Table 3), albedo SSIM, PSNR
   and RMSE in sRGB (Table 2) after a per-channel gain ("colour calibration", as the paper does,
   because albedo and light intensity are only known up to a scale), plus the albedo UV texture
   against the ground-truth texture on the texels seen in the render.
2. The astronaut re-rendered from its UV textures with the fitted camera: (a) albedo x SH
   shading + specular of the texture-space normals (the relightable path) and (b) the photo's
   own colours baked to UV and drawn back (geometry + texture path only); PSNR / SSIM inside the
   face mask.

Run: ``.venv/bin/python benchmarks/avatar_quality.py [--texture-size 512]``; prints the tables,
writes ``benchmarks/results/avatar_quality.json``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from bench_common import write_result  # noqa: E402 - benchmarks/ is on sys.path when run as a script

import numpy as np

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
RESULTS = Path(__file__).resolve().parent / "results"


def render_ground_truth(rec, albedo_tex: np.ndarray, normal_tex_model: np.ndarray, sh: np.ndarray):
    """Render the fitted mesh of ``rec`` with the given UV textures under SH lighting.

    Returns sRGB image (H, W, 3) (photo background outside the mesh), and image-space ground truth:
    albedo (H, W, 3) linear, normals (H, W, 3) camera frame, mask (H, W) bool.
    """
    import cv2

    from pnrelight.avatar.color import linear_to_srgb
    from pnrelight.avatar.raster import interpolate
    from pnrelight.avatar.uv import rasterize_camera
    from pnrelight.envmap import render_sh

    h, w = rec.photo.shape[:2]
    fit, model = rec.fit, rec.model
    r = rasterize_camera(np.asarray(fit.vertices, np.float64), model.triangles, fit.focal_px, fit.principal_point, h, w)
    uv = interpolate(model.uvs, model.triangles, r)
    T = albedo_tex.shape[0]
    mx = (uv[..., 0] * T - 0.5).astype(np.float32)
    my = ((1.0 - uv[..., 1]) * T - 0.5).astype(np.float32)
    albedo = cv2.remap(albedo_tex.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    n_model = cv2.remap(normal_tex_model.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    n_cam = n_model @ np.asarray(fit.rotation, np.float64).T
    n_cam /= np.maximum(np.linalg.norm(n_cam, axis=-1, keepdims=True), 1e-12)
    shading = np.maximum(render_sh(n_cam, sh), 0.0)
    lin = albedo * shading
    image = np.where(r.mask[..., None], linear_to_srgb(lin), rec.photo)
    mask = r.mask & (n_cam[..., 2] > 0.05)
    return image.astype(np.float32), albedo, n_cam.astype(np.float32), mask


def angular_error_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    return np.degrees(np.arccos(np.clip((a * b).sum(-1), -1.0, 1.0)))


def normal_table_row(err: np.ndarray) -> dict:
    return {"mean_deg": float(err.mean()), "lt5_pct": float((err < 5).mean() * 100), "lt15_pct": float((err < 15).mean() * 100),
            "lt25_pct": float((err < 25).mean() * 100), "pixels": int(err.size)}


def albedo_table_row(est_lin: np.ndarray, gt_lin: np.ndarray, mask: np.ndarray, calibrate: bool = True) -> dict:
    from pnrelight.avatar.color import linear_to_srgb
    from pnrelight.metrics import psnr, ssim

    est = est_lin.astype(np.float64)
    gain = np.ones(3)
    if calibrate:  # per-channel least-squares gain (colour calibration)
        e, g = est[mask], gt_lin[mask].astype(np.float64)
        gain = (e * g).sum(0) / np.maximum((e * e).sum(0), 1e-12)
    a = linear_to_srgb(np.clip(est * gain, 0, 1))
    b = linear_to_srgb(gt_lin)
    a = np.where(mask[..., None], a, 0.0)
    b = np.where(mask[..., None], b, 0.0)
    rmse = float(np.sqrt(((a - b)[mask] ** 2).mean()))
    return {"ssim": ssim(a, b, mask), "psnr_db": psnr(a, b, mask), "rmse": rmse, "gain": gain.round(4).tolist()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texture-size", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS / "avatar_quality.json")
    args = ap.parse_args(argv)

    import cv2
    from skimage import data

    from pnrelight import progress
    from pnrelight.avatar.raster import interpolate, rasterize_uv
    from pnrelight.avatar.uv import bake_textures, rasterize_camera, texel_mirror_map
    from pnrelight.avatar.pipeline import reconstruct, rerender_photo
    from pnrelight.envmap import default_envmaps, envmap_to_sh, load_envmap, render_sh, sh_radiance_to_shading
    from pnrelight.metrics import psnr, ssim

    progress.set_enabled(False)
    t0 = time.perf_counter()
    photo = data.astronaut()
    rec = reconstruct(photo, texture_size=args.texture_size, seed=args.seed)

    # --- 2. astronaut re-rendered from its textures
    rr = rerender_photo(rec.model, rec.fit, rec.textures, rec.light, rec.photo.shape[:2])
    m = rr["mask"] & rec.face_mask
    h, w = rec.photo.shape[:2]
    r = rasterize_camera(np.asarray(rec.fit.vertices, np.float64), rec.model.triangles, rec.fit.focal_px, rec.fit.principal_point, h, w)
    uv = interpolate(rec.model.uvs, rec.model.triangles, r)
    T = args.texture_size
    uv_r = rasterize_uv(rec.model.uvs, rec.model.triangles, T)
    mirror = texel_mirror_map(rec.model.uvs, rec.model.triangles, rec.model.uv_mirror, uv_r, rec.model.vertices) if rec.mirror_fill else False
    colour_tex = bake_textures({"image": rec.photo}, rec.fit.vertices, rec.model.triangles, rec.model.uvs, rec.fit.focal_px,
                               rec.fit.principal_point, T, rotation=rec.fit.rotation, mirror=mirror, image_raster=r,
                               uv_raster=uv_r)["image"]
    direct = cv2.remap(colour_tex, (uv[..., 0] * T - 0.5).astype(np.float32),
                       ((1 - uv[..., 1]) * T - 0.5).astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    rerender = {
        "relightable_path": {"psnr_db": psnr(rr["image"], rec.photo, m), "ssim": ssim(rr["image"], rec.photo, m)},
        "colour_texture_path": {"psnr_db": psnr(direct, rec.photo, m), "ssim": ssim(direct, rec.photo, m)},
        "mask_pixels": int(m.sum()),
    }

    # --- 1. synthetic ground truth
    studio = [p for p in default_envmaps() if p.stem == "studio"] or default_envmaps()[:1]
    sh_gt = sh_radiance_to_shading(envmap_to_sh(load_envmap(studio[0])))
    probe = render_sh(rec.normals_image[rec.face_mask], sh_gt).mean(-1)
    sh_gt = sh_gt * (0.85 / max(float(np.percentile(probe, 90)), 1e-6))  # bright but unclipped
    gt_albedo_tex = np.clip(rec.textures["albedo"], 0.02, 0.9)
    gt_normal_tex = rec.textures["normal"]
    synth, gt_albedo, gt_normals, gt_mask = render_ground_truth(rec, gt_albedo_tex, gt_normal_tex, sh_gt)
    rec2 = reconstruct(synth, texture_size=args.texture_size, seed=args.seed)
    mask = gt_mask & rec2.face_mask
    normals = {
        "pipeline (SfS detail normals)": normal_table_row(angular_error_deg(rec2.intrinsics.normals[mask], gt_normals[mask])),
        "fitted mesh normals only": normal_table_row(angular_error_deg(rec2.normals_image[mask], gt_normals[mask])),
    }
    albedo = {
        "pipeline, colour-calibrated": albedo_table_row(rec2.intrinsics.albedo, gt_albedo, mask, calibrate=True),
        "pipeline, raw": albedo_table_row(rec2.intrinsics.albedo, gt_albedo, mask, calibrate=False),
    }
    seen = rec2.textures["confidence"] > 0.3
    uv_row = albedo_table_row(rec2.textures["albedo"], gt_albedo_tex, seen, calibrate=True)
    albedo["UV texture (seen texels), colour-calibrated"] = uv_row
    sh_err = float(np.linalg.norm(rec2.intrinsics.sh / np.linalg.norm(rec2.intrinsics.sh) - sh_gt / np.linalg.norm(sh_gt)))

    result = {
        "texture_size": args.texture_size, "seed": args.seed, "eval_pixels": int(mask.sum()),
        "synthetic": {"normals_table3": normals, "albedo_table2": albedo, "sh_relative_error": sh_err,
                      "fit_residual_px": float(rec2.fit.landmark_residual_px)},
        "astronaut_rerender": rerender,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print("Table 3 format - normal error on the synthetic render (inside the face mask)")
    print(f"{'method':<34}{'Mean':>9}{'< 5°':>9}{'< 15°':>9}{'< 25°':>9}")
    for k, v in normals.items():
        print(f"{k:<34}{v['mean_deg']:>8.3f}°{v['lt5_pct']:>8.2f}%{v['lt15_pct']:>8.2f}%{v['lt25_pct']:>8.2f}%")
    print("\nTable 2 format - albedo on the synthetic render (sRGB)")
    print(f"{'method':<46}{'SSIM':>8}{'PSNR':>9}{'RMSE':>8}")
    for k, v in albedo.items():
        print(f"{k:<46}{v['ssim']:>8.3f}{v['psnr_db']:>9.3f}{v['rmse']:>8.3f}")
    print(f"\nSH lighting relative error (unit-norm coefficients): {sh_err:.3f}")
    print("\nAstronaut re-rendered from its UV textures (inside the face mask)")
    print(f"{'path':<46}{'PSNR':>9}{'SSIM':>8}")
    for k in ("relightable_path", "colour_texture_path"):
        print(f"{k.replace('_', ' '):<46}{rerender[k]['psnr_db']:>9.3f}{rerender[k]['ssim']:>8.3f}")
    print()
    write_result(args.out, result, f" ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
