"""Seconds and peak memory of ``pnrelight relight`` on a 1080p portrait: with a new fit, and reusing an avatar.

The photo: skimage's astronaut scaled to 1080 x 1080 and widened to 1920 x 1080 (edge pixels
replicated), as in ``avatar_photos.py``. Each case runs ``portrait_relight.run_relight`` in a fresh
Python process (``--repeats`` times) and reports its wall time, the stages recorded in relight.json
and the process's peak resident memory (``ru_maxrss``, which includes the interpreter and the
imported libraries). Cases: one map with shadows (the default), one map without shadows, and both
again with ``--avatar`` (a folder built once by ``pnrelight avatar``, its time reported apart).

Run: ``.venv/bin/python benchmarks/relight_bench.py [--repeats 2]``; writes ``benchmarks/results/relight_bench.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import write_result  # noqa: E402 - benchmarks/ is on sys.path when run as a script

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / ".pyshim"))  # this checkout's code when run from a worktree
RESULTS = ROOT / "benchmarks" / "results"

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from pnrelight import progress
progress.set_enabled(False)
from pnrelight.avatar.portrait_relight import run_relight
args = json.loads(sys.argv[2])
t = time.perf_counter()
summary = run_relight([args["photo"]], args["out"], envs=[args["env"]], avatar=args.get("avatar"), shadows=args["shadows"])
wall = time.perf_counter() - t
print("RESULT" + json.dumps({"seconds": wall, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                             "photo": summary["photos"][0]}))
"""


def photo_1080p(path: Path) -> Path:
    import cv2
    from skimage import data

    from pnrelight.imageio import write_image

    up = cv2.resize(data.astronaut(), (1080, 1080), interpolation=cv2.INTER_CUBIC)
    return write_image(path, cv2.copyMakeBorder(up, 0, 0, 420, 420, cv2.BORDER_REPLICATE))


def run_case(photo: Path, out: Path, env: Path, shadows: bool, avatar: Path | None) -> dict:
    args = {"photo": str(photo), "out": str(out), "env": str(env), "shadows": shadows, "avatar": None if avatar is None else str(avatar)}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(ROOT / ".pyshim"), json.dumps(args)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1][len("RESULT"):])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--env", type=Path, default=None, help="environment map (default: the shipped sunset)")
    ap.add_argument("--out", type=Path, default=RESULTS / "relight_bench.json")
    args = ap.parse_args(argv)

    from pnrelight.envmap import ENVMAP_DIR

    env = args.env or ENVMAP_DIR / "sunset.exr"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photo = photo_1080p(tmp / "astronaut_1080p.png")
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pnrelight_cli", "--no-progress", "avatar", str(photo), "-o", str(tmp / "avatar"),
                               "--texture-size", "1024"], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT / ".pyshim")})
        avatar_s = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])
        for name, shadows, avatar in (("new fit, shadows", True, None), ("new fit, no shadows", False, None),
                                      ("--avatar, shadows", True, tmp / "avatar"), ("--avatar, no shadows", False, tmp / "avatar")):
            runs = [run_case(photo, tmp / "out.png", env, shadows, avatar) for _ in range(args.repeats)]
            best = min(runs, key=lambda r: r["seconds"])
            row = {"case": name, "seconds": [round(r["seconds"], 2) for r in runs], "best_seconds": round(best["seconds"], 2),
                   "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1), "stages_s": best["photo"]["seconds"],
                   "relight_timings_s": best["photo"]["relight"][0]["timings_s"]}
            rows.append(row)
            print(f"{name}: {row['seconds']} s (best {row['best_seconds']} s), peak RSS {row['peak_rss_mb']} MB; "
                  f"stages {row['stages_s']} {row['relight_timings_s']}", flush=True)
    print(f"\n(building the avatar folder once: {avatar_s:.1f} s)\n")
    print("| case | seconds per 1080p photo (best of %d) | peak RSS (MB) |" % args.repeats)
    print("|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['best_seconds']:.1f} | {r['peak_rss_mb']:.0f} |")
    result = {"photo": "astronaut 1080x1080 widened to 1920x1080", "env": str(env), "avatar_build_seconds": round(avatar_s, 1),
              "cases": rows, "machine": {"python": platform.python_version(), "cpus": os.cpu_count()}}
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
