"""Real photos relit: skimage's astronaut and the variants of ``avatar_photos.py``, three maps x two rotations.

For each photo (astronaut, mirrored, rotated 12 degrees, 80 % size, in a 1920 x 1080 frame) the
head is fitted once and the photo relit under the shipped studio, sunset and forest maps, each at
two rotations (0 and 120 degrees), background replaced by the map seen from the camera. Measured on
every relit image: the landmarks re-detected on it against those of the photo (mean / median /
95th percentile shift in px: the face keeps its identity and place) and the seam check of
``tests/test_portrait_relight.py`` (gradient magnitude on the head mask's border relative to the
photo's, over the same ratio on the whole person: 1 = no sharper than elsewhere).

Run: ``.venv/bin/python benchmarks/relight_photos.py``; writes ``benchmarks/results/relight_photos.json`` and the
contact sheet ``docs/images/relight_photos.jpg`` (one row per photo).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / ".pyshim"))  # this checkout's code when run from a worktree
sys.path.insert(1, str(ROOT / "tests"))
sys.path.insert(2, str(HERE))
RESULTS = ROOT / "benchmarks" / "results"
MAPS = ("studio", "sunset", "forest")
ROTATIONS = (0.0, 120.0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=RESULTS / "relight_photos.json")
    ap.add_argument("--sheet", type=Path, default=ROOT / "docs" / "images" / "relight_photos.jpg")
    ap.add_argument("--photos", nargs="*", default=None, help="subset of the variant names")
    args = ap.parse_args(argv)

    from avatar_photos import photo_variants
    from bench_common import write_result
    from test_portrait_relight import landmark_groups, seam_ratio

    from pnrelight import progress
    from pnrelight.avatar import portrait_relight as pr
    from pnrelight.avatar.landmarks import detect_faces
    from pnrelight.avatar.preview import contact_sheet
    from pnrelight.envmap import ENVMAP_DIR, load_envmap
    from pnrelight.imageio import write_image

    progress.set_enabled(False)
    envs = {name: load_envmap(ENVMAP_DIR / f"{name}.exr") for name in MAPS}
    rows, tiles = [], []
    for name, photo in photo_variants().items():
        if args.photos and name not in args.photos:
            continue
        t0 = time.perf_counter()
        head = pr.fit_photo_head(photo, texture_size=1024)
        fit_s = time.perf_counter() - t0
        before = detect_faces(photo)[0].points[:, :2]
        groups = landmark_groups(len(before))
        tiles.append((name, photo))
        row = {"photo": name, "size": [int(photo.shape[1]), int(photo.shape[0])], "fit_seconds": round(fit_s, 2), "relit": []}
        prepared = pr.prepare_relight(head)
        for env_name in MAPS:
            for rot in ROTATIONS:
                t0 = time.perf_counter()
                r = pr.relight_photo(head, pr.environment_lights(envs[env_name], rot), env=pr.rotated_envmap(envs[env_name], rot),
                                     prepared=prepared)
                secs = time.perf_counter() - t0
                faces = detect_faces(r["srgb"])
                shift = np.linalg.norm(faces[0].points[:, :2] - before, axis=1) if faces else np.full(len(before), np.nan)
                row["relit"].append({"map": env_name, "rotate_deg": rot, "seconds": round(secs, 2),
                                     "landmark_shift_px": {"mean": round(float(shift.mean()), 3), "median": round(float(np.median(shift)), 3),
                                                           "p95": round(float(np.percentile(shift, 95)), 3),
                                                           **{g: round(float(shift[i].mean()), 3) for g, i in groups.items()}},
                                     "seam_ratio": round(seam_ratio(photo, r["srgb"], r["head_mask"], head.person), 3),
                                     "specular_level": r["old_light"].get("specular_level")})
                tiles.append((f"{env_name} {rot:+.0f}°", r["srgb"]))
        rows.append(row)
        print(f"{name}: fit {fit_s:.1f} s; " + "; ".join(
            f"{x['map']} {x['rotate_deg']:+.0f}: shift {x['landmark_shift_px']['mean']:.2f} px (contours "
            f"{x['landmark_shift_px']['contours']:.2f}), seam {x['seam_ratio']:.2f}" for x in row["relit"]),
            flush=True)
    shifts = [x["landmark_shift_px"]["mean"] for r in rows for x in r["relit"]]
    by_group = {g: [x["landmark_shift_px"][g] for r in rows for x in r["relit"]] for g in ("contours", "oval", "surface")}
    seams = [x["seam_ratio"] for r in rows for x in r["relit"]]
    summary = {"landmark_shift_mean_px": {"mean": round(float(np.mean(shifts)), 3), "worst": round(float(np.max(shifts)), 3)},
               "landmark_shift_by_group_px": {g: {"mean": round(float(np.mean(v)), 3), "worst": round(float(np.max(v)), 3)}
                                              for g, v in by_group.items()},
               "seam_ratio": {"mean": round(float(np.mean(seams)), 3), "worst": round(float(np.max(seams)), 3)}}
    print(json.dumps(summary))
    write_result(args.out, {"photos": rows, "summary": summary, "maps": list(MAPS), "rotations_deg": list(ROTATIONS),
                            "cpus": os.cpu_count()})
    if str(args.sheet) not in ("", "."):
        args.sheet.parent.mkdir(parents=True, exist_ok=True)
        write_image(args.sheet, contact_sheet(tiles, columns=1 + len(MAPS) * len(ROTATIONS), tile=220))
        print(f"wrote {args.sheet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
