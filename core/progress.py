"""Progress reporting for long work; hosts may swap the reporter (Blender uses wm.progress_*)."""
from __future__ import annotations

import sys
from typing import Iterable

_enabled = True


def set_enabled(flag: bool) -> None:
    global _enabled
    _enabled = flag


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it"):
    """A tqdm bar on stderr (plain iteration when tqdm is missing or progress is off)."""
    if not _enabled:
        return _Silent(iterable, total)
    try:
        from tqdm import tqdm
    except ImportError:
        return _Silent(iterable, total)
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False)


class _Silent:
    def __init__(self, iterable, total):
        self._it = iterable
        self.total = total

    def __iter__(self):
        return iter(self._it)

    def update(self, n=1):
        pass

    def set_postfix(self, *a, **k):
        pass

    def set_description(self, *a, **k):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

