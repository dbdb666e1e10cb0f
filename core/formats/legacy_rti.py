"""Legacy RTI files of RTIBuilder / RTIViewer archives: ``.ptm`` (PTM) and ``.rti`` (HSH).

Both are 8-bit coefficient images with per-term scale and bias; see docs/legacy_formats.md
for the byte layouts. They map onto :class:`pnrelight.rti.model.RTIModel` exactly:

* ``.ptm`` (HP Labs, "PTM_1.2", also "PTM_1.1"): ``PTM_FORMAT_RGB`` and ``PTM_FORMAT_LRGB``.
  File terms a0..a5 multiply lu², lv², lu·lv, lu, lv, 1 (our order is 1, lx, ly, lx², lx·ly, ly²);
  a coefficient in 0..255 pixel units is (byte − bias)·scale, ours is that / 255. Rows are
  stored bottom to top.
* ``.rti`` (RTIBuilder's "#HSH1.2"): HSH with 4, 9 or 16 terms, rgb. A coefficient is
  byte/255·scale + bias, already in [0, 1] pixel units; per pixel the terms of R, then of G,
  then of B; rows top to bottom.

Readers check the magic, the header numbers and the file length and raise
:class:`pnrelight.errors.InputError` with one line; writers quantise per term and write atomically.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..rti.bases import HSH_TERMS, PTM_TERMS
from ..rti.model import RTIModel, check_model

LEGACY_SUFFIXES = (".ptm", ".rti")
PTM_VERSIONS = ("PTM_1.2", "PTM_1.1")
PTM_FORMATS = ("PTM_FORMAT_RGB", "PTM_FORMAT_LRGB")
# Our PTM term k (1, lx, ly, lx², lx·ly, ly²) is file term PTM_FILE_TERM[k] (a0..a5 = lu², lv², lu·lv, lu, lv, 1).
PTM_FILE_TERM = (5, 3, 4, 0, 2, 1)
HSH_MAGIC = "#HSH1.2"
RTI_TYPE_HSH = 3          # the .rti type line: 1 PTM, 2 SH, 3 HSH, 4 adaptive basis
HSH_BASIS_TYPE_RGB = 2    # RTIBuilder's "basis_type" for one fit per colour channel
HEADER_MAX = 4096         # headers are a few lines of text; never scan the binary part
ROWS_PER_CHUNK = 256      # rows converted at a time: real captures are tens of megapixels
SUPPORTED = "PTM_1.1/PTM_1.2 PTM_FORMAT_RGB and PTM_FORMAT_LRGB (.ptm), #HSH1.2 HSH rgb with 4, 9 or 16 terms (.rti)"


def is_legacy_path(path: str | os.PathLike) -> bool:
    """True when ``path`` names a .ptm/.rti file (by suffix; the readers check the content)."""
    path = Path(path)
    return path.suffix.lower() in LEGACY_SUFFIXES and not path.is_dir()


# ----------------------------------------------------------------------------- dispatch

def read_legacy(path: str | os.PathLike) -> RTIModel:
    """Read a .ptm or .rti file, recognised by its first bytes (.rti files may be named either way)."""
    path = Path(path)
    head = _read_head(path)
    if head.startswith(b"PTM_"):
        return read_ptm(path)
    if head.startswith(b"#"):  # RTIBuilder's "#HSH1.2"; the type line decides what it holds
        return read_hsh_rti(path)
    raise InputError(f"{path}: not a PTM or HSH file (it starts with {head[:12]!r}, expected 'PTM_1.2' or '#HSH1.2'; "
                     f"supported: {SUPPORTED})")


def write_legacy(model: RTIModel, path: str | os.PathLike) -> Path:
    """Write ``model`` as .ptm (PTM models) or .rti (HSH models), chosen by the suffix of ``path``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".ptm":
        return write_ptm(model, path)
    if suffix == ".rti":
        return write_hsh_rti(model, path)
    raise InputError(f"{path}: legacy files end in .ptm (PTM models) or .rti (HSH models)")


def _read_head(path: Path) -> bytes:
    if not path.is_file():
        raise InputError(f"{path}: no such file (give a .ptm or .rti file, or an RTI model folder)")
    try:
        with open(path, "rb") as f:
            return f.read(HEADER_MAX)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None


def _header_lines(head: bytes):
    """Yield (text line without its line ending, offset just after the line) over ``head``."""
    pos = 0
    while True:
        end = head.find(b"\n", pos)
        if end < 0:
            return
        yield head[pos:end].rstrip(b"\r").decode("latin-1"), end + 1
        pos = end + 1


def _numbers(tokens: list[str], what: str, path: Path, kind=float) -> list:
    try:
        values = [kind(t) for t in tokens]
    except ValueError:
        raise InputError(f"{path}: bad header, {what} must be numbers, found {' '.join(tokens)!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"{path}: bad header, {what} must be finite numbers, found {' '.join(tokens)!r}")
    return values


def _check_size(path: Path, width: int, height: int) -> None:
    if not (0 < width <= 1_000_000 and 0 < height <= 1_000_000):
        raise InputError(f"{path}: bad header, image size {width}x{height} (width and height must be positive)")


def _payload(path: Path, offset: int, expected: int) -> np.ndarray:
    """The coefficient bytes after the header, memory-mapped: (expected,) uint8; InputError when short."""
    size = path.stat().st_size
    if size < offset + expected:
        raise InputError(f"{path}: truncated: the header promises {expected} data bytes after the "
                         f"{offset}-byte header ({offset + expected} bytes in all) but the file has {size}")
    return np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=(expected,))


def _row_chunks(height: int):
    for y0 in range(0, height, ROWS_PER_CHUNK):
        yield y0, min(height, y0 + ROWS_PER_CHUNK)


def _write_file(path: Path, header: bytes, chunks) -> Path:
    """Header then the byte chunks, to a temporary name renamed onto ``path`` at the end."""
    from ..atomic import atomic_output_file

    with atomic_output_file(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(header)
            for chunk in chunks:
                f.write(np.ascontiguousarray(chunk, np.uint8).data)
    return path


def _check_finite(lo: np.ndarray, hi: np.ndarray, path: Path) -> None:
    """lo, hi: per-plane ranges (NaN and inf propagate into them)."""
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise InputError(f"cannot write {path}: the model has NaN or infinite coefficients (refit it)")


# ----------------------------------------------------------------------------- PTM

def read_ptm(path: str | os.PathLike) -> RTIModel:
    """Read a .ptm file (PTM_1.1/1.2, PTM_FORMAT_RGB or PTM_FORMAT_LRGB) -> RTIModel "ptm".

    rgb: (H, W, 18) term-major coefficients; lrgb: (H, W, 9), colour then 6 luminance terms.
    Row 0 of the model is the top of the image (the file's last row).
    """
    path = Path(path)
    head = _read_head(path)
    lines = _header_lines(head)
    version, _ = next(lines, ("", 0))
    version = version.strip()
    if not version.startswith("PTM_"):
        raise InputError(f"{path}: not a PTM file (first line {version[:20]!r}, expected 'PTM_1.2')")
    if version not in PTM_VERSIONS:
        raise InputError(f"{path}: PTM version {version!r} is not supported (supported: {', '.join(PTM_VERSIONS)})")
    fmt, _ = next(lines, ("", 0))
    fmt = fmt.strip()
    if fmt not in PTM_FORMATS:
        raise InputError(f"{path}: PTM format {fmt[:40]!r} is not supported (supported: {', '.join(PTM_FORMATS)}; "
                         "re-export JPEG-compressed PTMs uncompressed, e.g. with RTIBuilder)")
    tokens, offset = [], None
    for line, end in lines:  # width, height, 6 scales, 6 biases: one per line or several per line
        tokens += line.split()
        if len(tokens) >= 2 + 2 * PTM_TERMS:
            offset = end
            break
    if offset is None or len(tokens) != 2 + 2 * PTM_TERMS:
        raise InputError(f"{path}: bad PTM header, expected width, height, 6 scales and 6 biases on the lines "
                         f"after {fmt}, found {' '.join(tokens[:20])!r}")
    width, height = _numbers(tokens[:2], "width and height", path, int)
    _check_size(path, width, height)
    scale = np.array(_numbers(tokens[2:8], "the 6 scales", path), np.float64)
    bias = np.array(_numbers(tokens[8:14], "the 6 biases", path), np.float64)
    # (byte - bias) · scale is in 0..255 pixel units, ours are [0, 1]: one lookup table per file term
    luts = ((np.arange(256)[None, :] - bias[:, None]) * scale[:, None] / 255.0).astype(np.float32)  # (6, 256)
    lrgb = fmt == "PTM_FORMAT_LRGB"
    per_pixel = 9 if lrgb else 3 * PTM_TERMS
    data = _payload(path, offset, width * height * per_pixel)
    out = np.empty((height, width, per_pixel), np.float32)
    if lrgb:
        if version == "PTM_1.1":  # a0..a5 R G B interleaved per pixel
            coeffs = data.reshape(height, width, 9)[..., :6]
            colour = data.reshape(height, width, 9)[..., 6:]
        else:                     # a0..a5 per pixel for the whole image, then R G B per pixel
            coeffs = data[:width * height * 6].reshape(height, width, 6)
            colour = data[width * height * 6:].reshape(height, width, 3)
        for y0, y1 in _row_chunks(height):  # file row y is image row height-1-y
            dst = out[height - y1:height - y0][::-1]
            block = np.asarray(coeffs[y0:y1])
            dst[..., :3] = np.asarray(colour[y0:y1], np.float32) * np.float32(1 / 255)
            for k, j in enumerate(PTM_FILE_TERM):
                dst[..., 3 + k] = luts[j][block[..., j]]
    else:  # three blocks, R then G then B, each a0..a5 per pixel
        blocks = data.reshape(3, height, width, PTM_TERMS)
        for c in range(3):
            for y0, y1 in _row_chunks(height):
                dst = out[height - y1:height - y0][::-1]
                block = np.asarray(blocks[c, y0:y1])
                for k, j in enumerate(PTM_FILE_TERM):
                    dst[..., 3 * k + c] = luts[j][block[..., j]]
    del data
    model = RTIModel(kind="ptm", colorspace="lrgb" if lrgb else "rgb", coefficients=out, terms=PTM_TERMS,
                     meta={"source": str(path), "legacy_format": f"{version} {fmt}"})
    check_model(model)
    return model


def ptm_quantisation(lo: float, hi: float) -> tuple[float, int]:
    """(scale, integer bias) for one PTM term whose values lie in [lo, hi], in 0..255 pixel units.

    byte = round(value/scale + bias) stays in [0, 255] and value = (byte − bias)·scale. The range
    includes 0, so the bias is a byte value (0..254) as RTIViewer reads it (an int); 254 steps
    leave room for rounding the bias up.
    """
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = max(hi - lo, 1e-6) / 254.0
    bias = int(math.ceil(-lo / scale - 1e-9))
    return scale, bias


def _quantise(values: np.ndarray, gain, offset) -> np.ndarray:
    """round(values · gain + offset) clipped to bytes, in float32 (gain, offset broadcast on the last axis)."""
    q = np.asarray(values, np.float32) * np.asarray(gain, np.float32)
    q += np.asarray(offset, np.float32)
    np.rint(q, out=q)
    np.clip(q, 0, 255, out=q)
    return q.astype(np.uint8)


def _plane_ranges(coeffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-plane (min, max) of (H, W, C) coefficients, row block by row block (no full-size temporaries)."""
    lo = np.full(coeffs.shape[2], np.inf)
    hi = np.full(coeffs.shape[2], -np.inf)
    for y0, y1 in _row_chunks(coeffs.shape[0]):
        block = coeffs[y0:y1].reshape(-1, coeffs.shape[2])
        lo = np.minimum(lo, block.min(axis=0))
        hi = np.maximum(hi, block.max(axis=0))
    return lo, hi


def write_ptm(model: RTIModel, path: str | os.PathLike) -> Path:
    """Write a PTM model as a PTM_1.2 file: rgb -> PTM_FORMAT_RGB, lrgb -> PTM_FORMAT_LRGB.

    Each file term gets one scale and integer bias (shared by R, G, B for rgb). lrgb colours are
    stored as bytes; a colour channel above 1 is folded into the luminance first (exact).
    The mask, if any, is not stored (the format has none).
    """
    path = Path(path)
    check_model(model)
    if model.kind != "ptm":
        raise InputError(f"cannot write a {model.label} model as .ptm: .ptm holds PTM models (ptm, lptm); "
                         "HSH models go to .rti, neural models stay in model folders")
    h, w = model.shape
    coeffs = model.coefficients
    lrgb = model.colorspace == "lrgb"
    if lrgb and coeffs[..., :3].max() > 1.0:  # colour/peak · lum·peak: the same pixels, colour fits a byte
        peak = np.maximum(coeffs[..., :3].max(axis=2, keepdims=True), 1.0)
        coeffs = np.concatenate([coeffs[..., :3] / peak, coeffs[..., 3:] * peak], axis=2)
    lo, hi = _plane_ranges(coeffs)
    _check_finite(lo, hi, path)
    first = 3 if lrgb else 0
    term_planes = [[first + k] if lrgb else [3 * k, 3 * k + 1, 3 * k + 2] for k in range(PTM_TERMS)]  # our term k
    quant = [None] * PTM_TERMS  # per file term: (scale, bias) in 0..255 units
    for k, j in enumerate(PTM_FILE_TERM):
        quant[j] = ptm_quantisation(255.0 * lo[term_planes[k]].min(), 255.0 * hi[term_planes[k]].max())
    fmt = "PTM_FORMAT_LRGB" if lrgb else "PTM_FORMAT_RGB"
    header = (f"PTM_1.2\n{fmt}\n{w}\n{h}\n" + " ".join(f"{s:.9g}" for s, _ in quant) + "\n"
              + " ".join(str(b) for _, b in quant) + "\n").encode("ascii")
    # byte_j = our coefficient · 255/scale_j + bias_j, our planes taken in file term order
    gain = np.array([255.0 / quant[j][0] for j in range(PTM_TERMS)])
    offset = np.array([float(quant[j][1]) for j in range(PTM_TERMS)])
    inverse = [PTM_FILE_TERM.index(j) for j in range(PTM_TERMS)]  # file term j is our term inverse[j]

    def chunks():
        for c in ([None] if lrgb else range(3)):  # rgb: the red block, then green, then blue
            planes = [first + k if lrgb else 3 * k + c for k in inverse]
            for y0, y1 in _row_chunks(h):  # file rows bottom first
                yield _quantise(coeffs[h - y1:h - y0][::-1][..., planes], gain, offset)
        if lrgb:
            for y0, y1 in _row_chunks(h):
                yield _quantise(coeffs[h - y1:h - y0][::-1][..., :3], 255.0, 0.0)

    return _write_file(path, header, chunks())


# ----------------------------------------------------------------------------- HSH (.rti)

def read_hsh_rti(path: str | os.PathLike) -> RTIModel:
    """Read an RTIBuilder .rti file (#HSH1.2, HSH, 3 colour bands, 1-byte elements) -> RTIModel "hsh" rgb.

    Coefficients (H, W, 3·T) term-major, T in {4, 9, 16}; row 0 is the file's first row (the top).
    """
    path = Path(path)
    head = _read_head(path)
    lines = _header_lines(head)
    first, _ = next(lines, ("", 0))
    if not first.startswith("#"):
        raise InputError(f"{path}: not an HSH .rti file (first line {first.strip()[:20]!r}, expected {HSH_MAGIC!r})")
    fields, offset = [], None
    for line, end in lines:
        if line.startswith("#"):  # comment lines may follow the magic
            continue
        fields.append(line.split())
        if len(fields) == 3:
            offset = end
            break
    if offset is None:
        raise InputError(f"{path}: bad .rti header, expected a type line, 'width height bands' and "
                         f"'terms basis_type element_size' after {first.strip()[:20]}")
    if len(fields[0]) != 1 or len(fields[1]) != 3 or len(fields[2]) != 3:
        raise InputError(f"{path}: bad .rti header, expected lines 'type', 'width height bands', "
                         f"'terms basis_type element_size', found {' / '.join(' '.join(f) for f in fields)!r}")
    (rti_type,) = _numbers(fields[0], "the RTI type", path, int)
    width, height, bands = _numbers(fields[1], "width, height and bands", path, int)
    terms, _basis_type, element_size = _numbers(fields[2], "terms, basis type and element size", path, int)
    if rti_type != RTI_TYPE_HSH:
        name = {1: "PTM", 2: "SH", 4: "adaptive basis"}.get(rti_type, "unknown")
        raise InputError(f"{path}: .rti type {rti_type} ({name}) is not supported (supported: type 3, HSH; "
                         "PTMs are read from .ptm files)")
    _check_size(path, width, height)
    if bands != 3:
        raise InputError(f"{path}: {bands} colour bands are not supported (supported: 3, rgb)")
    if terms not in HSH_TERMS:
        raise InputError(f"{path}: {terms} HSH terms are not supported (supported: 4, 9 or 16)")
    if element_size != 1:
        raise InputError(f"{path}: element size {element_size} is not supported (supported: 1 byte per coefficient)")
    payload = _payload(path, offset, 8 * terms + width * height * 3 * terms)  # scales, biases, then the bytes
    scale_bias = np.frombuffer(payload[:8 * terms].tobytes(), "<f4").astype(np.float64)
    scale, bias = scale_bias[:terms], scale_bias[terms:]
    if not np.isfinite(scale_bias).all():
        raise InputError(f"{path}: bad .rti header, the scale and bias floats are not finite")
    luts = (np.arange(256)[None, :] / 255.0 * scale[:, None] + bias[:, None]).astype(np.float32)  # (T, 256)
    data = payload[8 * terms:].reshape(height, width, 3, terms)
    out = np.empty((height, width, terms, 3), np.float32)  # our layout 3·t + channel
    for y0, y1 in _row_chunks(height):
        block = np.asarray(data[y0:y1])
        for t in range(terms):
            out[y0:y1, :, t, :] = luts[t][block[:, :, :, t]]
    del data, payload
    model = RTIModel(kind="hsh", colorspace="rgb", coefficients=out.reshape(height, width, 3 * terms), terms=terms,
                     meta={"source": str(path), "legacy_format": f"{first.strip()} type {rti_type}"})
    check_model(model)
    return model


def write_hsh_rti(model: RTIModel, path: str | os.PathLike) -> Path:
    """Write an HSH model (4, 9 or 16 terms) as an RTIBuilder .rti file (#HSH1.2, CRLF header lines).

    Per term one float scale (max − min) and bias (min) over R, G and B; byte = round((c − min)/scale·255).
    An lrgb HSH model is expanded to rgb first (coefficient_t,c = colour_c · lum_t: exact).
    """
    path = Path(path)
    check_model(model)
    if model.kind != "hsh":
        raise InputError(f"cannot write a {model.label} model as .rti: .rti holds HSH models (hsh, lhsh with 4, 9 or "
                         "16 terms); PTM models go to .ptm, neural models stay in model folders")
    h, w = model.shape
    t = model.terms
    if model.colorspace == "lrgb":
        colour, lum = model.coefficients[..., :3], model.coefficients[..., 3:]
        coeffs = (lum[:, :, :, None] * colour[:, :, None, :]).reshape(h, w, 3 * t)
    else:
        coeffs = model.coefficients
    plane_lo, plane_hi = _plane_ranges(coeffs)
    _check_finite(plane_lo, plane_hi, path)
    lo = plane_lo.reshape(t, 3).min(axis=1).astype(np.float32)  # one range per term over R, G, B
    span = np.maximum(plane_hi.reshape(t, 3).max(axis=1).astype(np.float32) - lo, np.float32(1e-8))
    header = (f"{HSH_MAGIC}\r\n{RTI_TYPE_HSH}\r\n{w} {h} 3\r\n{t} {HSH_BASIS_TYPE_RGB} 1\r\n").encode("ascii")
    header += span.astype("<f4").tobytes() + lo.astype("<f4").tobytes()
    gain = (255.0 / span.astype(np.float64))[:, None]  # byte = (c − lo)/span · 255, per term (T, 1)
    offset = (-lo.astype(np.float64) * 255.0 / span.astype(np.float64))[:, None]

    def chunks():
        for y0, y1 in _row_chunks(h):
            q = _quantise(coeffs[y0:y1].reshape(y1 - y0, w, t, 3), gain, offset)
            yield q.transpose(0, 1, 3, 2)  # per pixel: the T terms of R, then of G, then of B

    return _write_file(path, header, chunks())
