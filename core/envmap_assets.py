"""Make the shipped default environment maps (assets/envmaps/) from Blender's CC0 studio lights.

The bpy wheel ships eight 1024 x 512 lat-long HDRIs (CC0, Greg Zaal / Poly Haven) in
``bpy/<version>/datafiles/studiolights/world/``. We area-average them to 128 x 64 float
EXRs (radiance integral preserved, so bright suns stay bright) and copy their licence.

Run: ``.venv/bin/python -m pnrelight.envmap_assets [--height 64] [--source DIR]``.
Needs bpy installed (dev extra); the project never needs this at run time.
"""
from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

import numpy as np

from .envmap import ENVMAP_DIR, as_latlong, downsample_latlong
from .errors import InputError

LICENSE_TEXT = """# Default environment maps

Small versions ({w} x {h}, float32 OpenEXR, lat-long, linear radiance) of the eight
studio-light HDRIs that ship with Blender (`bpy/*/datafiles/studiolights/world/*.exr`
in the `bpy` wheel), made by `core/envmap_assets.py` (area averaging, which keeps the
radiance integral; negative values clamped to 0).

**Licence: CC0 1.0 (public domain).** The HDRIs were created by Greg Zaal
(Poly Haven, https://polyhaven.com). Blender's licence note, copied verbatim:

```
{license}
```

Lat-long convention: Blender's (the files are Blender's own maps, only smaller), which is also
`pnrelight.envmap`'s: top row = up (+y), image centre = +x (Blender +X), u = 0.25 = -z (Blender +Y,
behind the subject), u = 0.75 = +z (in front of the subject); see docs/lightstage.md.
"""


def find_source_dir() -> Path:
    """The studiolights/world folder of the installed bpy wheel."""
    import importlib.util

    spec = importlib.util.find_spec("bpy")
    roots = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    for root in roots:
        hits = sorted(glob.glob(str(root / "*" / "datafiles" / "studiolights" / "world")))
        if hits:
            return Path(hits[0])
    raise InputError("Blender studio lights not found (install the dev extra: pip install -e '.[dev]', or pass --source DIR)")


def make_default_envmaps(source_dir: Path, out_dir: Path = ENVMAP_DIR, height: int = 64) -> list[Path]:
    """Downsample every ``*.exr`` in ``source_dir`` into ``out_dir``; write LICENSE.md. Returns the written maps."""
    from .atomic import atomic_output_file
    from .imageio import read_exr, write_exr

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for src in sorted(Path(source_dir).glob("*.exr")):
        env = as_latlong(np.asarray(read_exr(src))[..., :3], what=str(src))
        small = downsample_latlong(env, height)
        dst = out_dir / src.name
        with atomic_output_file(dst) as tmp:
            write_exr(tmp, small)
        dst.chmod(0o644)  # mkstemp creates 0600
        written.append(dst)
    lic = Path(source_dir) / "license.txt"
    text = lic.read_text().strip() if lic.is_file() else "All HDRIs are licensed as CC0."
    (out_dir / "LICENSE.md").write_text(LICENSE_TEXT.format(w=2 * height, h=height, license=text))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=None, help="folder of lat-long .exr files (default: bpy's studio lights)")
    parser.add_argument("--height", type=int, default=64, help="output height in texels (width is twice that)")
    parser.add_argument("-o", "--out", type=Path, default=ENVMAP_DIR)
    args = parser.parse_args(argv)
    try:
        source = args.source or find_source_dir()
        for path in make_default_envmaps(source, args.out, args.height):
            print(path)
    except InputError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
