"""``pnrelight relight``: the portrait photo itself relit under a new environment map or light, with self-shadows."""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "relight",
        help="relight a portrait photo under an HDR environment map or a light (cast shadows of the fitted head)",
        description="Relight portrait photos: the full head is fitted (or loaded with --avatar), the photo's own light is "
        "estimated with the head's shadows and divided out, and the person is lit by the new environment (cast shadows "
        "and occlusion of the head, GGX highlights; hair, neck and clothes by ratio relighting on an inflated surface). "
        "Lights and maps are in the photo's camera frame: x right, y up, z towards the camera. The face keeps the photo's "
        "mean brightness (shift it with --exposure). Every input is checked and every photo relit before anything is written.",
    )
    p.add_argument("photos", type=Path, nargs="+", metavar="PHOTO", help="portrait photo(s); several are processed in one batch")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--env", type=Path, metavar="MAP", help="lat-long HDR environment map (.exr/.hdr, 2:1), or a shipped map by name (studio, sunset, forest, ...)")
    src.add_argument("--envs", type=Path, nargs="+", metavar="MAP", help="several maps: a contact sheet (photo + one relit tile per map)")
    src.add_argument("--light", type=float, nargs=3, metavar=("LX", "LY", "LZ"), help="one hard directional light from this direction")
    p.add_argument("--light-color", type=float, nargs=3, default=(1.0, 1.0, 1.0), metavar=("R", "G", "B"), help="colour of --light (default white)")
    p.add_argument("--rotate", type=float, default=0.0, metavar="DEG", help="turn the environment map about the vertical (degrees)")
    p.add_argument("--exposure", type=float, default=0.0, metavar="EV", help="brightness in stops on top of the photo-matched exposure")
    p.add_argument("--avatar", type=Path, metavar="DIR", help="reuse a folder made by `pnrelight avatar` from this photo (no refit)")
    p.add_argument("--no-shadows", action="store_true", help="no shadow rays (faster; the photo's shadows stay in the albedo)")
    p.add_argument("--keep-background", action="store_true", help="keep the photo's background (default: the environment seen from the camera)")
    p.add_argument("--exr", action="store_true", help="also write the linear result as OpenEXR")
    p.add_argument("-o", "--output", type=Path, required=True, help="OUT.png for one photo, a folder for several")
    p.add_argument("--seed", type=int, default=0, help="random seed of the fit (recorded in the json)")
    p.set_defaults(handler=cmd_relight)


def cmd_relight(args: argparse.Namespace) -> int:
    from pnrelight.avatar.portrait_relight import run_relight

    envs = [args.env] if args.env is not None else args.envs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = run_relight(args.photos, args.output, envs=envs, light=args.light, light_colour=args.light_color,
                              rotate_deg=args.rotate, exposure_ev=args.exposure, avatar=args.avatar, shadows=not args.no_shadows,
                              keep_background=args.keep_background, exr=args.exr, seed=args.seed)
    for entry in summary["photos"]:
        print(f"relit {entry['photo']} -> {', '.join(entry['outputs'])} ({sum(entry['seconds'].values()):.1f} s)")
    print(f"settings and timings in {summary['json']}")
    shown = set()
    for w in caught:
        msg = str(w.message)
        if issubclass(w.category, UserWarning) and msg not in shown:
            shown.add(msg)
            sys.stderr.write(f"pnrelight: warning: {msg}\n")
    return 0
