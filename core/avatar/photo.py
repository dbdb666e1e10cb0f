"""Load a portrait photo as float32 sRGB (H, W, 3) in [0, 1], whatever the file holds.

EXIF orientation is applied (phones store portraits rotated), alpha is composited
over white (cut-out portraits keep a neutral background), grayscale becomes RGB,
16-bit inputs keep their precision as floats. Unreadable files are an InputError.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..imageio import read_image_rgba


def load_photo(path: str | os.PathLike, *, background: float = 1.0) -> np.ndarray:
    """Read ``path`` as (H, W, 3) float32 in [0, 1].

    Parameters
    ----------
    path : PNG/JPEG/TIFF/BMP/EXR/HDR file; HDR values are clipped to [0, 1].
    background : grey level the alpha channel is composited over.
    """
    path = Path(path)
    img = _read_png_rgb16(path) if path.is_file() and _is_png_rgb16(path) else None
    if img is None:
        img = read_image_rgba(path, exif_transpose=True)
    return as_rgb(img, background=background, name=str(path))


def _is_png_rgb16(path: Path) -> bool:
    """16-bit RGB(A) PNG: Pillow would reduce it to 8 bits, so it is read with OpenCV."""
    with open(path, "rb") as f:
        head = f.read(26)
    return head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) == 26 and head[24] == 16 and head[25] in (2, 6)


def _read_png_rgb16(path: Path) -> np.ndarray | None:
    import cv2

    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3:
        return None
    arr = arr[..., [2, 1, 0, 3][: arr.shape[2]]]  # BGR(A) -> RGB(A)
    return _apply_exif_orientation(path, arr.astype(np.float32) / 65535.0)


def _apply_exif_orientation(path: Path, arr: np.ndarray) -> np.ndarray:
    """Apply an EXIF Orientation tag (as Pillow's exif_transpose does) to an array read without Pillow."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            orientation = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - no readable EXIF: leave as stored
        return arr
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: np.swapaxes(a, 0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],
           8: lambda a: np.rot90(a, 1)}
    op = ops.get(orientation)
    return np.ascontiguousarray(op(arr)) if op else arr


def as_rgb(image: np.ndarray, *, background: float = 1.0, name: str = "image") -> np.ndarray:
    """Any (H, W), (H, W, 1|2|3|4) array (uint8, uint16 or float) -> (H, W, 3) float32 in [0, 1]."""
    img = np.asarray(image)
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    elif img.dtype == np.uint16:
        img = img.astype(np.float32) / 65535.0
    else:
        img = img.astype(np.float32)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4) or min(img.shape[:2]) < 1:
        raise InputError(f"{name}: unsupported image shape {image.shape} (use an RGB, RGBA or grayscale photo)")
    alpha = None
    if img.shape[2] in (2, 4):
        alpha = np.clip(img[..., -1:], 0.0, 1.0)
        img = img[..., :-1]
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    img = np.clip(np.nan_to_num(img, nan=0.0, posinf=1.0), 0.0, 1.0)
    if alpha is not None:
        img = img * alpha + background * (1.0 - alpha)
    return np.ascontiguousarray(img, dtype=np.float32)
