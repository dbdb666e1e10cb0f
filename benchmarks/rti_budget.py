"""Does a larger training budget close the neural models' gap on the captures where they lose to HSH-9?

For each item and budget multiplier B: HSH-9, the 50x50 NeuralRTI teacher and its distilled 20x20
student trained with B x the default epochs and step caps (same seed, same recipe otherwise),
scored on the held-out lights (every 5th, ``rti_real.load_item``). One process per (item, budget).

Run: ``.venv/bin/python benchmarks/rti_budget.py [--items item7 item1] [--budgets 1 4] [--device cuda]``;
writes ``benchmarks/results/rti_budget.json`` (or ``--out``) and prints a table.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rti_real import load_item, score  # noqa: E402


def run(item: str, budget: int, seed: int, device: str, threads: int) -> list[dict]:
    from pnrelight.rti import neural
    from pnrelight.rti.fit import fit_linear

    train, test = load_item(item)
    rows = [{"item": item, "budget": budget, "model": "hsh-9", **score(fit_linear(train, "hsh", 9, "rgb"), test)}]
    kw = {"seed": seed, "threads": threads, "device": device}
    t0 = time.perf_counter()
    teacher, trec = neural.train_teacher(train, epochs=neural.EPOCHS * budget, max_steps=neural.TEACHER_MAX_STEPS * budget, **kw)
    rows.append({"item": item, "budget": budget, "model": "teacher-50x50", "seconds": round(time.perf_counter() - t0, 1),
                 "steps": trec["steps"], **score(teacher, test)})
    teacher.meta["training"] = trec
    t0 = time.perf_counter()
    student, srec = neural.distill_student(teacher, train, epochs=neural.STUDENT_EPOCHS * budget,
                                           max_steps=neural.STUDENT_MAX_STEPS * budget, **kw)
    rows.append({"item": item, "budget": budget, "model": "student-20x20", "seconds": round(time.perf_counter() - t0, 1),
                 "steps": srec["steps"], **score(student, test)})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", nargs="+", default=["item7", "item1"])
    ap.add_argument("--budgets", nargs="+", type=int, default=[1, 4])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "rti_budget.json")
    a = ap.parse_args(argv)
    jobs = [(i, b) for i in a.items for b in a.budgets]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    print(f"{'item':<8} {'budget':>6} {'model':<14} {'PSNR':>7} {'SSIM':>7} {'steps':>7} {'seconds':>8}", flush=True)
    with ProcessPoolExecutor(a.jobs) as pool:
        futures = [pool.submit(run, i, b, a.seed, a.device, a.threads) for i, b in jobs]
        for f in as_completed(futures):  # rows as each job ends: a long run that is cut short keeps what finished
            for r in f.result():
                rows.append(r)
                print(f"{r['item']:<8} {r['budget']:>6} {r['model']:<14} {r['psnr']:>7.2f} {r['ssim']:>7.4f} "
                      f"{r.get('steps', ''):>7} {r.get('seconds', ''):>8}", flush=True)
            a.out.write_text(json.dumps({"seed": a.seed, "device": a.device, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
