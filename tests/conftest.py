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


@pytest.fixture(scope="session")
def astronaut_png(tmp_path_factory):
    """skimage's astronaut (512 x 512) as a PNG file."""
    from skimage import data

    from pnrelight.imageio import write_image

    return write_image(tmp_path_factory.mktemp("photo") / "astronaut.png", data.astronaut())


@pytest.fixture(scope="session")
def avatar_dir(astronaut_png, tmp_path_factory):
    """`pnrelight avatar` of the astronaut (256 px textures, 4 turntable frames), built once per test session."""
    out = tmp_path_factory.mktemp("avatar") / "astronaut_avatar"
    proc = run_cli("avatar", astronaut_png, "-o", out, "--texture-size", "256", "--turntable", "4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "avatar written to" in proc.stdout
    return out


def build_addon(out_dir):
    """``blender_addon/build.py`` into ``out_dir``: (the extension zip, the finished build); asserts it succeeded."""
    import subprocess

    build = subprocess.run([sys.executable, str(REPO / "blender_addon" / "build.py"), "--output-dir", str(out_dir)],
                           capture_output=True, text=True, cwd=REPO)
    assert build.returncode == 0, build.stdout + build.stderr
    return next(Path(out_dir).glob("pnrelight-*.zip")), build


def run_blender_worker(worker: str, job: dict, root, *, timeout: int):
    """``tests/<worker>`` on ``job`` (written to root/job.json) with Blender's user resources in root/blender_user and
    no PYTHONPATH (a checkout on it would shadow the extension's bundled wheel); asserts it succeeded.
    Returns (job["out"]/results.json as read, the worker's stdout)."""
    import json
    import subprocess

    root = Path(root)
    (root / "job.json").write_text(json.dumps(job))
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(root / "blender_user")}
    env.pop("PYTHONPATH", None)
    run = subprocess.run([sys.executable, str(REPO / "tests" / worker), str(root / "job.json")],
                         capture_output=True, text=True, env=env, timeout=timeout)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return json.loads((Path(job["out"]) / "results.json").read_text()), run.stdout
