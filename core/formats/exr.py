"""Numpy-only OpenEXR and PNG files, for hosts without the OpenEXR package or Pillow (Blender's Python:
the add-on's OLAT dataset writer). Elsewhere ``pnrelight.imageio`` (OpenEXR, Pillow) is used.

* :func:`write_exr` -- scanline OpenEXR, HALF or FLOAT channels, ZIP compression (16 lines a block).
* :func:`read_exr` -- single-part scanline OpenEXR with NONE, ZIPS or ZIP compression (what Blender
  writes with those codecs; multilayer files need "interleave" on, i.e. one part).
* :func:`write_png` -- 8-bit greyscale or RGB PNG.

Arrays are top row first. Layout of the EXR file (OpenEXR's "technical introduction"): magic,
version, header attributes (name, type, size, value), an offset table with one entry per block,
then blocks (first line, byte count, data); inside a block each line holds every channel in
name order. ZIP data is zlib of the block with its bytes split into even and odd halves and
delta-coded.
"""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

_MAGIC = 20000630
_TYPES = {0: np.dtype("<u4"), 1: np.dtype("<f2"), 2: np.dtype("<f4")}
_LINES = {0: 1, 2: 1, 3: 16}  # NONE, ZIPS, ZIP


def _attr(name: str, kind: str, value: bytes) -> bytes:
    return name.encode() + b"\0" + kind.encode() + b"\0" + struct.pack("<i", len(value)) + value


def _zip_encode(raw: bytes) -> bytes:
    a = np.frombuffer(raw, dtype=np.uint8)
    split = np.concatenate([a[0::2], a[1::2]])
    delta = np.empty_like(split)
    delta[:1] = split[:1]
    delta[1:] = (split[1:].astype(np.int16) - split[:-1] + 128).astype(np.uint8)
    return zlib.compress(delta.tobytes(), 6)


def _zip_decode(data: bytes, size: int) -> bytes:
    delta = np.frombuffer(zlib.decompress(data), dtype=np.uint8)
    if delta.size != size:
        raise ValueError("corrupt ZIP block")
    split = np.cumsum(delta.astype(np.int64) - np.r_[0, np.full(delta.size - 1, 128)]).astype(np.uint8)
    half = (size + 1) // 2
    raw = np.empty(size, dtype=np.uint8)
    raw[0::2], raw[1::2] = split[:half], split[half:]
    return raw.tobytes()


def write_exr(path: str | os.PathLike, channels: dict[str, np.ndarray], *, half: bool = True) -> Path:
    """Write named (H, W) channels (e.g. {"R": r, "G": g, "B": b}) as a ZIP-compressed scanline EXR."""
    names = sorted(channels)
    planes = [np.asarray(channels[n], dtype="<f2" if half else "<f4") for n in names]
    h, w = planes[0].shape
    pixel_type = 1 if half else 2
    chlist = b"".join(n.encode() + b"\0" + struct.pack("<iB3xii", pixel_type, 0, 1, 1) for n in names) + b"\0"
    box = struct.pack("<iiii", 0, 0, w - 1, h - 1)
    header = (struct.pack("<ii", _MAGIC, 2) + _attr("channels", "chlist", chlist) + _attr("compression", "compression", b"\x03")
              + _attr("dataWindow", "box2i", box) + _attr("displayWindow", "box2i", box) + _attr("lineOrder", "lineOrder", b"\0")
              + _attr("pixelAspectRatio", "float", struct.pack("<f", 1.0))
              + _attr("screenWindowCenter", "v2f", struct.pack("<ff", 0.0, 0.0))
              + _attr("screenWindowWidth", "float", struct.pack("<f", 1.0)) + b"\0")
    lines = np.concatenate([p[:, None, :] for p in planes], axis=1)  # (H, channels, W): a line holds each channel in turn
    blocks = []
    for y in range(0, h, 16):
        raw = lines[y:y + 16].tobytes()
        packed = _zip_encode(raw)
        data = packed if len(packed) < len(raw) else raw
        blocks.append(struct.pack("<ii", y, len(data)) + data)
    offsets, pos = [], len(header) + 8 * len(blocks)
    for block in blocks:
        offsets.append(pos)
        pos += len(block)
    path = Path(path)
    path.write_bytes(header + struct.pack(f"<{len(offsets)}Q", *offsets) + b"".join(blocks))
    return path


def read_exr(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Channels of a single-part scanline EXR as float32 (H, W) arrays, by name."""
    data = Path(path).read_bytes()
    magic, version = struct.unpack_from("<ii", data, 0)
    if magic != _MAGIC or version & 0x1A00:  # tiled, deep or multi-part
        raise ValueError(f"{path}: not a single-part scanline OpenEXR file")
    pos, attrs = 8, {}
    while data[pos] != 0:
        name_end = data.index(b"\0", pos)
        kind_end = data.index(b"\0", name_end + 1)
        (size,) = struct.unpack_from("<i", data, kind_end + 1)
        attrs[data[pos:name_end].decode()] = data[kind_end + 5:kind_end + 5 + size]
        pos = kind_end + 5 + size
    pos += 1
    channels, c = [], 0
    chlist = attrs["channels"]
    while chlist[c] != 0:
        end = chlist.index(b"\0", c)
        pixel_type, _, xs, ys = struct.unpack_from("<iB3xii", chlist, end + 1)
        if (xs, ys) != (1, 1):
            raise ValueError(f"{path}: subsampled channels are not supported")
        channels.append((chlist[c:end].decode(), _TYPES[pixel_type]))
        c = end + 17
    compression = attrs["compression"][0]
    if compression not in _LINES:
        raise ValueError(f"{path}: EXR compression {compression} is not supported (use NONE, ZIPS or ZIP)")
    x0, y0, x1, y1 = struct.unpack("<iiii", attrs["dataWindow"])
    w, h = x1 - x0 + 1, y1 - y0 + 1
    per_block = _LINES[compression]
    count = (h + per_block - 1) // per_block
    offsets = struct.unpack_from(f"<{count}Q", data, pos)
    line_bytes = sum(dt.itemsize for _, dt in channels) * w
    out = {name: np.empty((h, w), dtype=np.float32) for name, _ in channels}
    for off in offsets:
        y, size = struct.unpack_from("<ii", data, off)
        n = min(per_block, y1 + 1 - y)
        block = data[off + 8:off + 8 + size]
        if compression and size < n * line_bytes:
            block = _zip_decode(block, n * line_bytes)
        rows = slice(y - y0, y - y0 + n)
        if len({dt for _, dt in channels}) == 1:  # one pixel type: the block is (lines, channels, width)
            lines = np.frombuffer(block, dtype=channels[0][1], count=n * len(channels) * w).reshape(n, len(channels), w)
            for c, (name, _) in enumerate(channels):
                out[name][rows] = lines[:, c]
            continue
        p = 0
        for row in range(rows.start, rows.stop):
            for name, dt in channels:
                out[name][row] = np.frombuffer(block, dtype=dt, count=w, offset=p)
                p += w * dt.itemsize
    return out


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write a uint8 (H, W) greyscale or (H, W, 3) RGB image as PNG (:func:`pnrelight.formats.png.write_png`)."""
    from .png import write_png as _write

    return _write(path, np.asarray(image, dtype=np.uint8))
