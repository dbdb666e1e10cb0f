"""Avatar fit and texture quality on real photos, for each face model, plus the turntable contact sheet.

Photos: skimage's astronaut (the only real portrait the registries ship) and variants a real user
produces: mirrored, rotated by 12 degrees, downscaled to 80 %, and placed in a 1920 x 1080 frame. For
each photo and each face model (``ict``, the default head, and ``mediapipe``, the face-only mesh) the
pipeline's ``reconstruct`` runs and the table reports the landmark residual (px) and the photo
re-rendered from the UV textures (albedo x SH shading + specular): PSNR / SSIM inside the face oval
(pipeline face mask & the landmarks' convex hull, the same region for both models).

``--turntable`` also builds the astronaut's avatar with the default model and writes
``docs/images/avatar_turntable.png`` (front, +-45, +-90 degrees and back).

Run: ``.venv/bin/python benchmarks/avatar_photos.py [--turntable]``; writes ``benchmarks/results/avatar_photos.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def photo_variants() -> dict[str, np.ndarray]:
    """name -> (H, W, 3) float sRGB photo."""
    import cv2
    from skimage import data

    a = data.astronaut().astype(np.float32) / 255.0
    h, w = a.shape[:2]
    rot = cv2.warpAffine(a, cv2.getRotationMatrix2D((w / 2, h / 2), 12.0, 1.0), (w, h), borderMode=cv2.BORDER_REFLECT)
    small = cv2.resize(a, (int(w * 0.8), int(h * 0.8)), interpolation=cv2.INTER_AREA)
    up = cv2.resize(a, (1080, 1080), interpolation=cv2.INTER_CUBIC)
    wide = cv2.copyMakeBorder(up, 0, 0, 420, 420, cv2.BORDER_REPLICATE)
    return {"astronaut": a, "mirrored": a[:, ::-1].copy(), "rotated 12 deg": rot, "80 % size": small, "1920x1080": wide}


def measure(photo: np.ndarray, model: str) -> dict:
    from pnrelight.avatar.pipeline import landmark_hull_mask, reconstruct, rerender_photo
    from pnrelight.metrics import psnr, ssim

    t = time.perf_counter()
    rec = reconstruct(photo, face_model_path=model, texture_size=1024)
    rr = rerender_photo(rec.model, rec.fit, rec.textures, rec.light, rec.photo.shape[:2])
    m = rr["mask"] & rec.face_mask & landmark_hull_mask(rec.face.points, rec.photo.shape[:2])
    return {"landmark_residual_px": round(float(rec.fit.landmark_residual_px), 3),
            "rerender_psnr_db": round(psnr(rr["image"], rec.photo, m), 3), "rerender_ssim": round(ssim(rr["image"], rec.photo, m), 4),
            "mask_pixels": int(m.sum()), "seconds": round(time.perf_counter() - t, 2)}


def turntable_sheet(out_png: Path) -> Path:
    from skimage import data

    from pnrelight.avatar.pipeline import build_avatar
    from pnrelight.avatar.preview import contact_sheet
    from pnrelight.imageio import read_image, write_image

    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "astronaut.png"
        write_image(photo, data.astronaut())
        build_avatar(photo, Path(tmp) / "avatar", progress=False)
        tiles = []
        for yaw in (0, -45, 45, -90, 90, 180):
            img = read_image(Path(tmp) / "avatar" / "renders" / f"turntable_yaw{yaw:+04d}.png")
            tiles.append((f"yaw {yaw:+d} deg" if yaw != 180 else "back", img[..., :3]))
        relit = sorted((Path(tmp) / "avatar" / "renders").glob("relit_*.png"))
        tiles += [(f"relit: {p.stem[6:]}", read_image(p)[..., :3]) for p in relit]
        write_image(out_png, contact_sheet(tiles, columns=len(tiles) // 2 + len(tiles) % 2, tile=256))
    return out_png


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["ict", "mediapipe"])
    ap.add_argument("--turntable", action="store_true", help="also write docs/images/avatar_turntable.png")
    ap.add_argument("--out", type=Path, default=RESULTS / "avatar_photos.json")
    args = ap.parse_args(argv)
    rows = {}
    for name, photo in photo_variants().items():
        for model in args.models:
            rows[f"{name} | {model}"] = r = measure(photo, model)
            print(f"{name:16s} {model:10s} residual {r['landmark_residual_px']:6.2f} px  re-render "
                  f"{r['rerender_psnr_db']:6.2f} dB / SSIM {r['rerender_ssim']:.4f}  ({r['mask_pixels']} px, {r['seconds']:.1f} s)", flush=True)
    summary = {}
    for model in args.models:
        sel = [r for k, r in rows.items() if k.endswith(f"| {model}")]
        summary[model] = {k: {"mean": round(float(np.mean([r[k] for r in sel])), 3),
                              "worst": round(float(max(r[k] for r in sel) if k == "landmark_residual_px" else min(r[k] for r in sel)), 3)}
                          for k in ("landmark_residual_px", "rerender_psnr_db", "rerender_ssim")}
        print(f"{model:10s} mean / worst: " + ", ".join(f"{k} {v['mean']} / {v['worst']}" for k, v in summary[model].items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "summary": summary}, indent=2) + "\n")
    print(f"wrote {args.out}")
    if args.turntable:
        print(f"wrote {turntable_sheet(ROOT / 'docs' / 'images' / 'avatar_turntable.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
