"""RTI quality on real captures: PTM, HSH-9, HSH-16, NeuralRTI's 50x50 reference (captured lights
only), the default pipeline's 50x50 teacher and the DisK student distilled from it (light prior
auto), larger teachers and their students, and the plain student (without and with the light
prior), on Dome and the RealRTI items.

Protocol: Dome uses its own train/test split (49 / 20 lights); every RealRTI item holds out every
5th light (0-based indices 2, 7, 12, ...: files image02, image07, ...), as its README says. Held-out
PSNR/SSIM are means over the held-out lights, inside the mask when there is one. Training runs are
stochastic: ``--seeds`` repeats each neural chain.

Each neural chain (teacher -> student, or the plain student) runs in its own process
(``--jobs`` at a time) and writes one JSON per run into ``--out``, so an interrupted run keeps
what finished and ``--report`` rebuilds the tables from the JSON files alone.

Run: ``.venv/bin/python benchmarks/rti_real.py [--items dome item1 ...] [--seeds 0 1] [--jobs 2]
[--device cpu|cuda]``; tables on stdout, rows in ``benchmarks/results/rti_real/``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "rti"
RESULTS = Path(__file__).resolve().parent / "results" / "rti_real"
ITEMS = ["dome", "item1", "item3", "item7", "item11"]
LARGE_TEACHER = (128, 128, 128)
CHAINS = {
    # name: (teacher hidden or None, student hidden or None, alpha, light prior)
    # None teacher = plain student; None student = the teacher alone
    "ref": ((50, 50), (20, 20), 0.3, "auto"),          # the default pipeline (fit + distill)
    "neuralrti": ((50, 50), None, None, "none"),       # NeuralRTI's reference: captured lights only
    "large": (LARGE_TEACHER, (20, 20), 0.3, "auto"),
    "wide": ((100, 100), (20, 20), 0.3, "auto"),
    "plain": (None, (20, 20), 1.0, "none"),
    "plain-auto": (None, (20, 20), 1.0, "auto"),
}
REFERENCE = "neuralrti-50x50"


def load_item(item: str, root: Path | None = None):
    """(train, test) MLICs of an item, split by its protocol; root holds dome/ and realrti/."""
    from pnrelight.formats.mlic import load_mlic

    root = Path(os.environ.get("PNRELIGHT_RTI_DATA", SHARED)) if root is None else root
    if item == "dome":
        train, test = load_mlic(root / "dome" / "train"), load_mlic(root / "dome" / "test")
        if test.mask is None:
            test.mask = train.mask
        return train, test
    full = load_mlic(root / "realrti" / item)
    held = np.arange(full.count) % 5 == 2
    return full.subset(~held), full.subset(held)


def score(model, test) -> dict:
    from pnrelight.rti.evaluate import evaluate

    report = evaluate(model, test)
    return {"psnr": round(report["mean"]["psnr"], 3), "ssim": round(report["mean"]["ssim"], 4)}


def _summary(record: dict) -> dict:
    keep = ("method", "seed", "steps", "seconds", "device", "best_round", "recoveries", "attempts", "baseline",
            "warning", "train_pixels", "val_pixels", "decoder_parameters", "light_prior")
    return {k: record.get(k) for k in keep}


def run_linear(item: str, out: Path) -> list[dict]:
    from pnrelight.rti.fit import fit_linear

    train, test = load_item(item)
    rows = []
    for name, kind, terms in (("ptm", "ptm", None), ("hsh-9", "hsh", 9), ("hsh-16", "hsh", 16)):
        t0 = time.perf_counter()
        model = fit_linear(train, kind, terms, "rgb")
        rows.append({"item": item, "model": name, "seed": None, "seconds": round(time.perf_counter() - t0, 2),
                     **score(model, test)})
    (out / f"{item}_linear.json").write_text(json.dumps(rows, indent=1))
    return rows


def run_chain(item: str, chain: str, seed: int, device: str, threads: int, out: Path, quick: bool = False) -> list[dict]:
    from pnrelight.rti import mlp, neural

    teacher_hidden, student_hidden, alpha, prior = CHAINS[chain]
    train, test = load_item(item)
    rows = []
    kw = {"seed": seed, "threads": threads, "device": device, "light_prior": prior,
          **({"epochs": 2, "max_steps": 40} if quick else {})}
    if teacher_hidden is None:
        t0 = time.perf_counter()
        plain, rec = neural.train_student_plain(train, hidden=student_hidden, **kw)
        rows.append({"item": item, "model": "plain-student" + ("-auto-prior" if prior == "auto" else ""), "seed": seed, "seconds": round(time.perf_counter() - t0, 1),
                     "parameters": mlp.decoder_parameters(plain.layers), **score(plain, test), "training": _summary(rec)})
    else:
        t0 = time.perf_counter()
        teacher, trec = neural.train_teacher(train, hidden=teacher_hidden, **kw)
        name = {"ref": "teacher-50x50", "neuralrti": REFERENCE}.get(chain, "teacher-" + "x".join(map(str, teacher_hidden)))
        rows.append({"item": item, "model": name, "seed": seed, "seconds": round(time.perf_counter() - t0, 1),
                     "parameters": mlp.decoder_parameters(teacher.layers), **score(teacher, test), "training": _summary(trec)})
        if student_hidden is None:
            (out / f"{item}_{chain}_s{seed}.json").write_text(json.dumps(rows, indent=1))
            return rows
        teacher.meta["training"] = trec  # the student starts from the teacher's encoder, as the CLI does
        t0 = time.perf_counter()
        student, srec = neural.distill_student(teacher, train, hidden=student_hidden, alpha=alpha, **kw)
        rows.append({"item": item, "model": f"student<-{name}", "seed": seed, "seconds": round(time.perf_counter() - t0, 1),
                     "parameters": mlp.decoder_parameters(student.layers), **score(student, test), "training": _summary(srec)})
    (out / f"{item}_{chain}_s{seed}.json").write_text(json.dumps(rows, indent=1))
    return rows


def report(out: Path) -> dict:
    """Tables per item (mean over seeds, worst seed) and the issue's checks, from the JSON rows."""
    rows = [r for p in sorted(out.glob("*.json")) if p.name != "summary.json" for r in json.loads(p.read_text())]
    items = [i for i in ITEMS if any(r["item"] == i for r in rows)]
    models = []
    for r in rows:
        if r["model"] not in models:
            models.append(r["model"])
    order = ["ptm", "hsh-9", "hsh-16", REFERENCE, "teacher-50x50", "teacher-100x100", "teacher-" + "x".join(map(str, LARGE_TEACHER)),
             "student<-teacher-50x50", "student<-teacher-100x100", "student<-teacher-" + "x".join(map(str, LARGE_TEACHER)),
             "plain-student", "plain-student-auto-prior"]
    models = [m for m in order if m in models] + [m for m in models if m not in order]
    table = {}
    for item in items:
        print(f"\n{item}: held-out PSNR dB / SSIM (mean over seeds; worst seed; seconds)")
        print(f"  {'model':<36} {'PSNR':>7} {'worst':>7} {'SSIM':>7} {'seconds':>8} {'seeds':>5} recoveries")
        for m in models:
            sel = [r for r in rows if r["item"] == item and r["model"] == m]
            if not sel:
                continue
            ps = [r["psnr"] for r in sel]
            rec = sum(len((r.get("training") or {}).get("recoveries") or []) for r in sel)
            att = sum(max(0, len((r.get("training") or {}).get("attempts") or [1]) - 1) for r in sel)
            entry = {"psnr": float(np.mean(ps)), "worst": float(min(ps)), "ssim": float(np.mean([r["ssim"] for r in sel])),
                     "seconds": float(np.mean([r["seconds"] for r in sel])), "seeds": len(sel), "recoveries": rec,
                     "retries": att}
            table.setdefault(item, {})[m] = entry
            print(f"  {m:<36} {entry['psnr']:>7.2f} {entry['worst']:>7.2f} {entry['ssim']:>7.4f} {entry['seconds']:>8.1f} "
                  f"{entry['seeds']:>5} {rec}{f' (+{att} retries)' if att else ''}")
    checks = {}
    full = [i for i in items if all(m in table[i] for m in ("hsh-9", REFERENCE, "plain-student"))]
    for student in ("student<-teacher-50x50", "student<-teacher-100x100", "student<-teacher-" + "x".join(map(str, LARGE_TEACHER))):
        its = [i for i in full if student in table[i]]
        if not its:
            continue
        gap = [table[i][student]["psnr"] - table[i][REFERENCE]["psnr"] for i in its]
        checks[student] = {
            "items": its,
            "mean_minus_reference_db": round(float(np.mean(gap)), 3),
            "per_item_minus_reference_db": {i: round(g, 3) for i, g in zip(its, gap)},
            "min_minus_hsh9_db": round(min(table[i][student]["worst"] - table[i]["hsh-9"]["psnr"] for i in its), 3),
            "mean_minus_plain_db": round(float(np.mean([table[i][student]["psnr"] - table[i]["plain-student"]["psnr"] for i in its])), 3),
            **({"mean_minus_plain_auto_prior_db": round(float(np.mean(
                [table[i][student]["psnr"] - table[i]["plain-student-auto-prior"]["psnr"] for i in its])), 3)}
               if all("plain-student-auto-prior" in table[i] for i in its) else {}),
        }
    if checks:
        print("\nchecks (targets: mean - reference >= -0.1 dB, min - HSH-9 >= 0, mean - plain > 0):")
        for k, v in checks.items():
            print(f"  {k}: {json.dumps(v)}")
    summary = {"tables": table, "checks": checks, "rows": len(rows)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", nargs="+", default=ITEMS, choices=ITEMS)
    ap.add_argument("--chains", nargs="+", default=list(CHAINS), choices=list(CHAINS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--jobs", type=int, default=1, help="neural chains run at once (processes)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per process (default 2 // jobs, >= 1)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--data", type=Path, default=None, help=f"folder with dome/ and realrti/ (default {SHARED})")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--report", action="store_true", help="only rebuild the tables from --out")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of 40 steps per network")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.data is not None:  # the worker processes read it from the environment
        os.environ["PNRELIGHT_RTI_DATA"] = str(args.data)
    if not args.report:
        threads = args.threads or max(1, 2 // args.jobs)
        for item in args.items:
            run_linear(item, args.out)
        tasks = [(item, chain, seed) for seed in args.seeds for chain in args.chains for item in args.items]
        # the longest chains first, so the pool's tail is short
        tasks.sort(key=lambda t: list(CHAINS).index(t[1]))
        t0 = time.perf_counter()
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(run_chain, *t, args.device, threads, args.out, args.quick): t for t in tasks}
            for fut in as_completed(futures):
                item, chain, seed = futures[fut]
                try:
                    rows = fut.result()
                except Exception as exc:  # noqa: BLE001 - report and keep the other runs
                    print(f"FAILED {item} {chain} seed {seed}: {exc!r}", flush=True)
                    continue
                print(f"[{time.perf_counter() - t0:7.1f} s] {item} {chain} s{seed}: "
                      + ", ".join(f"{r['model']} {r['psnr']:.2f}" for r in rows), flush=True)
    report(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
