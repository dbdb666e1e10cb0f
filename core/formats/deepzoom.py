"""DeepZoom pyramids of 8-bit images, in the flavour OpenLIME's ``layout: "deepzoom"`` reads.

A pyramid ``NAME`` is ``NAME.dzi`` (XML: ``TileSize``, ``Overlap``, ``Format`` and
``<Size Width Height>``) plus ``NAME_files/LEVEL/COL_ROW.FORMAT`` tiles. As OpenLIME's
LayoutTiles (and cnr-isti-vclab/relight's writer) expect:

* level 0 is the root: the whole image in one tile (not Microsoft's 1x1-pixel level 0, which
  OpenLIME reads as ``"deepzoom1px"``); the last level, ``level_count - 1``, is full resolution.
  There are ``ceil(log2(max(W, H) / TileSize)) + 1`` levels; each is the one above halved with
  rounding down (``w >> 1``), never below 1 pixel.
* tile (col, row) of a level covers pixels [col·T − O, (col + 1)·T + O) ∩ [0, size) in x (the
  same in y): ``Overlap`` extra pixels on every side that has a neighbour, none at the borders.

The writer keeps one level in memory at a time beside the input (each level is a 2x2 box
average of the one below); the reader assembles the full-resolution level.
"""
from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ..errors import InputError

DZI_SUFFIX = ".dzi"
TILE_SIZE = 256  # OpenLIME's default and its HSH sample's
# No overlap by default: OpenLIME's neural layer relights each tile into a TileSize x TileSize
# texture, so a (TileSize + 2·Overlap)-pixel tile would be resampled; at 1:1 nothing needs it.
OVERLAP = 0
TILE_FORMAT = "jpg"
DZI_NAMESPACE = "http://schemas.microsoft.com/deepzoom/2008"


def level_count(width: int, height: int, tile_size: int) -> int:
    """Number of levels OpenLIME expects: the root level holds the image in one tile."""
    side = max(width, height)
    count = 1
    while tile_size << (count - 1) < side:
        count += 1
    return count


def level_sizes(width: int, height: int, tile_size: int) -> list[tuple[int, int]]:
    """(width, height) of each level, level 0 (the root tile) first, full resolution last."""
    sizes = []
    w, h = width, height
    for _ in range(level_count(width, height, tile_size)):
        sizes.append((max(w, 1), max(h, 1)))
        w, h = w >> 1, h >> 1
    return sizes[::-1]


def tile_span(index: int, size: int, tile_size: int, overlap: int) -> tuple[int, int]:
    """[start, end) pixel range of tile ``index`` along an axis of ``size`` pixels, overlap included."""
    return max(0, index * tile_size - overlap), min(size, (index + 1) * tile_size + overlap)


def files_folder(dzi_path: str | os.PathLike) -> Path:
    """``NAME_files`` beside ``NAME.dzi`` (OpenLIME drops the suffix and appends ``_files``)."""
    dzi_path = Path(dzi_path)
    return dzi_path.with_name(dzi_path.stem + "_files")


# ----------------------------------------------------------------------------- writing

def write_dzi(image_u8: np.ndarray, folder: str | os.PathLike, name: str, *, tile_size: int = TILE_SIZE,
              overlap: int = OVERLAP, quality: int = 95) -> Path:
    """Write ``image_u8`` (H, W, 3) uint8 as ``folder/name.dzi`` + ``folder/name_files/``; returns the .dzi path.

    Tiles are JPEGs at ``quality`` (4:4:4). The caller makes the folder atomic (model folders
    are written into a temporary folder that is renamed at the end).
    """
    from ..imageio import write_image

    image = np.asarray(image_u8)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"write_dzi needs an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    if tile_size < 1 or overlap < 0 or overlap >= tile_size:
        raise InputError(f"DeepZoom tile size {tile_size} / overlap {overlap}: need tile size >= 1 and 0 <= overlap < tile size")
    folder = Path(folder)
    height, width = image.shape[:2]
    tiles_root = folder / f"{name}_files"
    sizes = level_sizes(width, height, tile_size)
    level = image
    for index in range(len(sizes) - 1, -1, -1):
        if level.shape[1::-1] != sizes[index]:
            level = _halve(level, sizes[index])
        out = tiles_root / str(index)
        out.mkdir(parents=True, exist_ok=True)
        lh, lw = level.shape[:2]
        for row in range(math.ceil(lh / tile_size)):
            y0, y1 = tile_span(row, lh, tile_size, overlap)
            for col in range(math.ceil(lw / tile_size)):
                x0, x1 = tile_span(col, lw, tile_size, overlap)
                write_image(out / f"{col}_{row}.{TILE_FORMAT}", level[y0:y1, x0:x1], quality=quality, atomic=False)
    dzi = folder / f"{name}{DZI_SUFFIX}"
    dzi.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<Image xmlns="{DZI_NAMESPACE}" Format="{TILE_FORMAT}" Overlap="{overlap}" TileSize="{tile_size}">\n'
        f'  <Size Width="{width}" Height="{height}"/>\n'
        "</Image>\n", encoding="utf-8")
    return dzi


def _halve(level: np.ndarray, size: tuple[int, int], strip: int = 256) -> np.ndarray:
    """2x2 box average (rounded) down to ``size`` (w, h) = the level's size >> 1; an odd last row/column is dropped.

    Works in strips of ``strip`` output rows, so the uint16 sums stay small beside the result.
    """
    w, h = size
    if level.shape[0] < 2 * h or level.shape[1] < 2 * w:  # one side is already 1 pixel: average the other
        fy, fx = max(level.shape[0] // h, 1), max(level.shape[1] // w, 1)
        src = level[:h * fy, :w * fx].astype(np.uint16)
        return np.rint(src.reshape(h, fy, w, fx, 3).mean(axis=(1, 3))).astype(np.uint8)
    out = np.empty((h, w, 3), np.uint8)
    for y0 in range(0, h, strip):
        y1 = min(h, y0 + strip)
        src = level[2 * y0:2 * y1, :2 * w]
        acc = src[0::2, 0::2].astype(np.uint16)
        acc += src[1::2, 0::2]
        acc += src[0::2, 1::2]
        acc += src[1::2, 1::2]
        out[y0:y1] = (acc + 2) // 4
    return out


# ----------------------------------------------------------------------------- reading

def read_dzi_header(dzi_path: str | os.PathLike) -> dict:
    """Parse a .dzi: -> {"width", "height", "tile_size", "overlap", "format"}; InputError when malformed."""
    dzi_path = Path(dzi_path)
    if not dzi_path.is_file():
        raise InputError(f"DeepZoom descriptor {dzi_path} is missing (re-export the model folder)")
    try:
        root = ET.fromstring(dzi_path.read_bytes())
    except ET.ParseError as exc:
        raise InputError(f"{dzi_path} is not valid DeepZoom XML ({exc}); re-export the model folder") from None
    size = next((el for el in root.iter() if _local(el.tag) == "Size"), None)
    if _local(root.tag) != "Image" or size is None:
        raise InputError(f"{dzi_path} is not a DeepZoom descriptor (expected <Image> with a <Size> element)")
    try:
        header = {"width": int(size.get("Width")), "height": int(size.get("Height")),
                  "tile_size": int(root.get("TileSize")), "overlap": int(root.get("Overlap", "0"))}
    except (TypeError, ValueError):
        raise InputError(f"{dzi_path}: TileSize, Overlap, Width and Height must be integers") from None
    header["format"] = str(root.get("Format") or "jpg").lower()
    if min(header["width"], header["height"], header["tile_size"]) < 1 or header["overlap"] < 0:
        raise InputError(f"{dzi_path}: sizes must be positive and the overlap not negative")
    return header


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def read_dzi(dzi_path: str | os.PathLike, *, read_tile=None) -> np.ndarray:
    """Assemble the full-resolution level of a pyramid -> (H, W, 3) uint8.

    The full-resolution level is the highest-numbered folder in ``NAME_files``, so pyramids with
    a 1x1-pixel level 0 (Microsoft's numbering, vips) read as well as OpenLIME's.
    read_tile : optional ``path -> (h, w[, C])`` reader (uint8, or floats in [0, 1] such as
        Blender's loader returns); default :func:`pnrelight.imageio.read_image_native`.
    """
    from ..imageio import read_image_native, to_uint8

    dzi_path = Path(dzi_path)
    header = read_dzi_header(dzi_path)
    width, height, ts, ov = header["width"], header["height"], header["tile_size"], header["overlap"]
    tiles_root = files_folder(dzi_path)
    levels = [int(p.name) for p in tiles_root.iterdir() if p.is_dir() and p.name.isdigit()] if tiles_root.is_dir() else []
    if not levels:
        raise InputError(f"{dzi_path}: no tile levels in {tiles_root} (re-export the model folder)")
    level_dir = tiles_root / str(max(levels))
    read_tile = read_tile or read_image_native
    image = np.empty((height, width, 3), np.uint8)
    for row in range(math.ceil(height / ts)):
        y0, y1 = tile_span(row, height, ts, ov)
        for col in range(math.ceil(width / ts)):
            x0, x1 = tile_span(col, width, ts, ov)
            path = level_dir / f"{col}_{row}.{header['format']}"
            if not path.is_file():
                raise InputError(f"{dzi_path}: tile {path.relative_to(tiles_root)} is missing (re-export the model folder)")
            tile = np.asarray(read_tile(path))
            tile = tile if tile.dtype == np.uint8 else to_uint8(tile)
            if tile.ndim == 2:
                tile = np.repeat(tile[..., None], 3, axis=2)
            if tile.shape[:2] != (y1 - y0, x1 - x0):
                raise InputError(f"{dzi_path}: tile {path.relative_to(tiles_root)} is {tile.shape[1]}x{tile.shape[0]}, "
                                 f"expected {x1 - x0}x{y1 - y0} (full-resolution level {level_dir.name} does not match the .dzi)")
            iy, ix = row * ts - y0, col * ts - x0  # skip the overlap on the top/left
            ty, tx = min(ts, height - row * ts), min(ts, width - col * ts)
            image[row * ts:row * ts + ty, col * ts:col * ts + tx] = tile[iy:iy + ty, ix:ix + tx, :3]
    return image
