import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
DOME = SHARED / "data" / "rti" / "dome"

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


@pytest.fixture(scope="session")
def dome_dir():
    if not (DOME / "train" / "dirs.lp").is_file():
        pytest.skip("shared Dome data not present (../shared/data/rti/dome)")
    return DOME


def run_cli(*args, cwd=None):
    """Run the pnrelight command in a subprocess; returns CompletedProcess."""
    import subprocess

    return subprocess.run([sys.executable, "-m", "pnrelight_cli", "--no-progress", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd or REPO)
