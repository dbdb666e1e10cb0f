"""Blender add-on: node count, import time and render agreement per model kind, on the full Dome (320 x 320).

    .venv/bin/python benchmarks/blender_addon_bench.py [--dome ../shared/data/rti/dome] [--no-screenshot]

Builds the extension, fits PTM / LPTM / HSH-4/9/16 and trains a small teacher and student on the
Dome training set, installs the extension in a fresh Blender user folder, imports every model,
renders it with Cycles (CPU, 1 sample, Raw) under three suns and compares with
``pnrelight.rti.model.relight``. Prints a table, writes benchmarks/results/blender_addon.json
and (unless --no-screenshot) docs/images/blender_rti_plane.png: the HSH-9 plane under a raking
light, seen in perspective (Standard view transform, sRGB to Linear on).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SUNS = {"high": (75, 30), "oblique": (40, 140), "grazing": (10, 250)}


def _dir(elevation_deg, azimuth_deg):
    e, a = np.radians(elevation_deg), np.radians(azimuth_deg)
    return [float(np.cos(e) * np.cos(a)), float(np.cos(e) * np.sin(a)), float(np.sin(e))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dome", type=Path, default=REPO.parent / "shared" / "data" / "rti" / "dome")
    parser.add_argument("--epochs", type=int, default=4, help="teacher/student epochs (node count does not depend on it)")
    parser.add_argument("--no-screenshot", action="store_true")
    args = parser.parse_args(argv)
    if not (args.dome / "train" / "dirs.lp").is_file():
        print(f"Dome data not found in {args.dome} (pass --dome)")
        return 2

    from pnrelight.formats.mlic import load_mlic
    from pnrelight.formats.rti_folder import load_model, save_model
    from pnrelight.rti.fit import fit_linear
    from pnrelight.rti.model import relight
    from pnrelight.rti.neural import distill_student, train_teacher

    root = Path(tempfile.mkdtemp(prefix="pnrelight_blender_bench_"))
    try:
        build = subprocess.run([sys.executable, str(REPO / "blender_addon" / "build.py"), "--output-dir", str(root)],
                               capture_output=True, text=True)
        if build.returncode:
            print(build.stdout, build.stderr)
            return 1
        zip_path = next(root.glob("pnrelight-*.zip"))
        mlic = load_mlic(args.dome / "train")
        t0 = time.perf_counter()
        teacher, _ = train_teacher(mlic, epochs=args.epochs, max_pixels=20000, seed=0)
        student, _ = distill_student(teacher, mlic, epochs=args.epochs, max_pixels=20000, seed=0)
        print(f"trained teacher + student in {time.perf_counter() - t0:.1f} s")
        models = {"PTM RGB": fit_linear(mlic, "ptm"), "PTM LRGB": fit_linear(mlic, "ptm", colorspace="lrgb"),
                  "HSH-4": fit_linear(mlic, "hsh", 4), "HSH-9": fit_linear(mlic, "hsh", 9),
                  "HSH-16": fit_linear(mlic, "hsh", 16), "teacher 50x50": teacher, "student 20x20": student}
        folders = {k: str(save_model(m, root / "models" / k.replace(" ", "_"))) for k, m in models.items()}
        h, w = mlic.shape
        steps = [{"op": "import", "model": k} for k in models]
        for name, (e, a) in SUNS.items():
            steps.append({"op": "sun", "dir": _dir(e, a)})
            steps += [{"op": "render", "model": k, "name": f"{k.replace(' ', '_')}_{name}"} for k in models]
        if not args.no_screenshot:
            steps += [{"op": "sun", "dir": _dir(18, 200)}, {"op": "linearize", "model": "HSH-9", "on": True},
                      {"op": "camera", "location": [0.0, -1.45, 1.05], "look_at": [0.0, 0.04, 0.0], "size": [800, 560],
                       "lens": 40.0, "samples": 16, "view_transform": "Standard"},
                      {"op": "render_png", "models": ["HSH-9"], "name": "screenshot.png"}]
        job = {"zip": str(zip_path), "out": str(root / "out"), "size": [w, h], "models": folders, "steps": steps}
        (root / "job.json").write_text(json.dumps(job))
        env = {**os.environ, "BLENDER_USER_RESOURCES": str(root / "user")}
        run = subprocess.run([sys.executable, str(REPO / "tests" / "blender_worker.py"), str(root / "job.json")],
                             capture_output=True, text=True, env=env)
        if run.returncode:
            print(run.stdout[-4000:], run.stderr[-4000:])
            return 1
        res = json.loads((root / "out" / "results.json").read_text())
        rows = []
        for key, model in models.items():
            imp = res["imports"][key]
            tag = key.replace(" ", "_")
            psnrs, seconds = {}, []
            exact = load_model(folders[key])
            for name, (e, a) in SUNS.items():
                render = np.load(root / "out" / f"{tag}_{name}.npy")
                mse = float(np.mean((render.astype(np.float64) - relight(exact, np.array(_dir(e, a)))) ** 2))
                psnrs[name] = round(10 * np.log10(1 / max(mse, 1e-20)), 1)
                seconds.append(res["renders"][f"{tag}_{name}"]["seconds"])
            rows.append({"model": key, "group": imp["group"], "nodes": imp["node_count"],
                         "import_s": round(imp["seconds"], 3), "render_s": round(float(np.median(seconds)), 3),
                         "psnr_db": psnrs})
        print(f"\nBlender {res.get('blender', '')} extension on Dome {w}x{h}, Cycles CPU 1 spp, Raw:")
        print(f"{'model':15s} {'nodes':>6s} {'import s':>9s} {'render s':>9s}  PSNR vs relight (high/oblique/grazing)  group")
        for r in rows:
            p = r["psnr_db"]
            print(f"{r['model']:15s} {r['nodes']:6d} {r['import_s']:9.2f} {r['render_s']:9.2f}  "
                  f"{p['high']:6.1f} {p['oblique']:6.1f} {p['grazing']:6.1f} dB{'':17s}{r['group']}")
        out = REPO / "benchmarks" / "results" / "blender_addon.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"size": [w, h], "epochs": args.epochs, "rows": rows}, indent=1))
        print(f"wrote {out}")
        if not args.no_screenshot:
            target = REPO / "docs" / "images" / "blender_rti_plane.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / "out" / "screenshot.png", target)
            print(f"wrote {target}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
