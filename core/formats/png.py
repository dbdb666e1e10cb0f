"""PNG encoding with zlib and numpy alone: 8- or 16-bit greyscale, RGB or RGBA.

For what Pillow cannot do or where it is absent: 16-bit colour PNGs (``pnrelight.imageio``) and
Blender's Python (the add-on writes OLAT previews and masks through :func:`pnrelight.formats.exr.write_png`).
Each row is stored with filter 0 (none), all in one IDAT chunk (PNG specification, ISO/IEC 15948).
"""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["encode_png", "write_png"]

_COLOUR_TYPE = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type (grey, RGB, RGBA)


def encode_png(image: np.ndarray, *, level: int = 6) -> bytes:
    """PNG bytes of ``image``: (H, W) or (H, W, 1|3|4), uint8 (8-bit) or uint16 (16-bit); zlib ``level``."""
    img = np.asarray(image)
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"PNG samples must be uint8 or uint16, not {img.dtype}")
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in _COLOUR_TYPE or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"a PNG image is (H, W) or (H, W, 1|3|4), not {np.shape(image)}")
    h, w, c = img.shape
    depth = 8 if img.dtype == np.uint8 else 16
    raw = np.ascontiguousarray(img.astype(">u2") if depth == 16 else img).view(np.uint8).reshape(h, -1)
    rows = np.concatenate([np.zeros((h, 1), np.uint8), raw], axis=1).tobytes()  # filter byte 0 per row

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, depth, _COLOUR_TYPE[c], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, level)) + chunk(b"IEND", b"")


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write :func:`encode_png` of ``image`` to ``path``; returns the path."""
    path = Path(path)
    path.write_bytes(encode_png(image))
    return path
