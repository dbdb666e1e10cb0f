"""RTI quality and speed: PTM, HSH-4/9/16, NeuralRTI teacher, DisK student and plain student.

Fits every model on the Dome training lights (``train/``, 49 lights) and evaluates held-out
PSNR/SSIM inside the mask on the 20 test lights (``test/``). Also measures relighting
throughput (megapixels/s of ``pnrelight.rti.model.relight`` with numpy, and of the same model in a GLSL
fragment shader on 8-bit planes, the web viewer's path, ``pnrelight.rti.glsl``) on a 4096 x 4096
coefficient image drawn with each model's coefficient statistics.

Goals: teacher >= HSH-9 + 0.5 dB; student within 0.3 dB of the teacher and better than the
plain student; student decoder <= 25 % of the teacher's parameters and >= 3x its throughput;
"plain-tinit" is the student trained on ground truth alone but started from the teacher's
encoder, like the distilled student, to separate what the start and the teacher loss bring;
teacher + student training <= 10 min on the 2-core machine.

Run: ``.venv/bin/python benchmarks/rti_bench.py [--quick] [--data DIR] [--size 4096]``.
Prints a table and writes ``benchmarks/results/rti_bench.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "rti" / "dome"


def big_copy(model, size: int, rng: np.random.Generator):
    """``model`` on a size x size image of random coefficients with its own per-coefficient mean and spread."""
    from pnrelight.rti.model import RTIModel

    c = model.coefficients.reshape(-1, model.coefficients.shape[-1])
    mean, std = c.mean(0), c.std(0)
    big = np.empty((size * size, c.shape[1]), np.float32)
    for s in range(0, size * size, 1 << 22):
        n = min(1 << 22, size * size - s)
        big[s:s + n] = rng.standard_normal((n, c.shape[1]), dtype=np.float32) * std + mean
    return RTIModel(kind=model.kind, colorspace=model.colorspace, coefficients=big.reshape(size, size, -1),
                    terms=model.terms, layers=model.layers)


def throughputs(models: list, size: int, repeat: int, rng: np.random.Generator) -> list[tuple[float, float | None]]:
    """Megapixels per second of each model on a size x size copy: (numpy ``relight``, GLSL shader on
    8-bit planes or None without offscreen GL).

    numpy timings run in rounds, every model once per round, best of ``repeat``: this machine's
    speed drifts by up to 2x over tens of seconds (shared host), and the teacher/student ratio is
    only meaningful when both are timed under the same conditions.
    """
    from pnrelight.rti.model import relight

    light = np.array([0.3, 0.4, np.sqrt(1 - 0.25)])
    bigs = [big_copy(m, size, rng) for m in models]
    for big in bigs:
        relight(big, light)  # warm-up (allocations)
    best = [float("inf")] * len(bigs)
    for _ in range(repeat):
        for i, big in enumerate(bigs):
            t0 = time.perf_counter()
            relight(big, light)
            best[i] = min(best[i], time.perf_counter() - t0)
    rates = []
    for model, big, seconds in zip(models, bigs, best):
        shader = None
        try:
            from pnrelight.rti.glsl import ShaderRelighter

            with ShaderRelighter(big) as gl:
                shader = gl.megapixels_per_second(light, repeat)
        except Exception as exc:  # noqa: BLE001 - no EGL here: report numpy only
            print(f"  (no shader timing for {model.label}: {exc})")
        rates.append((size * size / seconds / 1e6, shader))
    return rates


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with train/ and test/ MLICs")
    ap.add_argument("--quick", action="store_true", help="smoke run: few epochs, 1024^2 throughput")
    ap.add_argument("--epochs", type=int, default=None, help="teacher/student epochs (default: the trainer's)")
    ap.add_argument("--size", type=int, default=None, help="throughput image side (default 4096, quick 1024)")
    ap.add_argument("--repeat", type=int, default=5, help="throughput rounds (best is kept)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS / "rti_bench.json")
    args = ap.parse_args(argv)

    if not (args.data / "train").is_dir() or not (args.data / "test").is_dir():
        print(f"skipped: no Dome data at {args.data} (needs train/ and test/ MLIC folders)")
        return 0

    import torch

    from pnrelight.formats.mlic import load_mlic
    from pnrelight.rti import mlp, neural
    from pnrelight.rti.evaluate import evaluate
    from pnrelight.rti.fit import fit_linear

    size = args.size or (1024 if args.quick else 4096)
    epochs = args.epochs or (3 if args.quick else None)
    ekw = {"epochs": epochs} if epochs else {}
    train = load_mlic(args.data / "train")
    test = load_mlic(args.data / "test")
    if test.mask is None and train.mask is not None:
        test.mask = train.mask

    rows = []

    def add(name, model, seconds, record=None):
        report = evaluate(model, test)
        row = {"model": name, "label": model.label, "fit_seconds": round(seconds, 2),
               "psnr": round(report["mean"]["psnr"], 3), "ssim": round(report["mean"]["ssim"], 4),
               "coefficients": int(model.coefficients.shape[-1]),
               "decoder_parameters": mlp.decoder_parameters(model.layers) if model.layers else 0}
        if record is not None:
            row["training"] = {k: v for k, v in record.items() if k != "encoder"}
        rows.append((row, model))
        print(f"  {name:<14} {row['psnr']:6.2f} dB  SSIM {row['ssim']:.4f}  ({seconds:.1f} s)", flush=True)

    print(f"Dome: {len(train.names)} train lights, {len(test.names)} test lights, {train.shape[1]}x{train.shape[0]}, "
          f"torch threads 2, load average {os.getloadavg()[0]:.1f}", flush=True)
    for name, kind, terms in [("ptm", "ptm", None), ("hsh-4", "hsh", 4), ("hsh-9", "hsh", 9), ("hsh-16", "hsh", 16)]:
        t0 = time.perf_counter()
        model = fit_linear(train, kind, terms, "rgb")
        add(name, model, time.perf_counter() - t0)

    t0 = time.perf_counter()
    teacher, trec = neural.train_teacher(train, seed=args.seed, threads=2, **ekw)
    add("teacher", teacher, time.perf_counter() - t0, trec)
    teacher.meta["training"] = trec  # as `pnrelight rti fit` stores it: the student starts from its encoder
    t0 = time.perf_counter()
    student, srec = neural.distill_student(teacher, train, seed=args.seed, threads=2, **ekw)
    add("student", student, time.perf_counter() - t0, srec)
    t0 = time.perf_counter()
    # the same schedule as the distilled student (its defaults), own encoder, no teacher
    plain, prec = neural.train_student_plain(train, seed=args.seed, threads=2, **ekw)
    add("plain-student", plain, time.perf_counter() - t0, prec)
    t0 = time.perf_counter()  # same start as the distilled student (teacher's encoder), no teacher in the loss
    plain_ti, ptrec = neural.distill_student(teacher, train, alpha=1.0, seed=args.seed, threads=2, **ekw)
    add("plain-tinit", plain_ti, time.perf_counter() - t0, ptrec)

    rng = np.random.default_rng(args.seed)
    # linear models one at a time (up to 3 GB each at 4096^2); the neural ones (0.6 GB) in shared rounds
    groups = [[i] for i, (_, m) in enumerate(rows) if m.kind != "neural"]
    groups.append([i for i, (_, m) in enumerate(rows) if m.kind == "neural"])
    rates = {}
    for group in groups:
        rates.update(zip(group, throughputs([rows[i][1] for i in group], size, args.repeat, rng)))
    for i, (row, _) in enumerate(rows):
        numpy_rate, shader_rate = rates[i]
        row["relight_mpix_per_s"] = round(numpy_rate, 2)
        row["shader_mpix_per_s"] = None if shader_rate is None else round(shader_rate, 2)

    by = {r["model"]: r for r, _ in rows}
    checks = {
        "teacher_minus_hsh9_db": round(by["teacher"]["psnr"] - by["hsh-9"]["psnr"], 3),
        "student_minus_teacher_db": round(by["student"]["psnr"] - by["teacher"]["psnr"], 3),
        "student_minus_plain_db": round(by["student"]["psnr"] - by["plain-student"]["psnr"], 3),
        "student_minus_plain_tinit_db": round(by["student"]["psnr"] - by["plain-tinit"]["psnr"], 3),
        "student_param_ratio": round(by["student"]["decoder_parameters"] / by["teacher"]["decoder_parameters"], 3),
        "student_speedup": round(by["student"]["relight_mpix_per_s"] / by["teacher"]["relight_mpix_per_s"], 2),
        "student_shader_speedup": (round(by["student"]["shader_mpix_per_s"] / by["teacher"]["shader_mpix_per_s"], 2)
                                   if by["student"]["shader_mpix_per_s"] else None),
        "teacher_plus_student_seconds": round(by["teacher"]["fit_seconds"] + by["student"]["fit_seconds"], 1),
    }
    print(f"\n{'model':<14} {'label':<16} {'fit s':>7} {'PSNR':>7} {'SSIM':>7} {'params':>7} {'numpy MP/s':>11} {'GLSL MP/s':>10}")
    for row, _ in rows:
        glsl_rate = "-" if row["shader_mpix_per_s"] is None else f"{row['shader_mpix_per_s']:.1f}"
        print(f"{row['model']:<14} {row['label']:<16} {row['fit_seconds']:>7.1f} {row['psnr']:>7.2f} {row['ssim']:>7.4f} "
              f"{row['decoder_parameters']:>7d} {row['relight_mpix_per_s']:>11.1f} {glsl_rate:>10}")
    for k, v in checks.items():
        print(f"{k}: {v}")
    result = {"data": str(args.data), "quick": args.quick, "seed": args.seed, "throughput_size": size,
              "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
              "python": sys.version.split()[0], "torch": torch.__version__,
              "models": [r for r, _ in rows], "checks": checks}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
