"""The HSH-9 light prior on Dome and the RealRTI items: teacher 50x50 and its distilled 20x20
student trained with and without it, and the auto check's decision per capture.

Protocol as ``rti_real.py`` (every 5th light held out). One process per (item, seed, prior) chain
and one per check batch, all at once (``--device cuda`` puts the chains on the GPU, the checks
stay on the CPU); ``--deadline`` seconds after the start, training rounds stop and the best state
so far is scored (the row says ``truncated``). Rows are appended to ``--out`` (JSON lines) as each
stage ends, so a run cut short keeps what finished.

Run: ``.venv/bin/python benchmarks/rti_prior.py [--items ...] [--seeds 0 1] [--device cpu|cuda]``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / ".pyshim"))  # this checkout's code when run from a worktree
from rti_real import ITEMS, load_item, score  # noqa: E402


def _emit(out: Path, row: dict) -> None:
    with open(out, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps({k: v for k, v in row.items() if k != "check"}), flush=True)


def _deadline_progress(deadline: float, state: dict):
    def progress(iterable, total=None, desc=None):
        for i, x in enumerate(iterable):
            if time.time() > deadline and desc in ("teacher", "student"):
                state.setdefault("truncated", f"{desc} stopped after {i} of {total} rounds")
                return
            yield x
    return progress


def run_chain(item: str, seed: int, prior: str, device: str, deadlines: tuple[float, float], out: Path) -> None:
    import torch
    from pnrelight.rti import neural

    torch.set_num_threads(1)
    train, test = load_item(item)
    base = {"item": item, "seed": seed, "prior": prior, "device": device}
    state = {}
    t0 = time.perf_counter()
    teacher, trec = neural.train_teacher(train, light_prior=prior, seed=seed, threads=1, device=device,
                                         progress=_deadline_progress(deadlines[0], state))
    _emit(out, {**base, "model": "teacher-50x50", "seconds": round(time.perf_counter() - t0, 1), **score(teacher, test),
                "recoveries": len(trec["recoveries"]), "virtual_lights": trec["light_prior"]["virtual_lights"],
                "truncated": state.pop("truncated", None)})
    teacher.meta["training"] = trec
    t0 = time.perf_counter()
    student, srec = neural.distill_student(teacher, train, light_prior="auto", seed=seed, threads=1, device=device,
                                           progress=_deadline_progress(deadlines[1], state))
    _emit(out, {**base, "model": "student-20x20", "seconds": round(time.perf_counter() - t0, 1), **score(student, test),
                "recoveries": len(srec["recoveries"]), "prior_used": srec["light_prior"]["used"],
                "truncated": state.pop("truncated", None)})


def run_checks(items: list[str], seed: int, out: Path) -> None:
    import torch
    from pnrelight.rti import neural
    from pnrelight.rti.fit import fit_linear

    torch.set_num_threads(1)
    for item in items:
        train, test = load_item(item)
        _emit(out, {"item": item, "model": "hsh-9", **score(fit_linear(train, "hsh", 9, "rgb"), test)})
        check = neural.light_prior_check(train, seed=seed, threads=1)
        _emit(out, {"item": item, "seed": seed, "model": "check", **{k: v for k, v in check.items()}})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", nargs="+", default=ITEMS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--priors", nargs="+", default=["hsh9", "none"])
    ap.add_argument("--skip", nargs="*", default=[], help="item:seed:prior chains not to run")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--check-jobs", type=int, default=1)
    ap.add_argument("--teacher-deadline", type=float, default=1e9, help="seconds after start")
    ap.add_argument("--deadline", type=float, default=1e9, help="seconds after start")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "rti_prior.jsonl")
    a = ap.parse_args(argv)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    chains = [(i, s, p) for s in a.seeds for p in a.priors for i in a.items if f"{i}:{s}:{p}" not in a.skip]
    batches = [a.items[k::a.check_jobs] for k in range(a.check_jobs)] if a.check_jobs else []
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(chains) + len(batches), mp_context=ctx) as pool:
        futures = [pool.submit(run_chain, i, s, p, a.device, (start + a.teacher_deadline, start + a.deadline), a.out)
                   for i, s, p in chains]
        futures += [pool.submit(run_checks, b, a.seeds[0], a.out) for b in batches if b]
        for f in futures:
            try:
                f.result()
            except Exception as e:  # keep the other rows
                print(f"job failed: {e!r}", flush=True)
    print(f"done in {time.time() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
