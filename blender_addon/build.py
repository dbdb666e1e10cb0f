"""Build and validate the Blender extension zip: ``python blender_addon/build.py [--output-dir dist]``.

1. ``pip wheel --no-deps`` of the repository (the torch-free core the add-on needs) into
   blender_addon/wheels/ (git-ignored), and the manifest's ``wheels``/``version`` set to it;
2. ``blender_ext.py build`` (shipped in the ``bpy`` wheel) -> dist/pnrelight-<version>.zip;
3. ``blender_ext.py validate`` on that zip. Exits non-zero when any step fails.
"""
from __future__ import annotations

import argparse
import glob
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ADDON = Path(__file__).resolve().parent
REPO = ADDON.parent


def find_blender_ext() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("build.py: the bpy module is not installed (pip install bpy==5.0.1 with Python 3.11)")
    hits = sorted(glob.glob(str(Path(list(spec.submodule_search_locations)[0]) / "*" / "scripts" / "addons_core"
                                / "bl_pkg" / "cli" / "blender_ext.py")))
    if not hits:
        raise SystemExit("build.py: blender_ext.py not found in the bpy package (reinstall bpy==5.0.1)")
    return Path(hits[-1])


def project_version() -> str:
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    return re.search(r'^version\s*=\s*"([^"]+)"', text, re.M).group(1)


def build_wheel() -> Path:
    wheels = ADDON / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir()
    scratch_existed = (REPO / "build").exists()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", tmp, str(REPO)], check=True, cwd=tmp)
        built = sorted(Path(tmp).glob("pnrelight-*.whl"))
        if not built:
            raise SystemExit("build.py: pip wheel produced no pnrelight wheel")
        target = wheels / built[-1].name
        shutil.copy2(built[-1], target)
    if not scratch_existed:
        shutil.rmtree(REPO / "build", ignore_errors=True)  # setuptools' scratch folder
    return target


def write_manifest(wheel: Path, version: str) -> None:
    manifest = ADDON / "blender_manifest.toml"
    text = manifest.read_text(encoding="utf-8")
    text = re.sub(r'^wheels\s*=.*$', f'wheels = ["./wheels/{wheel.name}"]', text, count=1, flags=re.M)
    text = re.sub(r'^version\s*=.*$', f'version = "{version}"', text, count=1, flags=re.M)
    manifest.write_text(text, encoding="utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default=str(REPO / "dist"))
    args = parser.parse_args(argv)
    blender_ext = find_blender_ext()
    version = project_version()
    wheel = build_wheel()
    write_manifest(wheel, version)
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    zip_path = out_dir / f"pnrelight-{version}.zip"
    zip_path.unlink(missing_ok=True)
    subprocess.run([sys.executable, str(blender_ext), "build", "--source-dir", str(ADDON),
                    "--output-filepath", str(zip_path)], check=True)
    result = subprocess.run([sys.executable, str(blender_ext), "validate", str(zip_path)],
                            capture_output=True, text=True)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        return result.returncode
    print(f"extension: {zip_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
