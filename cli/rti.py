"""``pnrelight rti``: fit, distill, relight and evaluate RTI models."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from pnrelight.errors import InputError
from pnrelight.progress import progress


def tiles_help() -> str:
    from pnrelight.formats.rti_folder import AUTO_DEEPZOOM_SIDE

    return (f"write the planes as DeepZoom tile pyramids (plane_N.dzi, OpenLIME layout 'deepzoom'); "
            f"default: only when a side exceeds {AUTO_DEEPZOOM_SIDE} px")


def plane_layout(args) -> str:
    """save_model's layout for a command with --tiles: forced deepzoom, else auto."""
    return "deepzoom" if getattr(args, "tiles", False) else "auto"


def register(sub) -> None:
    rti = sub.add_parser("rti", help="reflectance transformation imaging: PTM, HSH, NeuralRTI, DisK student",
                         description="Fit, distill, relight and evaluate RTI models of multi-light image collections.")
    rsub = rti.add_subparsers(dest="rti_command", metavar="ACTION", parser_class=sub._parser_class)
    rsub.required = True

    fit = rsub.add_parser("fit", help="fit a model to an MLIC folder (images + .lp file)",
                          description="Fit PTM, LRGB-PTM, HSH or a NeuralRTI teacher to an MLIC folder and write a model folder.")
    fit.add_argument("mlic", type=Path, help="folder with the images, one .lp light file and optional mask.png")
    fit.add_argument("--basis", choices=["ptm", "lptm", "hsh", "lhsh", "neural"], required=True)
    fit.add_argument("--terms", type=int, choices=[4, 9, 16], help="HSH terms (default 9)")
    fit.add_argument("--holdout", type=int, metavar="K", help="keep every K-th light out of training and report PSNR/SSIM on them")
    fit.add_argument("--epochs", type=int, help="neural: training epochs (default: the trainer's)")
    fit.add_argument("--hidden", type=_widths, default=None,
                     help="neural: decoder hidden widths (default 50,50, NeuralRTI's reference; a stronger teacher "
                          "for rti distill, e.g. 128,128,128, is slower and only for distillation)")
    fit.add_argument("--device", default="cpu", help="neural: torch device, cpu (default), cuda or auto")
    _add_light_prior(fit, "neural: ", "by a short held-light check")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--quality", type=int, default=98, help="JPEG quality of the coefficient planes")
    fit.add_argument("--precision", choices=["auto", "float32", "float16"], default="auto",
                     help="ptm/hsh: coefficients held and saved in coefficients.npy as (auto: float16 above 1 GiB of float32)")
    fit.add_argument("--tiles", action="store_true", help=tiles_help())
    fit.add_argument("-o", "--output", type=Path, required=True, help="model folder to write")
    fit.set_defaults(handler=cmd_fit)

    dis = rsub.add_parser("distill", help="distill a NeuralRTI teacher into a small student decoder (DisK-NeuralRTI)",
                          description="Train a student (own encoder, small decoder) with alpha*MSE(ground truth) + (1-alpha)*MSE(teacher).")
    dis.add_argument("teacher", type=Path, help="teacher model folder (from 'rti fit --basis neural')")
    dis.add_argument("mlic", type=Path, help="the MLIC folder the teacher was trained on")
    dis.add_argument("--hidden", type=_widths, default=(20, 20), help="student decoder hidden widths (default 20,20)")
    dis.add_argument("--alpha", type=float, default=0.3, help="weight of the ground-truth loss (default 0.3)")
    dis.add_argument("--epochs", type=int)
    dis.add_argument("--device", default="cpu", help="torch device, cpu (default), cuda or auto")
    _add_light_prior(dis, "", "as the teacher did")
    dis.add_argument("--holdout", type=int, metavar="K", help="keep every K-th light out (use the teacher's K)")
    dis.add_argument("--seed", type=int, default=0)
    dis.add_argument("--quality", type=int, default=98)
    dis.add_argument("--tiles", action="store_true", help=tiles_help())
    dis.add_argument("-o", "--output", type=Path, required=True)
    dis.set_defaults(handler=cmd_distill)

    rel = rsub.add_parser("relight", help="render a model under new light directions",
                          description="Relight a model folder: one PNG for --light, a folder of PNGs for --lights.")
    rel.add_argument("model", type=Path, help="model folder (info.json + planes), .ptm or .rti file")
    grp = rel.add_mutually_exclusive_group(required=True)
    grp.add_argument("--light", type=float, nargs="+", metavar="L", help="LX LY [LZ] (LZ completed to a unit vector when omitted)")
    grp.add_argument("--lights", type=Path, metavar="FILE.lp", help="an .lp file of light directions")
    rel.add_argument("--planes", action="store_true", help="use the 8-bit planes (what a web viewer sees) instead of exact coefficients")
    rel.add_argument("-o", "--output", type=Path, required=True, help="PNG file (--light) or folder (--lights)")
    rel.set_defaults(handler=cmd_relight)

    ev = rsub.add_parser("eval", help="PSNR/SSIM of a model against held-out images",
                         description="Relight the model under each light of TEST_DIR and compare (inside the mask when there is one).")
    ev.add_argument("model", type=Path, help="model folder, .ptm or .rti file")
    ev.add_argument("test", type=Path, help="MLIC folder of held-out images with their .lp file")
    ev.add_argument("--json", type=Path, help="write {'mean': {...}, 'lights': [...]} here")
    ev.set_defaults(handler=cmd_eval)

    conv = rsub.add_parser("convert", help="convert between model folders and legacy .ptm/.rti files",
                           description="Convert a model folder or an RTIBuilder/RTIViewer .ptm/.rti file into a model folder, "
                                       "a .ptm (PTM models) or a .rti (HSH models).")
    conv.add_argument("source", type=Path, help="model folder, .ptm or .rti file")
    conv.add_argument("-o", "--output", type=Path, required=True,
                      help="FILE.ptm, FILE.rti, or a model folder (any other name)")
    conv.add_argument("--quality", type=int, default=98, help="JPEG quality of the coefficient planes (folder output)")
    conv.add_argument("--tiles", action="store_true", help=tiles_help())
    conv.set_defaults(handler=cmd_convert)


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of widths like 20,20") from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError("hidden widths must be positive integers, e.g. 20,20")
    return widths


# ----------------------------------------------------------------------------- helpers

def split_holdout(mlic, k: int | None):
    """(train, heldout or None): every k-th light (1-based k, k, 2k, ...) is held out."""
    if not k:
        return mlic, None
    if k < 2:
        raise InputError(f"--holdout {k} would hold out every light (use K >= 2)")
    out = np.arange(len(mlic.names)) % k == k - 1
    return mlic.split(out)  # views, not copies: the images are reordered in place


def _load_mlic(folder: Path, min_lights: int = 1):
    from pnrelight.formats.mlic import load_mlic

    return load_mlic(folder, min_lights=min_lights, progress=progress)


ENCODER_FILE = "encoder.npz"


def _save_with_preview(model, output: Path, quality: int, layout: str = "auto") -> None:
    """Write the model folder, its preview and (neural) the encoder weights beside info.json."""
    from pnrelight.formats.rti_folder import save_model
    from pnrelight.imageio import write_image
    from pnrelight.rti.preview import preview_strip

    extra = {"preview.png": lambda p: write_image(p, preview_strip(model))}
    training = model.meta.get("training") or {}
    encoder = training.pop("encoder", None)
    if encoder is not None:  # ~70k floats: kept out of info.json, which web viewers download
        arrays = {f"w{i}": np.asarray(w, np.float32) for i, (w, _) in enumerate(encoder)}
        arrays.update({f"b{i}": np.asarray(b, np.float32) for i, (_, b) in enumerate(encoder)})
        extra[ENCODER_FILE] = lambda p: np.savez(p, **arrays)
        training["encoder_file"] = ENCODER_FILE
    save_model(model, output, quality=quality, extra_files=extra, layout=layout)


def _load_encoder(folder: Path):
    """Encoder layers [(W, b), ...] saved by _save_with_preview, or None."""
    path = folder / ENCODER_FILE
    if not path.is_file():
        return None
    with np.load(path) as data:
        return [(data[f"w{i}"].astype(np.float64), data[f"b{i}"].astype(np.float64)) for i in range(len(data.files) // 2)]


def _add_light_prior(parser, prefix: str, auto: str) -> None:
    """The --light-prior option of the neural trainers (pnrelight.rti.neural.LIGHT_PRIORS)."""
    parser.add_argument("--light-prior", choices=["auto", "hsh9", "none"], default="auto",
                        help=f"{prefix}also train on an HSH-9 fit's relighting at virtual lights in the gaps between the "
                             f"captured ones (hsh9), on the captured lights alone (none), or decide per capture {auto} "
                             "(auto, default: docs/neural_training.md)")


def _report_training(role: str, record: dict) -> None:
    """One stderr line per divergence recovered, per retry, and the HSH-9 guard's warning."""
    attempts = record.get("attempts") or []
    for a in attempts:
        for r in a["recoveries"]:
            print(f"pnrelight: {role} (seed {a['seed']}) diverged at round {r['round']} ({r['reason']}); rolled back "
                  f"to round {r['rolled_back_to_round']}, learning rate capped at {r['lr_cap']:.3g}", file=sys.stderr)
    if len(attempts) > 1:
        print(f"pnrelight: {role} retried from scratch (seed {attempts[1]['seed']}, rate {attempts[1]['lr']:.3g}): "
              f"the first attempt {attempts[1]['retry_reason']}; the better one is kept", file=sys.stderr)
    prior = record.get("light_prior") or {}
    check = prior.get("check") or {}
    if prior.get("used"):
        how = {"teacher": "as the teacher", "check": "chosen by the held-light check", "setting": "as asked"}[prior["decided_by"]]
        print(f"pnrelight: {role} also trained on HSH-9 at {prior['virtual_lights']} virtual lights ({how})", file=sys.stderr)
    if "mse_none" in check:
        print(f"pnrelight: light-prior check on {check['held_lights']} held lights: MSE {check['mse_none']:.3g} "
              f"without, {check['mse_prior']:.3g} with the prior, {check['mse_hsh9']:.3g} HSH-9 -> "
              f"{'prior' if check['use_prior'] else 'no prior'}", file=sys.stderr)
    if record.get("warning"):
        print(f"pnrelight: warning: {record['warning']}", file=sys.stderr)


def _report_holdout(model, heldout) -> None:
    if heldout is None:
        return
    from pnrelight.rti.evaluate import evaluate, format_table

    report = evaluate(model, heldout, progress=progress)
    model.meta["holdout"] = report
    print(format_table(report, f"held-out lights ({len(heldout.names)}):"))


# ----------------------------------------------------------------------------- commands

def cmd_fit(args) -> int:
    basis = args.basis
    if basis in ("ptm", "lptm") and args.terms not in (None, 6):
        raise InputError("PTM has 6 terms per channel; drop --terms for ptm/lptm")
    mlic = _load_mlic(args.mlic)
    train, heldout = split_holdout(mlic, args.holdout)  # the fitters check there are enough lights left
    start = time.perf_counter()
    if basis == "neural":
        from pnrelight.rti import neural

        kwargs = {"seed": args.seed, "progress": progress, "device": args.device, "light_prior": args.light_prior}
        if args.epochs:
            kwargs["epochs"] = args.epochs
        if args.hidden:
            kwargs["hidden"] = args.hidden
        model, record = neural.train_teacher(train, **kwargs)
        _report_training("teacher", record)
        model.meta.update({"role": "teacher", "training": record})
    else:
        from pnrelight.rti.fit import fit_linear

        luminance = basis.startswith("l")  # lptm, lhsh
        kind = basis[1:] if luminance else basis
        colorspace = "lrgb" if luminance else "rgb"
        dtype = None if args.precision == "auto" else args.precision
        model = fit_linear(train, kind, args.terms if kind == "hsh" else None, colorspace, dtype=dtype, progress=progress)
    model.meta.update({"seed": args.seed, "fit_seconds": round(time.perf_counter() - start, 3), "source": str(args.mlic),
                       "holdout_every": args.holdout, "train_lights": train.names})
    _report_holdout(model, heldout)
    del mlic, train, heldout  # free the collection before the export (a 24 MP capture is GBs)
    _save_with_preview(model, args.output, args.quality, plane_layout(args))
    print(f"wrote {model.label} model to {args.output} ({model.meta['fit_seconds']:.1f} s)")
    return 0


def cmd_distill(args) -> int:
    from pnrelight.formats.rti_folder import load_model
    from pnrelight.rti import neural

    teacher = load_model(args.teacher)
    if teacher.kind != "neural":
        raise InputError(f"{args.teacher} is a {teacher.kind} model; distillation needs a neural teacher (fit one with --basis neural)")
    mlic = _load_mlic(args.mlic)  # distill_student checks alpha and that the sizes match the teacher
    holdout = args.holdout if args.holdout is not None else teacher.meta.get("holdout_every")
    train, heldout = split_holdout(mlic, holdout)
    kwargs = {"hidden": args.hidden, "alpha": args.alpha, "seed": args.seed, "progress": progress, "device": args.device,
              "light_prior": args.light_prior}
    encoder = _load_encoder(args.teacher)
    if encoder is not None:
        teacher.meta.setdefault("training", {})["encoder"] = encoder  # starts the student's encoder
    if args.epochs:
        kwargs["epochs"] = args.epochs
    start = time.perf_counter()
    student, record = neural.distill_student(teacher, train, **kwargs)
    _report_training("student", record)
    student.meta.update({"role": "student", "training": record, "teacher": str(args.teacher), "alpha": args.alpha,
                         "seed": args.seed, "fit_seconds": round(time.perf_counter() - start, 3), "holdout_every": holdout})
    _report_holdout(student, heldout)
    _save_with_preview(student, args.output, args.quality, plane_layout(args))
    from pnrelight.rti.mlp import decoder_parameters

    print(f"wrote {student.label} student to {args.output}: decoder {decoder_parameters(student.layers)} parameters "
          f"vs teacher {decoder_parameters(teacher.layers)}")
    return 0


def cmd_relight(args) -> int:
    from pnrelight.atomic import atomic_output_dir
    from pnrelight.formats.rti_folder import load_model
    from pnrelight.imageio import write_image
    from pnrelight.lights import direction_from_xy, normalize_directions
    from pnrelight.rti.model import relight

    model = load_model(args.model, source="planes" if args.planes else "auto")
    if args.light is not None:
        if len(args.light) not in (2, 3):
            raise InputError("--light takes LX LY or LX LY LZ")
        light = direction_from_xy(*args.light) if len(args.light) == 2 else normalize_directions(np.array(args.light))[0]
        if args.output.suffix.lower() not in (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".exr"):
            raise InputError(f"output {args.output} needs an image suffix such as .png")
        write_image(args.output, relight(model, light, clip=args.output.suffix.lower() != ".exr"))
        print(f"wrote {args.output}")
        return 0
    from pnrelight.formats.lp import read_lp, write_lp

    lp = read_lp(args.lights)
    with atomic_output_dir(args.output) as tmp:
        names = []
        for i, d in enumerate(progress(lp.directions, total=len(lp.directions), desc="relighting")):
            name = f"{Path(lp.names[i]).stem}.png"
            write_image(tmp / name, relight(model, d))
            names.append(name)
        write_lp(tmp / "dirs.lp", names, lp.directions)
    print(f"wrote {len(names)} images to {args.output}")
    return 0


def cmd_eval(args) -> int:
    from pnrelight.formats.mlic import open_mlic
    from pnrelight.formats.rti_folder import load_model
    from pnrelight.rti.evaluate import evaluate, format_table

    model = load_model(args.model)
    test = open_mlic(args.test)  # one test image in memory at a time
    report = evaluate(model, test, progress=progress)
    print(format_table(report, f"{model.label} on {args.test}:"))
    if args.json:
        from pnrelight.atomic import atomic_output_file

        with atomic_output_file(args.json) as tmp:
            tmp.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


def cmd_convert(args) -> int:
    from pnrelight.formats.legacy_rti import LEGACY_SUFFIXES, write_legacy
    from pnrelight.formats.rti_folder import load_model

    model = load_model(args.source)
    if args.output.suffix.lower() in LEGACY_SUFFIXES:
        write_legacy(model, args.output)  # refuses what the format cannot hold, before writing anything
    else:
        _save_with_preview(model, args.output, args.quality, plane_layout(args))
    print(f"wrote {model.label} model to {args.output}")
    return 0
