"""RTI model folders: ``info.json`` + coefficient planes, three coefficients per 8-bit JPEG.

Written so that the folders load unchanged in the OpenLIME web viewer and in
cnr-isti-vclab/relight, and read back folders written by relight (ptm, hsh) and by the
NeuralRTI exporters. See docs/model_folder.md for the full description.

* ptm / hsh (relight layout): planes ``plane_0.jpg`` .. ``plane_{J-1}.jpg``; ``materials[0]``
  holds per-plane ``scale`` and ``bias`` with coefficient = (byte/255 - bias) · scale.
* neural (OpenLIME layout): latent planes ``plane_1.jpg`` .. ``plane_3.jpg`` (9 coefficients),
  per-plane ``min``/``max`` (coefficient = byte/255 · (max - min) + min), decoder
  ``weights``/``biases`` as flat [out][in] lists with widths padded to multiples of 4,
  ``samples`` = padded hidden width, ``planes`` = 9.
* ``coefficients.npy`` (ours): the exact float32 coefficients, for lossless round trips.
* layout: each plane is ``plane_N.jpg`` ("image") or a DeepZoom pyramid ``plane_N.dzi`` +
  ``plane_N_files/`` ("deepzoom", :mod:`pnrelight.formats.deepzoom`), chosen by ``save_model``'s
  ``layout``; readers take whichever is present (the .jpg first).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..imageio import read_image, to_uint8, write_image
from ..rti.model import RTIModel, check_model
from . import deepzoom
from .legacy_rti import is_legacy_path, read_legacy

EXACT_FILE = "coefficients.npy"
MASK_FILE = "mask.png"
JPEG_QUALITY = 98
LAYOUTS = ("image", "deepzoom", "auto")
# "auto" tiles images with a side over 4096 px: the largest texture many (mobile) GPUs accept,
# and a single JPEG that size is a long first download for a web viewer.
AUTO_DEEPZOOM_SIDE = 4096


def choose_layout(layout: str, width: int, height: int) -> str:
    """"image" or "deepzoom" for a ``width`` x ``height`` model; "auto" tiles above AUTO_DEEPZOOM_SIDE."""
    if layout not in LAYOUTS:
        raise InputError(f"unknown plane layout {layout!r} (use one of {', '.join(LAYOUTS)})")
    if layout == "auto":
        return "deepzoom" if max(width, height) > AUTO_DEEPZOOM_SIDE else "image"
    return layout


def _pad4(n: int) -> int:
    return (n + 3) // 4 * 4


# ----------------------------------------------------------------------------- writing

def save_model(model: RTIModel, folder: str | os.PathLike, *, quality: int = JPEG_QUALITY, extra_files: dict | None = None,
               layout: str = "auto", tile_size: int = deepzoom.TILE_SIZE, overlap: int = deepzoom.OVERLAP) -> Path:
    """Write ``model`` as a model folder (atomically: a temporary folder renamed at the end).

    extra_files : optional {name: callable(path)} writing more files (previews) into the folder.
    layout : "image" (``plane_N.jpg``), "deepzoom" (``plane_N.dzi`` pyramids of ``tile_size``
        tiles with ``overlap``, what OpenLIME's ``layout: "deepzoom"`` reads) or "auto"
        (deepzoom when a side exceeds AUTO_DEEPZOOM_SIDE).
    """
    from ..atomic import atomic_output_dir

    check_model(model)
    folder = Path(folder)
    plane_layout = choose_layout(layout, model.shape[1], model.shape[0])
    tiling = {"layout": plane_layout}
    if plane_layout == "deepzoom":
        tiling.update(tile_size=int(tile_size), overlap=int(overlap))
    with atomic_output_dir(folder) as tmp:
        if model.kind == "neural":
            info = _write_neural(model, tmp, quality, tiling)
        else:
            info = _write_linear(model, tmp, quality, tiling)
        save_exact(tmp / EXACT_FILE, model.coefficients)
        if model.mask is not None:
            write_image(tmp / MASK_FILE, model.mask.astype(np.float32))
        meta = {k: v for k, v in model.meta.items() if k not in ("layout", "tile_size", "overlap")}  # from a loaded folder
        info["pnrelight"] = {**meta, "exact": EXACT_FILE, "terms": int(model.terms), "label": model.label,
                             "mask": MASK_FILE if model.mask is not None else None, **tiling}
        (tmp / "info.json").write_text(json.dumps(info, indent=1, default=_json_default), encoding="utf-8")
        for name, writer in (extra_files or {}).items():
            writer(tmp / name)
    return folder


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def _write_planes(planes_u8: np.ndarray, folder: Path, first_index: int, quality: int, tiling: dict) -> list[str]:
    """planes_u8: (H, W, C) uint8 with C a multiple of 3 -> plane_{i}.jpg files or plane_{i}.dzi pyramids."""
    names = []
    for j in range(planes_u8.shape[2] // 3):
        stem = f"plane_{first_index + j}"
        rgb = planes_u8[..., 3 * j:3 * j + 3]
        if tiling["layout"] == "deepzoom":
            path = deepzoom.write_dzi(np.ascontiguousarray(rgb), folder, stem, tile_size=tiling["tile_size"],
                                      overlap=tiling["overlap"], quality=quality)
        else:
            path = write_image(folder / f"{stem}.jpg", rgb, quality=quality)
        names.append(path.name)
    return names


ROW_CHUNK_VALUES = 1 << 22  # float64 values of one row chunk while quantising (32 MB)


def _row_chunks(values: np.ndarray):
    """Row slices of (H, W, C) ``values`` of about ROW_CHUNK_VALUES values each."""
    h = values.shape[0]
    step = max(1, ROW_CHUNK_VALUES // max(1, values[0].size))
    return [slice(y, min(h, y + step)) for y in range(0, h, step)]


def plane_min_max(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-plane (min (C,), max (C,)) float64 of (H, W, C) ``values``, row chunk by row chunk."""
    c = values.shape[-1]
    lo, hi = np.full(c, np.inf), np.full(c, -np.inf)
    for rows in _row_chunks(values):
        part = values[rows].reshape(-1, c)
        lo = np.minimum(lo, part.min(axis=0))
        hi = np.maximum(hi, part.max(axis=0))
    return lo, hi


def save_exact(path: Path, values: np.ndarray) -> None:
    """``coefficients.npy``: (H, W, C) float32 or float16 as held, written row chunk by row chunk
    (no full-size copy; other dtypes become float32 chunk by chunk)."""
    dtype = values.dtype if values.dtype in (np.float32, np.float16) else np.dtype(np.float32)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(values.shape)}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for rows in _row_chunks(values):
            np.ascontiguousarray(values[rows], dtype).tofile(f)


def _write_linear(model: RTIModel, folder: Path, quality: int, tiling: dict) -> dict:
    h, w = model.shape
    coeffs = model.coefficients
    nplanes = coeffs.shape[2]
    lo, hi = plane_min_max(coeffs)
    scale = np.maximum(hi - lo, 1e-8)
    bias = -lo / scale
    if model.colorspace == "lrgb":  # relight multiplies by the raw colour bytes: keep them unscaled
        scale[:3], bias[:3] = 1.0, 0.0
    plane = np.zeros((h, w, 3), np.uint8)  # one JPEG's three planes at a time
    for j in range((nplanes + 2) // 3):
        p = slice(3 * j, min(nplanes, 3 * j + 3))
        k = p.stop - p.start
        plane[..., k:] = 0  # the last JPEG may hold fewer than three planes
        for rows in _row_chunks(coeffs):
            plane[rows, :, :k] = to_uint8(coeffs[rows, :, p].astype(np.float64) / scale[p] + bias[p])
        _write_planes(plane, folder, j, quality, tiling)
    return {
        "width": w, "height": h, "format": "jpg", "type": model.kind, "colorspace": model.colorspace,
        "nplanes": int(nplanes), "quality": quality,
        "materials": [{"scale": scale.tolist(), "bias": bias.tolist(), "range": (hi - lo).tolist()}],
    }


def quantize_min_max(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The neural planes' 8-bit encoding, per coefficient over its [min, max].

    values : (H, W, C). Returns (codes (H, W, C) uint8, lo (C,), span (C,) float64);
    a coefficient reads back as lo + span · code / 255. Quantised row chunk by row chunk.
    """
    values = np.asarray(values)
    lo, hi = plane_min_max(values)
    span = np.maximum(hi - lo, 1e-8)
    codes = np.empty(values.shape, np.uint8)
    for rows in _row_chunks(values):
        codes[rows] = to_uint8((values[rows].astype(np.float64) - lo) / span)
    return codes, lo, span


def _write_neural(model: RTIModel, folder: Path, quality: int, tiling: dict) -> dict:
    h, w = model.shape
    k = model.coefficients.shape[2]
    kp = (k + 2) // 3 * 3
    planes = np.zeros((h, w, kp), np.uint8)
    planes[..., :k], lo, span = quantize_min_max(model.coefficients)
    _write_planes(planes, folder, 1, quality, tiling)
    lo_p = np.zeros(kp); lo_p[:k] = lo
    hi_p = np.ones(kp); hi_p[:k] = lo + span
    layers = [(np.asarray(wt, np.float64), np.asarray(b, np.float64)) for wt, b in model.layers]
    widths = [wt.shape[0] for wt, _ in layers[:-1]]
    n = _pad4(max(widths))
    c = _pad4(k + 2)
    weights, biases = [], []
    in_width = c
    for i, (wt, b) in enumerate(layers):
        out = 3 if i == len(layers) - 1 else n
        pw = np.zeros((out, in_width)); pw[:wt.shape[0], :wt.shape[1]] = wt
        pb = np.zeros(out); pb[:b.shape[0]] = b
        weights.append(pw.ravel().tolist()); biases.append(pb.tolist())
        in_width = n
    openlime_ok = len(layers) == 3 and k == 9 and model.layers[-1][0].shape[0] == 3
    return {
        "width": w, "height": h, "format": "jpg", "type": "neural", "colorspace": "rgb",
        "planes": int(k), "samples": int(n), "quality": quality,
        "min": lo_p.reshape(-1, 3).tolist(), "max": hi_p.reshape(-1, 3).tolist(),
        "weights": weights, "biases": biases,
        "hidden": widths, "openlime_compatible": bool(openlime_ok),
    }


# ----------------------------------------------------------------------------- reading

def read_info(folder: str | os.PathLike) -> tuple[Path, dict]:
    """Locate and parse ``info.json`` (``folder`` may be the folder or the json file itself)."""
    path = Path(folder)
    if path.is_file() and path.suffix.lower() == ".json":
        info_path = path
    else:
        info_path = path / "info.json"
    if not info_path.is_file():
        raise InputError(f"no info.json in {path} (give an RTI model folder written by 'pnrelight rti fit', relight or a NeuralRTI exporter)")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{info_path} is not valid JSON ({exc}); re-export the model") from None
    if not isinstance(info, dict) or "type" not in info:
        raise InputError(f"{info_path} has no 'type' (expected ptm, hsh or neural)")
    return info_path.parent, info


def load_model(folder: str | os.PathLike, *, source: str = "auto", read_plane=None) -> RTIModel:
    """Read a model folder, or a legacy ``.ptm``/``.rti`` file (:mod:`pnrelight.formats.legacy_rti`;
    ``source`` and ``read_plane`` do not apply to those: they hold only their 8-bit coefficients).

    source : "auto" (exact coefficients when present, else planes), "planes" (the 8-bit
        JPEG planes, as a web viewer sees them) or "exact".
    read_plane : optional image reader ``path -> (H, W[, C]) float32 in [0, 1]`` used for the
        planes (each tile of a DeepZoom plane) and the mask instead of
        :func:`pnrelight.imageio.read_image` (Blender passes its own image loader, so the add-on
        needs no Pillow).
    """
    if is_legacy_path(folder):  # RTIBuilder/RTIViewer .ptm/.rti: already 8-bit, no planes or reader involved
        return read_legacy(folder)
    read_plane = read_plane or read_image
    folder, info = read_info(folder)
    kind = str(info["type"]).lower()
    meta = dict(info.get("pnrelight") or {})
    if kind in ("ptm", "hsh"):
        model = _read_linear(folder, info, kind, source, read_plane)
    elif kind == "neural":
        model = _read_neural(folder, info, source, read_plane)
    else:
        raise InputError(f"{folder / 'info.json'}: unsupported model type {kind!r} (supported: ptm, hsh, neural)")
    mask_name = meta.get("mask")
    if mask_name and (folder / mask_name).is_file():
        m = read_plane(folder / mask_name)
        model.mask = (m if m.ndim == 2 else m.mean(axis=2)) > 0.5
    model.meta = meta
    check_model(model)
    return model


def _load_plane_images(folder: Path, stems: list[str], width: int | None, height: int | None, read_plane=read_image) -> np.ndarray:
    """Planes ``stem.jpg`` or, when absent, DeepZoom ``stem.dzi`` -> (H, W, 3·len(stems)) float32 byte/255."""
    arrays = []
    for stem in stems:
        path = folder / f"{stem}.jpg"
        dzi = folder / f"{stem}{deepzoom.DZI_SUFFIX}"
        if path.is_file():
            img = read_plane(path)
        elif dzi.is_file():
            tiles = deepzoom.read_dzi(dzi, read_tile=None if read_plane is read_image else read_plane)
            img = tiles.astype(np.float32) / np.float32(255)
        else:
            raise InputError(f"coefficient plane {stem}.jpg is missing from {folder}, nor is there a {stem}.dzi (re-export the model folder)")
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        arrays.append(img)
    planes = np.concatenate(arrays, axis=2)
    if width and height and planes.shape[:2] != (height, width):
        raise InputError(f"planes in {folder} are {planes.shape[1]}x{planes.shape[0]} but info.json says {width}x{height}")
    return planes  # values byte/255


def _exact(folder: Path, info: dict, source: str):
    meta = info.get("pnrelight") or {}
    name = meta.get("exact")
    path = folder / name if name else None
    if source == "exact" and (path is None or not path.is_file()):
        raise InputError(f"{folder} has no exact coefficient file (use the JPEG planes)")
    if source in ("auto", "exact") and path is not None and path.is_file():
        coeffs = np.load(path)
        return coeffs if coeffs.dtype in (np.float32, np.float16) else coeffs.astype(np.float32)  # float16 stays (large fits)
    return None


def _read_linear(folder: Path, info: dict, kind: str, source: str, read_plane=read_image) -> RTIModel:
    colorspace = str(info.get("colorspace", "rgb")).lower()
    if colorspace not in ("rgb", "lrgb"):
        raise InputError(f"{folder}: colorspace {colorspace!r} is not supported for {kind} (supported: rgb, lrgb)")
    try:
        nplanes = int(info["nplanes"])
    except (KeyError, ValueError, TypeError):
        raise InputError(f"{folder / 'info.json'} lacks 'nplanes' (re-export the model)") from None
    terms = nplanes // 3 if colorspace == "rgb" else nplanes - 3
    if kind == "ptm" and terms != 6:
        raise InputError(f"{folder}: PTM needs 6 terms per channel, info.json implies {terms} (re-export as ptm with 18 rgb or 9 lrgb planes)")
    if kind == "hsh" and terms not in (4, 9, 16):
        raise InputError(f"{folder}: {terms} HSH terms are not supported (4, 9 or 16; more coefficients than supported)")
    coeffs = _exact(folder, info, source)
    if coeffs is None:
        mats = info.get("materials") or [{}]
        scale = np.asarray(mats[0].get("scale", [1.0] * nplanes), np.float64)
        bias = np.asarray(mats[0].get("bias", [0.0] * nplanes), np.float64)
        if scale.size < nplanes or bias.size < nplanes:
            raise InputError(f"{folder / 'info.json'}: materials[0] scale/bias need {nplanes} values")
        njpegs = (nplanes + 2) // 3
        planes = _load_plane_images(folder, [f"plane_{j}" for j in range(njpegs)], info.get("width"), info.get("height"), read_plane)
        coeffs = ((planes[..., :nplanes] - bias[:nplanes]) * scale[:nplanes]).astype(np.float32)
    return RTIModel(kind=kind, colorspace=colorspace, coefficients=coeffs, terms=terms)


def _read_neural(folder: Path, info: dict, source: str, read_plane=read_image) -> RTIModel:
    for key in ("weights", "biases", "min", "max"):
        if key not in info:
            raise InputError(f"{folder / 'info.json'} lacks {key!r} (a neural model needs weights, biases, min and max)")
    k = int(info.get("planes", 9))
    if k > 9:
        raise InputError(f"{folder}: {k} latent coefficients are not supported (at most 9, as OpenLIME)")
    n = int(info.get("samples", 0)) or None
    colorspace = str(info.get("colorspace", "rgb")).lower()
    if sorted(colorspace) != sorted("rgb"):
        raise InputError(f"{folder}: neural colorspace {colorspace!r} is not supported (rgb or bgr)")
    order = ["rgb".index(ch) for ch in colorspace]  # swizzle applied by OpenLIME on read and on output
    where = f"{folder / 'info.json'}"
    try:
        weights = [np.asarray(w, np.float64).ravel() for w in info["weights"]]
        biases = [np.asarray(b, np.float64).ravel() for b in info["biases"]]
    except (TypeError, ValueError):
        raise InputError(f"{where}: 'weights' and 'biases' must be lists of numbers (re-export the model)") from None
    if not weights or len(weights) != len(biases):
        raise InputError(f"{where}: {len(weights)} weight arrays but {len(biases)} bias arrays (re-export the model)")
    layers = []
    for i, (w, b) in enumerate(zip(weights, biases)):
        out = b.size
        inputs = (k + 2) if i == 0 else layers[-1][0].shape[0]
        expected = out * (_pad4(inputs) if i == 0 else inputs)
        if out == 0 or (w.size != expected and not (i == 0 and w.size == out * inputs)):
            raise InputError(f"{where}: layer {i + 1} has {w.size} weights, but {out} outputs x {inputs} inputs need "
                             f"{expected} (the weight arrays do not match the widths; re-export the model)")
        layers.append([w.reshape(out, w.size // out), b])
    if layers[-1][0].shape[0] != 3:
        raise InputError(f"{where}: the last layer has {layers[-1][0].shape[0]} outputs, not 3 (RGB)")
    layers = _prune_dead_units(layers)
    coeffs = _exact(folder, info, source)
    if coeffs is None:
        kp = (k + 2) // 3 * 3
        planes = _load_plane_images(folder, [f"plane_{j}" for j in range(1, kp // 3 + 1)], info.get("width"), info.get("height"), read_plane)
        planes = planes.reshape(*planes.shape[:2], -1, 3)[..., order].reshape(*planes.shape[:2], -1)
        lo = np.asarray(info["min"], np.float64).ravel()
        hi = np.asarray(info["max"], np.float64).ravel()
        coeffs = (planes[..., :k] * (hi[:k] - lo[:k]) + lo[:k]).astype(np.float32)
    w_last, b_last = layers[-1]
    layers[-1] = [w_last[order], b_last[order]]
    layers = [(np.asarray(w, np.float32)[:, : (k + 2) if i == 0 else None], np.asarray(b, np.float32)) for i, (w, b) in enumerate(layers)]
    return RTIModel(kind="neural", colorspace="rgb", coefficients=coeffs, terms=k, layers=layers)


def _prune_dead_units(layers: list) -> list:
    """Drop hidden units with all-zero incoming weights and bias (OpenLIME padding): ELU(0) = 0."""
    for i in range(len(layers) - 1):
        w, b = layers[i]
        alive = np.any(w != 0, axis=1) | (b != 0)
        if alive.all():
            continue
        layers[i] = [w[alive], b[alive]]
        nw, nb = layers[i + 1]
        layers[i + 1] = [nw[:, alive], nb]
    return layers
