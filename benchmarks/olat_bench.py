"""OLAT rendering speed of the light stage renderer (``pnrelight.lightstage.render``) on the CPU.

Subjects: the ICT-FaceKit head (48,836 triangles, the default avatar model) and the same head
decimated to ~8k triangles by vertex clustering, with a procedural 1024² albedo texture, skin-like
specular (F0 0.028, roughness 0.45). Camera: frontal, 30° field of view, the head filling the frame
as in the avatar renders. Lights: suns of a light stage, ``--lights`` directions on a Fibonacci
sphere (all around the head: lights behind it shade few pixels) and as many on the front hemisphere.

Measures, per mesh and resolution: G-buffer time (primary rays, once per view), OLAT frames per
second with hard shadows (sphere and front sets) and without shadows, in one process and with
``render_olat_set(..., workers=2)`` (one process per core, pool start-up included) and with
``threads=2``. The machine is shared: every figure is the best of ``--repeat`` runs, and the load average is printed.
Goal: >= 30 frames/s at 512² with shadows on the ICT head.

Run: ``.venv/bin/python benchmarks/olat_bench.py [--lights 64] [--sizes 256 512 1024] [--quick]``.
Prints a table and writes ``benchmarks/results/olat_bench.json``.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

from bench_common import write_result  # noqa: E402 - benchmarks/ is on sys.path when run as a script

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
GOAL_FPS = 30.0


def fibonacci_directions(count: int, front_only: bool = False) -> np.ndarray:
    """(count, 3) unit vectors spread evenly over the sphere (or the z > 0 hemisphere)."""
    k = np.arange(count) + 0.5
    y = 1 - 2 * k / count if not front_only else 1 - k / count  # front: z in (0, 1] after the swap below
    r = np.sqrt(np.clip(1 - y * y, 0, None))
    phi = k * math.pi * (3 - math.sqrt(5))
    d = np.stack([r * np.cos(phi), r * np.sin(phi), y], axis=1)
    return d if front_only else d[:, [0, 2, 1]]


def decimate(vertices: np.ndarray, triangles: np.ndarray, uvs: np.ndarray, target: int):
    """Vertex-clustering decimation to about ``target`` triangles: vertices merge per grid cell
    (position and uv averaged), collapsed and duplicate triangles are dropped. Fine for timing."""
    lo, hi = vertices.min(0), vertices.max(0)
    best = None
    a, b = 1e-4, float((hi - lo).max())  # cell size bounds (metres)
    for _ in range(30):
        cell = math.sqrt(a * b)
        key = np.floor((vertices - lo) / cell).astype(np.int64)
        _, cluster = np.unique(key, axis=0, return_inverse=True)
        cluster = cluster.reshape(-1)
        t = cluster[triangles]
        t = t[(t[:, 0] != t[:, 1]) & (t[:, 1] != t[:, 2]) & (t[:, 0] != t[:, 2])]
        t = np.unique(t, axis=0)
        if best is None or abs(len(t) - target) < abs(len(best[1]) - target):
            best = (cluster, t)
        if abs(len(t) - target) < 0.03 * target:
            break
        a, b = (cell, b) if len(t) > target else (a, cell)
    cluster, t = best
    n = cluster.max() + 1
    count = np.bincount(cluster, minlength=n)[:, None]
    v = np.stack([np.bincount(cluster, vertices[:, c], n) for c in range(3)], 1) / count
    uv = np.stack([np.bincount(cluster, uvs[:, c], n) for c in range(2)], 1) / count
    return v.astype(np.float32), t.astype(np.int32), uv.astype(np.float32)


def skin_texture(size: int = 1024) -> np.ndarray:
    """A procedural linear-RGB skin-ish albedo (T, T, 3): smooth blotches, so texture lookups are real work."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    tex = np.zeros((size, size, 3), np.float32)
    base = np.array([0.55, 0.38, 0.30], np.float32)
    for _ in range(12):
        fx, fy, ph = rng.uniform(2, 20), rng.uniform(2, 20), rng.uniform(0, 2 * np.pi)
        tex += (0.02 * np.sin(2 * np.pi * (fx * x + fy * y) + ph))[..., None].astype(np.float32)
    return np.clip(tex + base, 0.05, 0.95)


REPEAT = 3


def time_set(gbuf, lights, *, shadows=True, workers=1, threads=1) -> float:
    """Frames per second of wall time, the best of REPEAT runs (the machine is shared: other work only slows us)."""
    from pnrelight.lightstage.render import render_olat_set

    best = 0.0
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        n = sum(1 for _ in render_olat_set(gbuf, lights, shadows=shadows, workers=workers, threads=threads))
        best = max(best, n / (time.perf_counter() - t0))
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lights", type=int, default=64)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--decimate-to", type=int, default=8000)
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement; the table shows the fastest")
    ap.add_argument("--quick", action="store_true", help="16 lights, 512² only, 1 run")
    ap.add_argument("--out", type=Path, default=RESULTS / "olat_bench.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.lights, args.sizes, args.repeat = 16, [512], 1
    global REPEAT
    REPEAT = max(1, args.repeat)

    from pnrelight.avatar.face_model import load_ict_face_model
    from pnrelight.avatar.render import framing, orbit_pose
    from pnrelight.lightstage.render import embree_available, prepare_view, sun_light

    if not embree_available():
        print("embreex is missing: timing the rasterizer + shadow-map fallback")
    head = load_ict_face_model()
    tex = skin_texture()
    material = {"albedo": tex, "specular": 0.028, "roughness": 0.45}
    meshes = {"ict_head": {"vertices": head.vertices, "triangles": head.triangles, "uvs": head.uvs, **material}}
    dv, dt, duv = decimate(head.vertices.astype(np.float64), head.triangles, head.uvs.astype(np.float64), args.decimate_to)
    meshes[f"decimated_{round(len(dt) / 1000)}k"] = {"vertices": dv, "triangles": dt, "uvs": duv, **material}
    sphere = [sun_light(d, 3.0) for d in fibonacci_directions(args.lights)]
    front = [sun_light(d, 3.0) for d in fibonacci_directions(args.lights, front_only=True)]
    center, dist = framing(head.vertices, 30.0)
    pose = orbit_pose(center, dist, 0.0, 0.0)

    rows = []
    load0 = os.getloadavg()[0]
    for name, mesh in meshes.items():
        for size in args.sizes:
            f = (size / 2) / math.tan(math.radians(15))
            K = np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]])
            t0 = time.perf_counter()
            g = prepare_view(mesh, pose, K, size)
            gbuf_s = time.perf_counter() - t0
            row = {"mesh": name, "triangles": int(len(mesh["triangles"])), "size": size, "covered_pixels": int(len(g.pixels)),
                   "backend": g.backend, "gbuffer_s": round(gbuf_s, 4),
                   "fps_shadows_sphere": round(time_set(g, sphere), 1),
                   "fps_shadows_front": round(time_set(g, front), 1),
                   "fps_no_shadows_sphere": round(time_set(g, sphere, shadows=False), 1)}
            if size == 512:
                row["fps_shadows_sphere_2proc"] = round(time_set(g, sphere, workers=2), 1)
                row["fps_shadows_front_2proc"] = round(time_set(g, front, workers=2), 1)
                row["fps_shadows_front_2thread"] = round(time_set(g, front, threads=2), 1)
            rows.append(row)
            print(f"  {name} {size}²: {row}", file=sys.stderr)
    load1 = os.getloadavg()[0]

    def fmt(r, key):
        return f"{r[key]:>9.1f}" if key in r else f"{'-':>9}"

    print(f"OLAT benchmark: {args.lights} suns per set, {os.cpu_count()} CPUs, backend {rows[0]['backend']}, "
          f"load average {load0:.2f} -> {load1:.2f}")
    print(f"{'mesh':<16}{'tris':>7}{'size':>6}{'pixels':>8}{'gbuf ms':>9}{'sphere':>9}{'front':>9}{'no shad':>9}"
          f"{'sph 2p':>9}{'front 2p':>9}{'front 2t':>9}")
    for r in rows:
        print(f"{r['mesh']:<16}{r['triangles']:>7}{r['size']:>6}{r['covered_pixels']:>8}{1000 * r['gbuffer_s']:>9.0f}"
              f"{fmt(r, 'fps_shadows_sphere')}{fmt(r, 'fps_shadows_front')}{fmt(r, 'fps_no_shadows_sphere')}"
              f"{fmt(r, 'fps_shadows_sphere_2proc')}{fmt(r, 'fps_shadows_front_2proc')}{fmt(r, 'fps_shadows_front_2thread')}")
    print("frames/s of wall time, best of", REPEAT, "runs; sphere/front: lights all around / in front (shadows on);"
          " 2p / 2t: 2 worker processes / 2 threads")
    ict512 = next((r for r in rows if r["mesh"] == "ict_head" and r["size"] == 512), None)
    meets = None if ict512 is None else ict512["fps_shadows_front"] >= GOAL_FPS
    if ict512 is not None:
        print(f"goal >= {GOAL_FPS:.0f} frames/s at 512² with shadows (ICT head, front lights, 1 process): "
              f"{ict512['fps_shadows_front']:.1f} -> {'met' if meets else 'NOT met'}")
    result = {"lights_per_set": args.lights, "repeat": REPEAT, "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
              "load_average_1min": [round(load0, 2), round(load1, 2)], "rows": rows, "goal_fps": GOAL_FPS, "meets_goal": meets,
              "camera": "frontal, 30 deg vertical field of view, head framed by its bounding sphere",
              "lights": "suns of strength 3 W/m²: Fibonacci sphere ('sphere') and front hemisphere ('front')"}
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
