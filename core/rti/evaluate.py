"""Held-out evaluation of RTI models: PSNR/SSIM per light and their mean."""
from __future__ import annotations

import numpy as np

from ..formats.mlic import MLIC, LazyMLIC
from ..metrics import psnr, ssim
from .model import RTIModel, relight


def evaluate(model: RTIModel, test: MLIC | LazyMLIC, *, progress=None) -> dict:
    """Relight ``model`` under each test light and compare with the test image.

    One light at a time: with a :class:`LazyMLIC` (:func:`pnrelight.formats.mlic.open_mlic`)
    each test image is read when it is compared, so memory does not grow with the number of
    test lights (the model, one relit image, one test image and the metrics' row bands).

    Returns ``{"mean": {"psnr", "ssim"}, "lights": [{"name", "psnr", "ssim"}, ...]}``; the
    comparison is restricted to the test mask (else the model's mask) when there is one.
    """
    if test.shape != model.shape:
        from ..errors import InputError

        raise InputError(f"test images are {test.shape[1]}x{test.shape[0]} but the model is {model.shape[1]}x{model.shape[0]} (evaluate on images of the same capture)")
    mask = test.mask if test.mask is not None else model.mask
    rows = []
    it = range(len(test.names))
    if progress is not None:
        it = progress(it, total=len(test.names), desc="evaluating")
    for i in it:
        pred = relight(model, test.directions[i])
        ref = np.clip(test.image(i), 0.0, 1.0)
        rows.append({"name": test.names[i], "psnr": psnr(pred, ref, mask), "ssim": ssim(pred, ref, mask)})
    return {
        "mean": {"psnr": float(np.mean([r["psnr"] for r in rows])), "ssim": float(np.mean([r["ssim"] for r in rows]))},
        "lights": rows,
    }


def format_table(report: dict, title: str = "") -> str:
    """Plain-text table of an :func:`evaluate` report."""
    lines = [title] if title else []
    lines.append(f"{'light':<24} {'PSNR dB':>8} {'SSIM':>7}")
    for r in report["lights"]:
        lines.append(f"{r['name']:<24} {r['psnr']:>8.2f} {r['ssim']:>7.4f}")
    lines.append(f"{'mean':<24} {report['mean']['psnr']:>8.2f} {report['mean']['ssim']:>7.4f}")
    return "\n".join(lines)
