"""``pnrelight avatar``: a relightable face avatar (glb + textures + renders) from one photo."""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path


def register(sub) -> None:
    from pnrelight.avatar.landmarks import MIN_FACE_SIZE_PX

    p = sub.add_parser(
        "avatar",
        help="relightable face avatar from one photo (glb, PBR textures, relit turntable renders)",
        description="Build a relightable face avatar from one portrait photo: landmarks, face-model fit, "
        "SH lighting / albedo / detail normals / specular (PN-Relighting), UV textures, avatar.glb, "
        "renders and preview.png. Everything is written to a temporary folder and renamed at the end. "
        f"The face must be at least {MIN_FACE_SIZE_PX} px tall; with several faces the largest is used (see --face-index).",
    )
    p.add_argument("photo", type=Path, help="portrait photo (PNG/JPEG/TIFF, 8 or 16 bit, RGB/RGBA/grayscale; EXIF orientation honoured)")
    p.add_argument("-o", "--output", type=Path, help="output folder (default: <photo name>_avatar in the current folder)")
    p.add_argument("--face-index", type=int, metavar="N", help="which face when the photo has several (0 = largest; default: the largest)")
    p.add_argument("--face-model", metavar="ict|mediapipe|PATH",
                   help="face model: ict (default: the ICT-FaceKit head, MIT), mediapipe (face-only mesh), "
                        "or a FLAME model pickle (generic_model.pkl / FLAME 2020/2023, licensed by its owners)")
    p.add_argument("--texture-size", type=int, default=1024, metavar="N", help="UV texture size in texels, a power of two (default 1024)")
    p.add_argument("--envmap", type=Path, action="append", metavar="FILE", help="lat-long .exr/.hdr environment map for the relit renders (repeatable; default: three shipped studio lights)")
    p.add_argument("--turntable", type=int, default=0, metavar="N",
                   help="also write N turntable frames over 360 degrees (2..720) under the photo's lighting: "
                   "renders/turntable/frame_NNN.png and renders/turntable.gif (default 0: none)")
    p.add_argument("--seed", type=int, default=0, help="random seed (recorded in avatar.json)")
    p.set_defaults(handler=cmd_avatar)


def cmd_avatar(args: argparse.Namespace) -> int:
    from pnrelight.avatar.pipeline import build_avatar

    out = args.output if args.output is not None else Path.cwd() / f"{args.photo.stem}_avatar"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the run's warnings come back in the summary, printed below as one line each
        summary = build_avatar(args.photo, out, face_index=args.face_index, face_model_path=args.face_model,
                               texture_size=args.texture_size, seed=args.seed, envmaps=args.envmap,
                               turntable=args.turntable)
    t = summary["timings_s"]
    q = summary["quality"]
    print(f"avatar written to {out} ({summary['model']['name']}, {summary['textures']['size']}^2 textures, "
          f"landmark residual {summary['fit']['landmark_residual_px']:.2f} px, re-render {q['rerender_psnr_db']:.1f} dB, {t['total']:.1f} s)")
    for w in summary["warnings"]:
        sys.stderr.write(f"pnrelight: warning: {w}\n")
    return 0

