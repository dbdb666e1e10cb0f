"""Multi-light image collections (MLIC): a folder with an .lp file, its images and an optional mask.

Images stay at the precision they were stored in (8-bit JPEGs stay uint8 in memory: a
24 MP, 50-light capture is 3.6 GB, not 14.4 GB of float32); every reader below returns
float32 in [0, 1] (EXR values unchanged) for the part it is asked for.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..imageio import native_scale, read_image, read_image_native
from .lp import find_lp, read_lp


@dataclass
class MLIC:
    images: np.ndarray        # (N, H, W, 3) uint8, uint16 or float32 as stored; see image()/pixels()/rows()
    directions: np.ndarray    # (N, 3) unit light directions
    names: list[str]          # (N,) image names as in the .lp file
    mask: np.ndarray | None   # (H, W) bool, True where the object is
    folder: Path

    @property
    def shape(self) -> tuple[int, int]:
        return self.images.shape[1], self.images.shape[2]

    @property
    def count(self) -> int:
        """Number of lights N."""
        return self.images.shape[0]

    def _float(self, values: np.ndarray) -> np.ndarray:
        return _as_float(values)

    def image(self, i: int) -> np.ndarray:
        """Image of light ``i`` as (H, W, 3) float32."""
        return self._float(self.images[i])

    def rows(self, y0: int, y1: int) -> np.ndarray:
        """Rows y0:y1 of every image, (N, y1 - y0, W, 3) float32: a tile for streaming work."""
        return self._float(self.images[:, y0:y1])

    def pixels(self, flat_index: np.ndarray) -> np.ndarray:
        """Observations of the given pixels, (P, N, 3) float32.

        flat_index : (P,) indices into the row-major H·W pixel grid.
        """
        flat_index = np.asarray(flat_index, np.int64)
        n, h, w, c = self.images.shape
        out = np.empty((flat_index.size, n, c), np.float32)
        for i in range(n):  # one image at a time: never an (N, H·W) float copy
            out[:, i] = self._float(self.images[i].reshape(h * w, c)[flat_index])
        return out

    def subset(self, selection) -> "MLIC":
        """The collection restricted to some lights (bool mask or indices), same mask and folder."""
        idx = np.arange(self.count)[selection]
        images = self.images[idx] if not _is_range(idx, self.count) else self.images
        return MLIC(images=images, directions=self.directions[idx], names=[self.names[i] for i in idx],
                    mask=self.mask, folder=self.folder)

    def split(self, selection) -> tuple["MLIC", "MLIC"]:
        """(the lights not selected, the selected ones) as two views of this collection's images.

        Unlike two :meth:`subset` calls (which copy the images), this reorders the images in
        place, one image at a time (unselected first, each group in its original order), and
        returns views: a held-out split of a 24 MP capture costs one image, not a second
        collection. This MLIC stays consistent (its names and directions are reordered too).
        """
        selected = np.zeros(self.count, bool)
        selected[np.arange(self.count)[selection]] = True
        order = np.concatenate([np.flatnonzero(~selected), np.flatnonzero(selected)])
        _permute_in_place(self.images, order)
        self.directions = self.directions[order]
        self.names = [self.names[i] for i in order]
        m = int((~selected).sum())
        part = lambda sl: MLIC(images=self.images[sl], directions=self.directions[sl], names=self.names[sl],
                               mask=self.mask, folder=self.folder)
        return part(slice(0, m)), part(slice(m, None))

    def float_images(self) -> np.ndarray:
        """All images as (N, H, W, 3) float32 (a full copy: small collections and tests only)."""
        return self._float(self.images)


def _as_float(values: np.ndarray) -> np.ndarray:
    """Stored values (uint8, uint16, float32) as float32 in [0, 1] (floats unchanged)."""
    scale = native_scale(values.dtype)
    if scale == 1.0:
        return np.asarray(values, np.float32)
    return values.astype(np.float32) * np.float32(scale)


def _permute_in_place(images: np.ndarray, order: np.ndarray) -> None:
    """images[:] = images[order] with one image of extra memory (follows the permutation's cycles)."""
    done = np.zeros(len(order), bool)
    for start in range(len(order)):
        if done[start] or order[start] == start:
            continue
        held = images[start].copy()
        j = start
        while True:
            done[j] = True
            src = order[j]
            if src == start:
                images[j] = held
                break
            images[j] = images[src]
            j = src


def _is_range(idx: np.ndarray, n: int) -> bool:
    return idx.size == n and bool(np.all(idx == np.arange(n)))


def load_mlic(folder: str | os.PathLike, *, min_lights: int = 1, progress=None) -> MLIC:
    """Load an MLIC folder; every problem is an InputError naming the file and the fix.

    Images keep their stored precision (uint8, uint16 or float32); grey images become RGB.
    """
    folder = Path(folder)
    lp_path = find_lp(folder)
    lp = read_lp(lp_path)
    if len(lp.names) < min_lights:
        raise InputError(f"{lp_path} lists {len(lp.names)} lights; this needs at least {min_lights} (capture more lights or choose a basis with fewer terms)")
    images = None
    it = enumerate(lp.names)
    if progress is not None:
        it = progress(it, total=len(lp.names), desc="loading images")
    for i, name in it:
        img = _rgb(read_image_native(_image_path(lp_path, name)))
        if images is None:
            images = np.empty((len(lp.names),) + img.shape, dtype=img.dtype)
        elif img.shape != images.shape[1:]:
            raise InputError(
                f"image {name} is {img.shape[1]}x{img.shape[0]} but {lp.names[0]} is {images.shape[2]}x{images.shape[1]} (all images must have the same size)"
            )
        elif img.dtype != images.dtype:
            raise InputError(f"image {name} is {img.dtype} but {lp.names[0]} is {images.dtype} (store all images with the same bit depth)")
        images[i] = img
    mask = _read_mask(folder, images.shape[1:3])
    return MLIC(images=images, directions=lp.directions, names=lp.names, mask=mask, folder=folder)


def _image_path(lp_path: Path, name: str) -> Path:
    """The file of an .lp row (a subfolder in the name may be dropped); InputError when missing."""
    path = lp_path.parent / name
    if not path.is_file():
        alt = lp_path.parent / Path(name).name
        if not alt.is_file():
            raise InputError(f"image {name} listed in {lp_path.name} is missing (put it in {lp_path.parent} or fix the .lp row)")
        path = alt
    return path


def _read_mask(folder: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """``mask.png`` of the folder as (H, W) bool, None when absent; InputError on a size mismatch."""
    mask_path = folder / "mask.png"
    if not mask_path.is_file():
        return None
    m = read_image(mask_path)
    if m.ndim == 3:
        m = m.mean(axis=2)
    if m.shape != tuple(shape):
        raise InputError(f"{mask_path} is {m.shape[1]}x{m.shape[0]} but the images are {shape[1]}x{shape[0]} (resize or remove the mask)")
    return m > 0.5


@dataclass
class LazyMLIC:
    """An MLIC folder read one image at a time: memory independent of the number of lights.

    Same reading interface as :class:`MLIC` for per-light work (``image(i)``, ``shape``,
    ``count``, ``names``, ``directions``, ``mask``, ``folder``); used to evaluate on held-out
    folders (:func:`pnrelight.rti.evaluate.evaluate`). Built by :func:`open_mlic`.
    """
    paths: list[Path]         # (N,) image files
    directions: np.ndarray    # (N, 3) unit light directions
    names: list[str]          # (N,) image names as in the .lp file
    mask: np.ndarray | None   # (H, W) bool
    folder: Path
    shape: tuple[int, int]    # (H, W) of the first image; image(i) checks the others

    @property
    def count(self) -> int:
        return len(self.paths)

    def image(self, i: int) -> np.ndarray:
        """Image of light ``i`` read from disk as (H, W, 3) float32; InputError if its size differs."""
        img = _rgb(read_image_native(self.paths[i]))
        if img.shape[:2] != self.shape:
            raise InputError(f"image {self.names[i]} is {img.shape[1]}x{img.shape[0]} but {self.names[0]} is {self.shape[1]}x{self.shape[0]} (all images must have the same size)")
        return _as_float(img)


def open_mlic(folder: str | os.PathLike, *, min_lights: int = 1) -> LazyMLIC:
    """Check an MLIC folder (the .lp, every image present, the mask) without loading its images."""
    folder = Path(folder)
    lp_path = find_lp(folder)
    lp = read_lp(lp_path)
    if len(lp.names) < min_lights:
        raise InputError(f"{lp_path} lists {len(lp.names)} lights; this needs at least {min_lights} (capture more lights)")
    paths = [_image_path(lp_path, name) for name in lp.names]
    first = _rgb(read_image_native(paths[0]))  # the size (decoding one image keeps every format's rules)
    shape = first.shape[:2]
    del first
    return LazyMLIC(paths=paths, directions=lp.directions, names=lp.names, mask=_read_mask(folder, shape),
                    folder=folder, shape=shape)


def _rgb(img: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 2), (H, W, 3) or (H, W, 4) -> (H, W, 3), alpha dropped."""
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    if img.shape[2] == 2:
        return np.repeat(img[..., :1], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])
