"""The Blender add-on's bpy-free helpers, here without Blender: pnrelight.formats.exr (numpy OpenEXR and
PNG files, checked against OpenEXR and Pillow) and blender_addon/olat.py (dataset paths, intrinsics,
manifest bookkeeping for resume, fingerprints)."""
from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest
from PIL import Image

from conftest import REPO


def _load(name):
    spec = importlib.util.spec_from_file_location(f"pnrelight_addon_{name}", REPO / "blender_addon" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


from pnrelight.formats import exr  # noqa: E402 - the numpy codec the add-on writes with
olat = _load("olat")


@pytest.mark.parametrize("shape", [(1, 1), (37, 5), (64, 48)])
def test_exr_round_trip_and_openexr_agree(tmp_path, shape):
    openexr = pytest.importorskip("OpenEXR")
    rng = np.random.default_rng(0)
    planes = {c: rng.normal(size=shape).astype(np.float32) * (k + 1) for k, c in enumerate("RGB")}
    exr.write_exr(tmp_path / "half.exr", planes)
    exr.write_exr(tmp_path / "float.exr", {"R": planes["R"]}, half=False)
    with openexr.File(str(tmp_path / "half.exr")) as f:
        assert f.header()["compression"] == openexr.ZIP_COMPRESSION
        rgb = f.channels()["RGB"].pixels
        assert rgb.dtype == np.float16
    for k, c in enumerate("RGB"):
        assert np.array_equal(rgb[..., k], planes[c].astype(np.float16))
    back = exr.read_exr(tmp_path / "half.exr")
    assert set(back) == {"R", "G", "B"} and np.array_equal(back["G"], planes["G"].astype(np.float16).astype(np.float32))
    with openexr.File(str(tmp_path / "float.exr")) as f:
        assert np.array_equal(f.channels()["R"].pixels, planes["R"])
    assert np.array_equal(exr.read_exr(tmp_path / "float.exr")["R"], planes["R"])
    # files OpenEXR writes (ZIP, NONE) read back
    for name, compression in (("zip", openexr.ZIP_COMPRESSION), ("none", openexr.NO_COMPRESSION)):
        header = {"compression": compression, "type": openexr.scanlineimage}
        with openexr.File(header, {"RGBA": np.dstack([planes["R"], planes["G"], planes["B"], planes["R"]])}) as f:
            f.write(str(tmp_path / f"{name}.exr"))
        back = exr.read_exr(tmp_path / f"{name}.exr")
        assert np.array_equal(back["B"], planes["B"]) and np.array_equal(back["A"], planes["R"])


def test_png_matches_pillow(tmp_path):
    grey = (np.arange(12 * 20).reshape(12, 20) % 256).astype(np.uint8)
    rgb = np.dstack([grey, 255 - grey, grey // 2])
    exr.write_png(tmp_path / "g.png", grey)
    exr.write_png(tmp_path / "c.png", rgb)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "g.png")), grey)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "c.png")), rgb)


def test_paths_and_intrinsics():
    assert olat.olat_relpath("head", 3, 7, 114) == "subjects/head/cam_03/olat/007.exr"
    assert olat.olat_relpath("head", 0, 1234, 2000) == "subjects/head/cam_00/olat/1234.exr"
    assert olat.pass_relpath("head", 1, "mask") == "subjects/head/cam_01/mask.png"
    assert olat.PASS_FILES == {"mask": "mask.png", "albedo": "albedo.exr", "normal": "normal.exr", "depth": "depth.exr"}
    assert olat.subject_id("Head mesh.001") == "Head_mesh.001" and olat.subject_id("") == "subject"
    k = olat.intrinsics(lens_mm=50, sensor_width_mm=36, sensor_height_mm=24, sensor_fit="AUTO", width=640, height=480)
    assert k["fl_x"] == pytest.approx(50 / 36 * 640) and (k["cx"], k["cy"]) == (320, 240)
    assert k["camera_angle_x"] == pytest.approx(2 * math.atan(18 / 50))
    tall = olat.intrinsics(lens_mm=50, sensor_width_mm=36, sensor_height_mm=24, sensor_fit="AUTO", width=480, height=640)
    assert tall["fl_y"] == pytest.approx(50 / 36 * 640)  # AUTO: the sensor width spans the larger side
    vert = olat.intrinsics(lens_mm=50, sensor_width_mm=36, sensor_height_mm=24, sensor_fit="VERTICAL", width=640, height=480)
    assert vert["fl_x"] == pytest.approx(50 / 24 * 480)
    shifted = olat.intrinsics(lens_mm=50, sensor_width_mm=36, sensor_height_mm=24, sensor_fit="AUTO", width=640,
                              height=480, shift_x=0.1, shift_y=0.1)
    assert (shifted["cx"], shifted["cy"]) == pytest.approx((320 - 64, 240 + 64))


def test_manifest_keeps_only_verified_rows(tmp_path):
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.exr").write_bytes(name.encode() * 10)
    rows = [olat.record_frame(tmp_path, path=f"{n}.exr", seconds=0.1, subject="s", cam_idx=0, light_idx=i, kind="olat")
            for i, n in enumerate("abc")]
    assert [r["sha256"] for r in rows] == [olat.sha256_file(tmp_path / f"{n}.exr") for n in "abc"]
    assert set(olat.finished_rows(tmp_path)) == {"a.exr", "b.exr", "c.exr"}
    (tmp_path / "b.exr").write_bytes(b"changed")  # damaged
    (tmp_path / "c.exr").unlink()  # missing
    with open(tmp_path / "manifest.jsonl", "a") as f:
        f.write('{"path": "a.ex')  # a torn last line
    assert set(olat.finished_rows(tmp_path)) == {"a.exr"}
    assert [json.loads(line)["path"] for line in (tmp_path / "manifest.jsonl").read_text().splitlines()] == ["a.exr"]


def test_fingerprint_names_what_changed():
    parts = {"layout": {"name": "156", "count": 156}, "lights": [{"id": 0}], "cameras": [{"pose": [[1.0]]}],
             "image_size": [64, 64], "samples": 16, "subject": "head"}
    a = {"fingerprint": olat.fingerprint(parts)}
    b = {"fingerprint": olat.fingerprint({**parts, "samples": 32, "cameras": [{"pose": [[1.0 + 1e-9]]}]})}
    assert olat.differences(a, b) == ["samples"]  # poses equal to 1e-6 count as the same
    assert olat.differences({}, b) == ["fingerprint"]
