"""RTI at real capture sizes (issue #12 §3): seconds and peak memory per stage and size.

Generates a procedural 8-bit, 50-light MLIC (JPEG quality 95, ``pnrelight.rti.synthetic.relief_rows``
rendered Lambert + Blinn-Phong, row band by row band) plus 5 held-out lights at each size
(1, 4, 12, 24 MP, 3:2; 24 MP is 6000 x 4000), then runs each stage in a fresh subprocess and
reads that process's peak resident memory (``wait4`` ru_maxrss), so every number is one stage:

* ``load``     load_mlic (uint8 collection)
* ``fit``      load + HSH-9 rgb fit_linear (time: the fit; peak: with the collection held)
* ``export``   save_model + preview of that fit (as ``rti fit`` writes it), from its coefficients
* ``relight``  load_model + relight one light + write the PNG
* ``eval``     load_model + evaluate on the 5 held-out lights (read one at a time)
* ``cli-fit``  ``pnrelight rti fit --basis hsh`` end to end (load, fit, free, export)
* ``teacher``  ``pnrelight rti fit --basis neural`` (train + export), ``student``: ``rti distill``

Targets for 24 MP, 50 lights, 8 bit: HSH-9 fit <= 2 min; peak <= 1.5 x the collection + 1 GB.
Run: ``.venv/bin/python benchmarks/rti_scale.py [--sizes 1,4,24] [--stages load,fit,...]``.
Prints a table and writes ``benchmarks/results/rti_scale.json``. Generated data stay in
``--work`` (default a folder under the system temp dir) and are reused by later runs.
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

RESULTS = Path(__file__).resolve().parent / "results"
LINEAR_STAGES = ["load", "fit", "export", "relight", "eval", "cli-fit"]
NEURAL_STAGES = ["teacher", "student"]
RELIGHT_LIGHT = (0.35, -0.4)


def size_of(megapixels: float) -> tuple[int, int]:
    """(width, height) of a 3:2 image of about ``megapixels`` (24 -> 6000 x 4000)."""
    width = int(round((megapixels * 1e6 * 1.5) ** 0.5 / 8)) * 8
    return width, width * 2 // 3


def write_collection(folder: Path, width: int, height: int, lights: int, test_lights: int, seed: int = 0) -> None:
    """Train MLIC in ``folder``, held-out one in ``folder/test``; skipped when already complete."""
    from pnrelight.formats.lp import write_lp
    from pnrelight.imageio import to_uint8, write_image
    from pnrelight.lights import hemisphere_directions
    from pnrelight.progress import progress
    from pnrelight.rti.synthetic import relief_rows, render

    if (folder / "dirs.lp").is_file() and (folder / "test" / "dirs.lp").is_file():
        return
    band = max(1, (1 << 20) // width)
    normals = np.empty((height, width, 3), np.float32)
    albedo = np.empty((height, width, 3), np.float32)
    for y in range(0, height, band):
        normals[y:y + band], albedo[y:y + band] = relief_rows(width, height, y, min(height, y + band))
    image = np.empty((height, width, 3), np.uint8)
    for sub, count, s in [(folder, lights, seed), (folder / "test", test_lights, seed + 1)]:
        sub.mkdir(parents=True, exist_ok=True)
        dirs = hemisphere_directions(count, min_elevation_deg=15.0, seed=s)
        names = [f"light{i:02d}.jpg" for i in range(count)]
        for name, d in progress(list(zip(names, dirs)), desc=f"rendering {width}x{height}"):
            for y in range(0, height, band):
                image[y:y + band] = to_uint8(render(normals[y:y + band], albedo[y:y + band], d[None])[0])
            write_image(sub / name, image, quality=95)
        write_lp(sub / "dirs.lp.tmp", names, dirs)
        os.replace(sub / "dirs.lp.tmp", sub / "dirs.lp")  # the .lp last: its presence marks a complete folder


# ----------------------------------------------------------------------------- one stage (worker process)

def run_stage(stage: str, data: Path, work: Path, epochs: int | None = None) -> dict:
    """Run one stage in this process; returns what it measured (seconds of the stage's own work)."""
    from pnrelight.formats.mlic import load_mlic, open_mlic
    from pnrelight.formats.rti_folder import load_model
    from pnrelight.rti.model import RTIModel, relight

    coeffs_file, model_dir = work / "hsh9_coefficients.npy", work / "hsh9"
    out: dict = {}
    t0 = time.perf_counter()
    if stage == "load":
        mlic = load_mlic(data)
        out["collection_gb"] = mlic.images.nbytes / 1e9
    elif stage == "fit":
        from pnrelight.rti.fit import fit_linear

        mlic = load_mlic(data)
        out["load_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        model = fit_linear(mlic, "hsh", 9)
        seconds = time.perf_counter() - t0
        out["dtype"] = str(model.coefficients.dtype)
        np.save(coeffs_file, model.coefficients)  # for the export stage (not timed)
        return {**out, "seconds": seconds}
    elif stage == "export":
        from pnrelight_cli.rti import _save_with_preview

        model = RTIModel(kind="hsh", colorspace="rgb", coefficients=np.load(coeffs_file), terms=9,
                         meta={"fit": "least squares", "source": str(data)})
        t0 = time.perf_counter()
        _save_with_preview(model, model_dir, 98)
        out["folder_gb"] = sum(f.stat().st_size for f in model_dir.iterdir()) / 1e9
    elif stage == "relight":
        from pnrelight.imageio import write_image
        from pnrelight.lights import direction_from_xy

        model = load_model(model_dir)
        out["load_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        write_image(work / "relit.png", relight(model, direction_from_xy(*RELIGHT_LIGHT)))
    elif stage == "eval":
        from pnrelight.rti.evaluate import evaluate

        model = load_model(model_dir)
        out["load_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = evaluate(model, open_mlic(data / "test"))
        out["psnr"], out["ssim"] = report["mean"]["psnr"], report["mean"]["ssim"]
    elif stage in ("cli-fit", "teacher", "student"):
        from pnrelight_cli.main import main

        target = {"cli-fit": work / "cli_hsh9", "teacher": work / "teacher", "student": work / "student"}[stage]
        if stage == "student":
            argv = ["rti", "distill", str(work / "teacher"), str(data), "-o", str(target)]
        else:
            argv = ["rti", "fit", str(data), "--basis", "hsh" if stage == "cli-fit" else "neural", "-o", str(target)]
        if epochs and stage != "cli-fit":
            argv += ["--epochs", str(epochs)]
        rc = main(["--no-progress", *argv])
        if rc:
            raise SystemExit(f"{stage}: pnrelight exited with status {rc}")
        info = json.loads((target / "info.json").read_text())
        out["fit_seconds"] = info.get("pnrelight", {}).get("fit_seconds")
    else:
        raise SystemExit(f"unknown stage {stage!r} (choose from {', '.join(LINEAR_STAGES + NEURAL_STAGES)})")
    return {**out, "seconds": time.perf_counter() - t0}


def measure(stage: str, data: Path, work: Path, epochs: int | None = None) -> dict:
    """Run ``stage`` in a fresh interpreter; add its wall time and peak resident memory (GB)."""
    result_file = work / f"{stage}.result.json"
    result_file.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", stage, "--data", str(data),
           "--work", str(work), "--result", str(result_file)] + (["--epochs", str(epochs)] if epochs else [])
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    row = {"stage": stage, "wall_seconds": time.perf_counter() - t0, "peak_gb": usage.ru_maxrss * 1024 / 1e9,
           "ok": proc.returncode == 0}
    if row["ok"] and result_file.is_file():
        row.update(json.loads(result_file.read_text()))
    return row


# ----------------------------------------------------------------------------- driver

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,4,24", help="megapixels, comma separated (12 optional; 24 = 6000x4000)")
    ap.add_argument("--stages", default=",".join(LINEAR_STAGES),
                    help=f"comma separated, from {','.join(LINEAR_STAGES + NEURAL_STAGES)} (default: the linear ones)")
    ap.add_argument("--lights", type=int, default=50)
    ap.add_argument("--test-lights", type=int, default=5)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "pnrelight_rti_scale")
    ap.add_argument("--epochs", type=int, help="teacher/student epochs (default: the trainer's; small for a smoke run)")
    ap.add_argument("--clean", action="store_true", help="delete each size's generated data after its stages")
    ap.add_argument("--out", type=Path, default=RESULTS / "rti_scale.json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        from pnrelight import progress

        progress.set_enabled(False)
        result = run_stage(args.worker, args.data, args.work, args.epochs)
        args.result.write_text(json.dumps(result))
        return 0

    stages = [s for s in args.stages.split(",") if s]
    unknown = set(stages) - set(LINEAR_STAGES + NEURAL_STAGES)
    if unknown:
        ap.error(f"unknown stages {sorted(unknown)}")
    sizes = [float(s) for s in args.sizes.split(",") if s]
    runs = []
    print(f"{args.lights} lights + {args.test_lights} held out, 8-bit JPEG q95; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} (a shared machine: timings may be inflated)", flush=True)
    for mp in sizes:
        width, height = size_of(mp)
        folder = args.work / f"{width}x{height}"
        data = folder / "mlic"
        t0 = time.perf_counter()
        write_collection(data, width, height, args.lights, args.test_lights)
        collection_gb = args.lights * width * height * 3 / 1e9
        run = {"megapixels": width * height / 1e6, "width": width, "height": height, "lights": args.lights,
               "collection_gb": collection_gb, "target_peak_gb": 1.5 * collection_gb + 1.0,
               "generate_seconds": time.perf_counter() - t0, "stages": []}
        print(f"\n{width}x{height} ({run['megapixels']:.1f} MP): collection {collection_gb:.2f} GB, "
              f"peak target {run['target_peak_gb']:.2f} GB", flush=True)
        for stage in stages:
            row = measure(stage, data, folder, args.epochs)
            run["stages"].append(row)
            extra = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()
                     if k not in ("stage", "wall_seconds", "peak_gb", "ok", "seconds")}
            print(f"  {stage:<8} {row.get('seconds', float('nan')):8.1f} s  peak {row['peak_gb']:6.2f} GB  "
                  f"(process {row['wall_seconds']:.1f} s) {'' if row['ok'] else 'FAILED '}{extra}", flush=True)
        runs.append(run)
        if args.clean:
            shutil.rmtree(folder, ignore_errors=True)
        _write(args.out, runs)

    print("\nseconds / peak GB per stage")
    print(f"{'MP':>5} " + " ".join(f"{s:>15}" for s in stages))
    for run in runs:
        cells = {r["stage"]: f"{r.get('seconds', float('nan')):6.1f} / {r['peak_gb']:5.2f}" for r in run["stages"]}
        print(f"{run['megapixels']:5.1f} " + " ".join(f"{cells.get(s, '-'):>15}" for s in stages))
    print(f"wrote {args.out}")
    return 0


def _write(path: Path, runs: list) -> None:
    """Write the runs, keeping the earlier file's sizes and stages that this run did not measure."""
    import platform

    merged = []
    if path.is_file():
        merged = json.loads(path.read_text()).get("runs", [])
    for run in runs:
        old = next((r for r in merged if (r["width"], r["height"]) == (run["width"], run["height"])), None)
        if old is None:
            merged.append(run)
            continue
        new_stages = {s["stage"] for s in run["stages"]}
        run = {**run, "stages": [s for s in old["stages"] if s["stage"] not in new_stages] + run["stages"]}
        merged[merged.index(old)] = run
    merged.sort(key=lambda r: r["megapixels"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                            "load_average": os.getloadavg()[0]}, "runs": merged}, indent=1))


if __name__ == "__main__":
    raise SystemExit(main())
