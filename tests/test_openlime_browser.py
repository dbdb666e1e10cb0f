"""The real OpenLIME viewer renders our model folders in a real browser (headless Chromium).

Each case exports a model (PTM, HSH-9, a NeuralRTI teacher 50x50, a student 20x20) in the
``image`` and the ``deepzoom`` layout, serves it with OpenLIME on 127.0.0.1, shows it 1:1 in a
canvas the image's size, sets one light, and compares the canvas with
``pnrelight rti relight MODEL --planes --light LX LY`` (the same 8-bit planes): PSNR >= 35 dB,
no console error, no failed request, and the layout's files (tiles or whole planes) were the
ones fetched. 300x220 with 256-pixel tiles: the pyramid has a 44-pixel-wide edge tile.

Set PNRELIGHT_DOCS_IMAGES=1 to write docs/images/openlime_browser.png from the run; run with
``-s`` to see the PSNR table.
"""
from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest

from conftest import REPO, SHARED
from openlime_browser import PAGE, Browser, find_chromium, serve
from pnrelight.formats.mlic import MLIC
from pnrelight.formats.rti_folder import save_model
from pnrelight.imageio import read_image, to_uint8
from pnrelight.lights import hemisphere_directions
from pnrelight.metrics import psnr
from pnrelight.rti.fit import fit_linear
from pnrelight.rti.synthetic import relief_coin, render

CHROMIUM = find_chromium()
OPENLIME_JS = SHARED / "vendor" / "openlime" / "js" / "openlime.min.js"
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (Debian: apt-get install chromium)")

H, W = 220, 300
MIN_PSNR = 35.0
LIGHTS = {"ptm": (0.3, 0.4), "hsh9": (-0.45, 0.3), "teacher": (0.2, -0.5), "student": (-0.3, -0.4)}  # lz >= 0.8
CASES = [(kind, layout, 256, 0) for kind in LIGHTS for layout in ("image", "deepzoom")]
CASES.append(("ptm", "deepzoom", 64, 2))  # many tiles with an overlap: 5x4 full-resolution tiles
RESULTS: list[dict] = []
DOCS_CASE = ("student", "deepzoom", 256, 0)


def case_id(case) -> str:
    kind, layout, tile, overlap = case
    return f"{kind}-{layout}" + (f"-t{tile}o{overlap}" if (tile, overlap) != (256, 0) else "")


@pytest.fixture(scope="module")
def models():
    """PTM, HSH-9, a 2-epoch teacher and a 1-epoch student of a 300x220 synthetic relief."""
    from pnrelight.rti import neural

    normals, albedo, _ = relief_coin(W)
    rows = slice((W - H) // 2, (W - H) // 2 + H)
    dirs = hemisphere_directions(24, min_elevation_deg=15)
    mlic = MLIC(images=to_uint8(render(normals[rows], albedo[rows], dirs)), directions=dirs,
                names=[f"{i}.png" for i in range(len(dirs))], mask=None, folder=None)
    teacher, record = neural.train_teacher(mlic, epochs=2, max_pixels=8192, seed=0)
    student, _ = neural.distill_student(teacher, mlic, epochs=1, max_pixels=8192, teacher_encoder=record["encoder"])
    return {"ptm": fit_linear(mlic, "ptm"), "hsh9": fit_linear(mlic, "hsh", 9), "teacher": teacher, "student": student}


class Viewer:
    """OpenLIME in one headless Chromium page, serving ``root`` (the page, openlime.min.js, model folders)."""

    def __init__(self, root, profile):
        if not OPENLIME_JS.is_file():
            pytest.skip(f"OpenLIME build not found at {OPENLIME_JS}")
        shutil.copy(OPENLIME_JS, root / "openlime.min.js")
        (root / "page.html").write_text(PAGE, encoding="utf-8")
        self.server, self.base, self.failures, self.requests = serve(root)
        self.browser = Browser(CHROMIUM, profile)
        self.browser.command("Emulation.setDeviceMetricsOverride", {"width": W, "height": H, "deviceScaleFactor": 1, "mobile": False})
        self.count = 0

    def render(self, folder, layer_type, layout, light, timeout=90.0):
        """Show ``folder`` and return (canvas (H, W, 3) uint8, errors, requested paths)."""
        self.count += 1
        self.browser.errors()
        self.failures.clear()
        self.requests.clear()
        url = (f"{self.base}/page.html?n={self.count}&w={W}&h={H}&type={layer_type}&layout={layout}"
               f"&url={folder.name}/info.json&lx={light[0]}&ly={light[1]}")
        self.browser.command("Page.navigate", {"url": url})
        ready = f"location.search.startsWith('?n={self.count}&') && typeof settled === 'function' && settled()"
        deadline = time.monotonic() + timeout
        while not self.browser.evaluate(ready):
            if time.monotonic() > deadline:
                raise AssertionError(f"OpenLIME did not finish loading {folder.name} in {timeout:.0f} s: {self.browser.errors() + self.failures}")
            time.sleep(0.1)
        shot = self.browser.screenshot(W, H)
        for _ in range(50):  # every tile is in: wait for the frame to stop changing (relighting)
            time.sleep(0.2)
            previous, shot = shot, self.browser.screenshot(W, H)
            if np.array_equal(previous, shot):
                break
        return shot, self.browser.errors() + list(self.failures), list(self.requests)

    def close(self):
        self.browser.close()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def viewer(tmp_path_factory):
    root = tmp_path_factory.mktemp("openlime_www")
    session = Viewer(root, tmp_path_factory.mktemp("chromium_profile"))
    session.root = root
    yield session
    session.close()
    if RESULTS:
        print("\nOpenLIME canvas vs pnrelight rti relight --planes (300x220):")
        print(f"{'model':10} {'layout':22} {'light':>14} {'PSNR dB':>8} {'max |diff|':>10} {'s':>5}")
        for r in RESULTS:
            print(f"{r['kind']:10} {r['layout']:22} {str(r['light']):>14} {r['psnr']:8.2f} {r['maxdiff']:10d} {r['seconds']:5.1f}")


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_openlime_renders_model_folder(case, models, viewer):
    from pnrelight_cli.main import main as pnrelight

    kind, layout, tile, overlap = case
    model = models[kind]
    folder = save_model(model, viewer.root / case_id(case), layout=layout, tile_size=tile, overlap=overlap)
    light = LIGHTS[kind]
    ref_path = viewer.root / f"{case_id(case)}_ref.png"
    assert pnrelight(["--no-progress", "rti", "relight", str(folder), "--planes", "--light", str(light[0]), str(light[1]), "-o", str(ref_path)]) == 0
    reference = to_uint8(read_image(ref_path))

    start = time.perf_counter()
    canvas, errors, requests = viewer.render(folder, "neural" if model.kind == "neural" else "rti", layout, light)
    seconds = time.perf_counter() - start
    assert errors == [], f"OpenLIME reported errors for {case_id(case)}: {errors}"

    first = 1 if model.kind == "neural" else 0
    if layout == "deepzoom":
        top = 1 if tile == 256 else 3  # 300x220: 2 levels of 256-pixel tiles, 4 of 64
        assert f"/{folder.name}/plane_{first}.dzi" in requests
        edge = f"/{folder.name}/plane_{first}_files/{top}/{(W - 1) // tile}_{(H - 1) // tile}.jpg"
        assert edge in requests, f"the edge tile {edge} was not fetched: {requests}"
        assert not any(r.endswith(".jpg") and "_files/" not in r for r in requests)
    else:
        assert f"/{folder.name}/plane_{first}.jpg" in requests and not any(r.endswith(".dzi") for r in requests)

    value = psnr(canvas.astype(np.float32) / 255, reference.astype(np.float32) / 255)
    maxdiff = int(np.abs(canvas.astype(int) - reference.astype(int)).max())
    RESULTS.append({"kind": kind, "layout": case_id(case).split("-", 1)[1], "light": light, "psnr": value, "maxdiff": maxdiff, "seconds": seconds})
    if (kind, layout, tile, overlap) == DOCS_CASE and os.environ.get("PNRELIGHT_DOCS_IMAGES"):
        diff = np.clip(np.abs(canvas.astype(np.float32) - reference) * 10, 0, 255).astype(np.uint8)
        strip = np.concatenate([canvas, np.zeros((H, 4, 3), np.uint8), reference, np.zeros((H, 4, 3), np.uint8), diff], axis=1)
        from PIL import Image  # a 256-colour palette keeps the docs image small (~70 kB)

        Image.fromarray(strip).quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            REPO / "docs" / "images" / "openlime_browser.png", optimize=True)
    assert value >= MIN_PSNR, f"{case_id(case)}: OpenLIME canvas vs pnrelight relight {value:.2f} dB < {MIN_PSNR} (max diff {maxdiff})"
