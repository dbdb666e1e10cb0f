"""Write outputs to a temporary sibling, then rename: never a half-written result."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_output_dir(final: str | os.PathLike):
    """Yield a fresh temporary folder next to ``final``; on success it replaces ``final``.

    On an exception the temporary folder is removed and ``final`` is untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _apply_umask(tmp, directory=True)
    if final.exists():
        old = final.with_name(f".{final.name}.old{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
    else:
        os.replace(tmp, final)


@contextlib.contextmanager
def atomic_output_file(final: str | os.PathLike):
    """Yield a temporary path with ``final``'s suffix; rename it onto ``final`` on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=final.suffix, dir=final.parent)
    os.close(fd)
    try:
        yield Path(tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _apply_umask(Path(tmp), directory=False)
    os.replace(tmp, final)


def _apply_umask(path: Path, *, directory: bool) -> None:
    """mkdtemp/mkstemp create private (0700/0600) entries; give the result normal permissions."""
    umask = os.umask(0)
    os.umask(umask)
    if directory:
        os.chmod(path, 0o777 & ~umask)
        for root, dirs, files in os.walk(path):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o777 & ~umask)
            for f in files:
                p = os.path.join(root, f)
                if os.stat(p).st_mode & 0o777 == 0o600:
                    os.chmod(p, 0o666 & ~umask)
    else:
        os.chmod(path, 0o666 & ~umask)
