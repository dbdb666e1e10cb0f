"""Multi-light image collections (MLIC): a folder with an .lp file, its images and an optional mask."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..imageio import read_image
from .lp import find_lp, read_lp


@dataclass
class MLIC:
    images: np.ndarray        # (N, H, W, 3) float32, linear in the file's values, [0, 1] for integer formats
    directions: np.ndarray    # (N, 3) unit light directions
    names: list[str]          # (N,) image names as in the .lp file
    mask: np.ndarray | None   # (H, W) bool, True where the object is
    folder: Path

    @property
    def shape(self) -> tuple[int, int]:
        return self.images.shape[1], self.images.shape[2]


def load_mlic(folder: str | os.PathLike, *, min_lights: int = 1, progress=None) -> MLIC:
    """Load an MLIC folder; every problem is an InputError naming the file and the fix."""
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
        path = (lp_path.parent / name)
        if not path.is_file():
            alt = lp_path.parent / Path(name).name
            if alt.is_file():
                path = alt
            else:
                raise InputError(f"image {name} listed in {lp_path.name} is missing (put it in {folder} or fix the .lp row)")
        img = read_image(path)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        if images is None:
            images = np.empty((len(lp.names),) + img.shape, dtype=np.float32)
        elif img.shape != images.shape[1:]:
            raise InputError(
                f"image {name} is {img.shape[1]}x{img.shape[0]} but {lp.names[0]} is {images.shape[2]}x{images.shape[1]} (all images must have the same size)"
            )
        images[i] = img
    mask = None
    mask_path = folder / "mask.png"
    if mask_path.is_file():
        m = read_image(mask_path)
        if m.ndim == 3:
            m = m.mean(axis=2)
        if m.shape != images.shape[1:3]:
            raise InputError(f"{mask_path} is {m.shape[1]}x{m.shape[0]} but the images are {images.shape[2]}x{images.shape[1]} (resize or remove the mask)")
        mask = m > 0.5
    return MLIC(images=images, directions=lp.directions, names=lp.names, mask=mask, folder=folder)
