"""Scale-out of ``pnrelight olat``: throughput vs --workers, Ray's overhead, resume cost, dataset size.

Renderer: the real one (``pnrelight.lightstage.render``) when this checkout has it, else the analytic
stand-in of tests/lightstage_standin.py (a Lambertian sphere: its frames cost little, so the numbers
are then the pipeline's own cost -- half-float EXR writes, checksums, manifest rows, env composition --
the floor under any renderer).

Runs (each on a fresh dataset, synthetic subjects, 331 lights, 1 view, 8 shipped env maps):

* ``--workers 1`` and ``--workers 2`` (spawn pool) and ``--ray`` (local runtime, 2 CPUs): wall time,
  OLAT frames/s and all frames/s (OLAT + 4 G-buffer passes + 8 env images per camera);
* Ray's fixed cost: ``ray.init()`` + ``ray.shutdown()`` of a local runtime, alone;
* a rerun of the finished workers-1 dataset (everything skipped: manifest read + sha256 of every frame);
* one subject at 512^2: seconds per OLAT frame split by kind (manifest ``seconds``) and bytes per subject.

Run: ``.venv/bin/python benchmarks/olat_scale_bench.py [--quick]`` (quick: 2 subjects at 128^2).
Prints a table and writes ``benchmarks/results/olat_scale_bench.json``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parent / ".pyshim"))  # this checkout's code when run from a worktree
sys.path.insert(1, str(HERE.parent / "tests"))  # the stand-in renderer


def renderer_spec() -> str:
    if importlib.util.find_spec("pnrelight.lightstage.render") is not None:
        return "pnrelight"
    return "lightstage_standin:StandInRenderer"


def run(root: Path, renderer: str, *, subjects: int, size: int, **kw) -> dict:
    from pnrelight.lightstage.olat import build_dataset

    t0 = time.perf_counter()
    s = build_dataset(root, subjects=subjects, lights="331", views=1, envs=8, size=size, renderer=renderer,
                      show_progress=False, preview=False, **kw)
    s["wall_s"] = time.perf_counter() - t0
    return s


def ray_fixed_cost(workers: int) -> float | None:
    try:
        import ray
    except ImportError:
        return None
    import logging

    t0 = time.perf_counter()
    path = os.pathsep.join(os.path.abspath(p) for p in sys.path if p)
    ray.init(num_cpus=workers, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
             object_store_memory=80 * 1024**2, runtime_env={"env_vars": {"PYTHONPATH": path}})

    @ray.remote
    def noop():
        return 0

    ray.get([noop.remote() for _ in range(workers)])  # workers actually started
    ray.shutdown()
    return time.perf_counter() - t0


def per_kind_seconds(root: Path) -> dict:
    totals, counts = defaultdict(float), defaultdict(int)
    for line in (root / "manifest.jsonl").read_text().splitlines():
        row = json.loads(line)
        totals[row["kind"]] += row["seconds"]
        counts[row["kind"]] += 1
    return {k: {"frames": counts[k], "seconds": round(totals[k], 3), "ms_per_frame": round(1000 * totals[k] / counts[k], 2)}
            for k in sorted(totals)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 subjects at 128^2 (a smoke run)")
    ap.add_argument("--subjects", type=int, default=None)
    ap.add_argument("--size", type=int, default=None)
    args = ap.parse_args(argv)
    subjects = args.subjects or (2 if args.quick else 4)
    size = args.size or (128 if args.quick else 256)
    renderer = renderer_spec()
    from pnrelight.lightstage.dataset import dataset_bytes

    out = {"renderer": renderer, "cpu_count": os.cpu_count(), "subjects": subjects, "size": size, "lights": 331,
           "views": 1, "envs": 8, "runs": {}}
    tmp = Path(tempfile.mkdtemp(prefix="olat_scale_"))
    try:
        configs = [("workers 1", {"workers": 1}), ("workers 2", {"workers": 2})]
        if importlib.util.find_spec("ray") is not None:
            configs.append(("ray local (2 CPUs)", {"ray": "local", "workers": 2}))
        for name, kw in configs:
            root = tmp / name.replace(" ", "_")
            s = run(root, renderer, subjects=subjects, size=size, **kw)
            out["runs"][name] = {"wall_s": round(s["wall_s"], 2), "olat_frames": s["rendered"], "frames": s["written"],
                                 "olat_fps": round(s["rendered"] / s["wall_s"], 2), "fps": round(s["written"] / s["wall_s"], 2)}
            print(f"{name:22s} {s['wall_s']:7.2f} s  {s['rendered'] / s['wall_s']:7.2f} OLAT frames/s  "
                  f"{s['written'] / s['wall_s']:7.2f} frames/s", flush=True)
        root = tmp / "workers_1"
        s = run(root, renderer, subjects=subjects, size=size, workers=1)
        out["resume_all_done"] = {"wall_s": round(s["wall_s"], 2), "skipped": s["skipped"],
                                  "ms_per_frame": round(1000 * s["wall_s"] / max(s["skipped"], 1), 3)}
        print(f"rerun, all finished     {s['wall_s']:7.2f} s for {s['skipped']} frames (manifest + sha256)", flush=True)
        cost = ray_fixed_cost(2)
        out["ray_init_shutdown_s"] = None if cost is None else round(cost, 2)
        if cost is not None:
            print(f"ray.init + shutdown    {cost:7.2f} s", flush=True)
        big = tmp / "one_512"
        s = run(big, renderer, subjects=1, size=512, workers=1)
        sid = "synth-0000"
        out["one_subject_512"] = {"wall_s": round(s["wall_s"], 2), "bytes_subject": dataset_bytes(big, sid),
                                  "bytes_olat": sum(p.stat().st_size for p in (big / "subjects" / sid / "cam_00" / "olat").iterdir()),
                                  "bytes_mesh": dataset_bytes(big / "subjects" / sid / "mesh") if (big / "subjects" / sid / "mesh").is_dir() else 0,
                                  "per_kind": per_kind_seconds(big)}
        o = out["one_subject_512"]
        print(f"1 subject 512^2         {s['wall_s']:7.2f} s, {o['bytes_subject'] / 1e6:.1f} MB "
              f"(OLAT {o['bytes_olat'] / 1e6:.1f} MB, {o['bytes_olat'] / 331 / 1e3:.0f} kB/frame)", flush=True)
        for kind, v in o["per_kind"].items():
            print(f"    {kind:7s} {v['frames']:4d} frames {v['ms_per_frame']:8.2f} ms/frame")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "olat_scale_bench.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
