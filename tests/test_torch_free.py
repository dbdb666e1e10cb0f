"""The torch-free promise: what Blender uses imports without torch."""
import subprocess
import sys

MODULES = ["pnrelight", "pnrelight.lights", "pnrelight.imageio", "pnrelight.formats.lp", "pnrelight.formats.mlic",
           "pnrelight.formats.rti_folder", "pnrelight.rti.bases", "pnrelight.rti.mlp", "pnrelight.rti.model",
           "pnrelight.avatar.relight", "pnrelight.avatar.color", "pnrelight.avatar.intrinsics",
           "pnrelight.avatar.raster", "pnrelight.avatar.uv", "pnrelight.avatar.export", "pnrelight.avatar.render",
           "pnrelight.avatar.preview", "pnrelight.avatar.pipeline",
           "pnrelight.rti.fit", "pnrelight.rti.evaluate", "pnrelight.envmap",
           "pnrelight.lightstage", "pnrelight.lightstage.layouts", "pnrelight.lightstage.envlight",
           "pnrelight.lightstage.dataset", "pnrelight.lightstage.olat", "pnrelight.lightstage.subjects",
           "pnrelight.lightstage.rig"]


def test_core_imports_without_torch():
    code = ("import importlib, sys\n"
            "sys.modules['torch'] = None  # any 'import torch' now raises\n"
            f"for m in {MODULES!r}: importlib.import_module(m)\n"
            "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
