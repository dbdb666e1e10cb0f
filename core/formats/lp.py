"""The ``.lp`` light-position file: first line the count, then ``filename lx ly lz`` per line."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..lights import normalize_directions


@dataclass
class LightPositions:
    names: list[str]          # image file names as written (may carry a subfolder)
    directions: np.ndarray    # (N, 3) unit vectors, see pnrelight.lights


def read_lp(path: str | os.PathLike) -> LightPositions:
    """Parse an .lp file. Directions are normalised; errors name the line and the fix."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"light file not found: {path} (give an existing .lp file)")
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise InputError(f"{path} is empty (the first line must be the number of lights)")
    try:
        count = int(lines[0].split()[0])
    except ValueError:
        raise InputError(f"{path}: first line {lines[0]!r} is not a light count (write the number of lights first)") from None
    rows = lines[1:]
    if count != len(rows):
        raise InputError(f"{path}: header says {count} lights but {len(rows)} rows follow (fix the count on the first line)")
    names, dirs = [], []
    for k, row in enumerate(rows, start=2):
        parts = row.split()
        if len(parts) < 4:
            raise InputError(f"{path}:{k}: expected 'filename lx ly lz', got {row!r}")
        try:
            vec = [float(v) for v in parts[-3:]]
        except ValueError:
            raise InputError(f"{path}:{k}: light direction {parts[-3:]} is not numeric") from None
        if not all(np.isfinite(vec)):
            raise InputError(f"{path}:{k}: light direction {parts[-3:]} is not finite (give three finite numbers)")
        names.append(" ".join(parts[:-3]).replace("\\", "/"))
        dirs.append(vec)
    dirs = np.asarray(dirs, dtype=np.float64)
    norms = np.linalg.norm(dirs, axis=1)
    zero = np.flatnonzero(norms < 1e-9)
    if zero.size:
        raise InputError(f"{path}:{int(zero[0]) + 2}: light direction of {names[zero[0]]} is a zero vector (give a non-zero lx ly lz)")
    return LightPositions(names=names, directions=normalize_directions(dirs))


def write_lp(path: str | os.PathLike, names: list[str], directions: np.ndarray) -> None:
    """Write an .lp file (directions as given, 6 decimals)."""
    from ..atomic import atomic_output_file

    directions = np.asarray(directions, dtype=np.float64).reshape(-1, 3)
    if len(names) != len(directions):
        raise ValueError("names and directions differ in length")
    text = f"{len(names)}\n" + "".join(f"{n} {d[0]:.6f} {d[1]:.6f} {d[2]:.6f}\n" for n, d in zip(names, directions))
    with atomic_output_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def find_lp(folder: str | os.PathLike) -> Path:
    """The single .lp file of an MLIC folder (``dirs.lp`` preferred when several exist)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"not a folder: {folder} (give the folder holding the images and the .lp file)")
    candidates = sorted(folder.glob("*.lp"))
    if not candidates:
        raise InputError(f"no .lp light file in {folder} (add one: first line the count, then 'filename lx ly lz' per image)")
    for c in candidates:
        if c.name == "dirs.lp":
            return c
    if len(candidates) > 1:
        raise InputError(f"several .lp files in {folder}: {', '.join(c.name for c in candidates)} (keep one, or name it dirs.lp)")
    return candidates[0]
