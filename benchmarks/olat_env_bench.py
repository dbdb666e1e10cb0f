"""Environment relighting from OLAT: speed of the per-light weights and of the OLAT weighted sum.

* ``light_weights`` in ms per map for the 114 / 156 / 331 / 642-light layouts and maps of
  64 x 128 up to 512 x 1024 (maps taller than the working resolution, 128 x 256 by default,
  are area-averaged to it first): "cold" is the first map of a size (texel -> light assignment
  built), "warm" every later map (assignment cached). Also the weights' error at working
  resolutions of 64 and 128 rows against the full 512-row map (sum of |difference| / sum of
  weights: energy moved to another light, counted twice) on a map with small bright lamps.
* ``compose`` in seconds for 331 float32 RGB frames at 256^2 and 512^2 (one array in memory).

Goals: <= 10 ms per map for 331 lights at 64 x 128 and at the 128 x 256 working resolution;
compose <= 2 s for 331 frames at 512^2.

Run: ``.venv/bin/python benchmarks/olat_env_bench.py [--quick]``.
Prints a table and writes ``benchmarks/results/olat_env_bench.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / ".pyshim"))  # this checkout's code when run from a worktree

LAYOUTS = ("114", "156", "lightstage-x-331", "ico:642")
MAP_HEIGHTS = (64, 128, 256, 512)
ERROR_HEIGHTS = (64, 128)


def lamp_map(height: int, rng: np.random.Generator) -> np.ndarray:
    """A sky gradient plus a few small, very bright lamps (the hard case for cell integrals)."""
    from pnrelight.envmap import latlong_directions

    d = latlong_directions(height)
    env = (0.2 + 0.8 * np.clip(d[..., 1:2], 0, None)) * np.array([0.6, 0.8, 1.0])
    for _ in range(6):
        c = rng.normal(size=3)
        c /= np.linalg.norm(c)
        env += 500.0 * (d @ c > np.cos(np.radians(2.0)))[..., None] * rng.uniform(0.5, 1.0, 3)
    return env.astype(np.float32)


def time_weights(layout, env: np.ndarray, repeat: int) -> tuple[float, float]:
    """(cold ms, best warm ms) of light_weights for one map."""
    from pnrelight.lightstage import envlight

    envlight._ASSIGNMENTS.clear()
    t0 = time.perf_counter()
    envlight.light_weights(env, layout)
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        envlight.light_weights(env, layout)
        warm.append(time.perf_counter() - t0)
    return 1e3 * cold, 1e3 * min(warm)


def time_compose(n: int, size: int, repeat: int, rng: np.random.Generator) -> float:
    from pnrelight.lightstage import compose

    olat = rng.random((n, size, size, 3), dtype=np.float32)
    weights = rng.random((n, 3))
    best = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        compose(olat, weights)
        best.append(time.perf_counter() - t0)
    return min(best)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, 256^2 compose only")
    ap.add_argument("--out", type=Path, default=RESULTS / "olat_env_bench.json")
    args = ap.parse_args(argv)

    from pnrelight.lightstage import light_weights, load_layout

    rng = np.random.default_rng(0)
    repeat = 3 if args.quick else 10
    maps = {h: lamp_map(h, rng) if h == 512 else None for h in MAP_HEIGHTS}
    for h in MAP_HEIGHTS[:-1]:
        from pnrelight.envmap import downsample_latlong

        maps[h] = downsample_latlong(maps[512], h)
    layouts = {name: load_layout(name) for name in LAYOUTS}
    weights_rows = []
    print(f"{'layout':<18}{'lights':>7}" + "".join(f"{f'{h}x{2 * h} cold/warm ms':>24}" for h in MAP_HEIGHTS) + "".join(f"{f'err@{h}':>9}" for h in ERROR_HEIGHTS))
    for name, layout in layouts.items():
        row = {"layout": name, "lights": len(layout), "ms": {}}
        cells = []
        for h in MAP_HEIGHTS:
            cold, warm = time_weights(layout, maps[h], repeat)
            row["ms"][f"{h}x{2 * h}"] = {"cold": cold, "warm": warm}
            cells.append(f"{cold:9.2f} / {warm:6.2f}")
        fine = light_weights(maps[512], layout, working_height=None)
        row["rel_error_at_working_height"] = {}
        for h in ERROR_HEIGHTS:
            coarse = light_weights(maps[512], layout, working_height=h)
            row["rel_error_at_working_height"][str(h)] = float(np.abs(coarse - fine).sum() / fine.sum())
        weights_rows.append(row)
        print(f"{name:<18}{len(layout):>7}" + "".join(f"{c:>24}" for c in cells)
              + "".join(f"{row['rel_error_at_working_height'][str(h)]:>9.4f}" for h in ERROR_HEIGHTS))

    compose_rows = []
    sizes = (256,) if args.quick else (256, 512)
    for size in sizes:
        seconds = time_compose(331, size, 2 if args.quick else 3, rng)
        compose_rows.append({"frames": 331, "size": size, "seconds": seconds})
        print(f"compose 331 frames at {size}x{size}: {seconds:.3f} s")

    ok_weights = all(r["ms"][k]["warm"] <= 10.0 for r in weights_rows if r["lights"] == 331 for k in ("64x128", "128x256"))
    ok_compose = all(r["seconds"] <= 2.0 for r in compose_rows if r["size"] == 512)
    result = {"light_weights": weights_rows, "compose": compose_rows,
              "goals": {"weights_331_le_10ms_at_64_and_128_rows": ok_weights, "compose_331_512_le_2s": ok_compose},
              "numpy": np.__version__, "python": sys.version.split()[0]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"goals: weights {'met' if ok_weights else 'MISSED'}, compose {'met' if ok_compose else 'MISSED'}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
