"""The light stage in Blender, end to end with bpy==5.0.1: Add Light Stage (presets, hemisphere,
3D cursor, JSON layouts, bad files) against the core's layouts in Blender axes, and Render OLAT
Dataset of a white diffuse plane (32 x 32 px, 8 samples) read back here: the dataset format, the
ground-truth passes, the calibration (a sun of strength 1 on a white Lambertian plate renders
1/pi: the "core vs Blender" anchor; point and area lights per pixel), resume, stopping early
(max_frames, the modal handler's Esc) and bad input.

All Blender work runs in one subprocess (tests/blender_lightstage_worker.py), which sees only the
extension's bundled wheel, and no Pillow or scipy (as in Blender).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import build_addon, run_blender_worker

pytestmark = pytest.mark.blender
if importlib.util.find_spec("bpy") is None:
    pytest.skip("bpy (pip install bpy==5.0.1, Python 3.11) is not installed", allow_module_level=True)

from pnrelight.imageio import read_exr, read_image  # noqa: E402
from pnrelight.lightstage import layouts  # noqa: E402
from pnrelight.lightstage.layouts import load_layout, to_blender  # noqa: E402

SAMPLES = 8
SIZE = 32
CAMERA_HEIGHT = 2.0  # the camera looks straight down at the 1 m plane (lens 50 mm, sensor 36 mm)
# core frame: straight up (the plane's normal), 60 degrees off it, straight down (behind the plane), 45 degrees off it
LAYOUT = {"name": "calib4", "lights": [{"direction": [0.0, 1.0, 0.0]}, {"direction": [math.sqrt(3) / 2, 0.5, 0.0]},
                                       {"direction": [0.0, -1.0, 0.0]}, {"direction": [0.0, math.sqrt(0.5), math.sqrt(0.5)]}]}
SUBJECT = "subjects/Subject"


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    root = tmp_path_factory.mktemp("blender_lightstage")
    zip_path, build = build_addon(root / "dist")
    (root / "calib4.json").write_text(json.dumps(LAYOUT))
    job = {"zip": str(zip_path), "out": str(root / "out"), "layout_json": str(root / "calib4.json"), "samples": SAMPLES}
    results, _ = run_blender_worker("blender_lightstage_worker.py", job, root, timeout=300)
    return {"root": root, "zip": zip_path, "build": build, "out": root / "out", "results": results}


def _manifest(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


def _plane_points(intr: dict) -> np.ndarray:
    """(H, W, 3) Blender world point of each pixel centre's ray on the plane z = 0 (camera at
    (0, 0, CAMERA_HEIGHT) looking down -Z, +Y up the image)."""
    v, u = np.mgrid[0:intr["h"], 0:intr["w"]] + 0.5
    x = CAMERA_HEIGHT * (u - intr["cx"]) / intr["fl_x"]
    y = -CAMERA_HEIGHT * (v - intr["cy"]) / intr["fl_y"]
    return np.stack([x, y, np.zeros_like(x)], axis=-1)


def _interior(folder: Path) -> np.ndarray:
    """Pixels fully on the plane, one pixel away from its edge (the mask, eroded)."""
    m = read_image(folder / SUBJECT / "cam_00" / "mask.png") > 0.999
    return m & np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1)


def _expected(light: dict, points: np.ndarray) -> np.ndarray:
    """Radiance of the white Lambertian plane (normal +Z) lit by one light of lights.json, (H, W)."""
    d = to_blender(light["direction"])
    s = light["intensity"]["strength"]
    if light["type"] == "sun":
        return np.full(points.shape[:2], s * max(d[2], 0.0) / math.pi)
    to_light = to_blender(light["position"]) - points
    dist = np.linalg.norm(to_light, axis=-1)
    cos_surface = np.clip(to_light[..., 2] / dist, 0.0, None)
    if light["type"] == "point":
        intensity = s / (4 * math.pi)
    else:  # a disk facing the centre, one-sided Lambertian: P / pi * cos(emission angle)
        intensity = s / math.pi * np.clip(np.einsum("hwc,c->hw", to_light, d) / dist, 0.0, None)
    return intensity * cos_surface / dist**2 / math.pi


# ----------------------------------------------------------------------------- the extension


def test_extension_builds_validates_and_ships_the_light_stage(session):
    assert "Success" in session["build"].stdout
    with zipfile.ZipFile(session["zip"]) as z:
        names = set(z.namelist())
    assert {"lightstage.py", "olat.py", "__init__.py"} <= names
    res = session["results"]
    assert res["install"] == ["FINISHED"] and "blender_user" in res["pnrelight_file"]  # the bundled wheel, no scipy
    assert res["menus"] == {"light_add": True, "render": True}
    assert res["disabled"] == {"add_gone": True, "render_gone": True}


# ----------------------------------------------------------------------------- Add Light Stage


def _check_directions(stage: dict, layout) -> None:
    offsets = np.array([light["offset"] for light in stage["lights"]])
    expected = to_blender(layout.directions)
    assert np.allclose(offsets / np.linalg.norm(offsets, axis=1, keepdims=True), expected, atol=1e-5)
    assert np.allclose([light["axis"] for light in stage["lights"]], expected, atol=1e-5)  # +Z away: shines at the centre
    assert [light["props"]["id"] for light in stage["lights"]] == list(range(len(layout)))
    assert np.allclose([light["props"]["solid_angle_sr"] for light in stage["lights"]], layout.solid_angles, rtol=1e-9)
    assert np.allclose(stage["props"]["solid_angles_sr"], layout.solid_angles, rtol=1e-9)
    assert {light["parent"] for light in stage["lights"]} == {stage["name"]}


def test_preset_stage_on_an_object(session):
    add = session["results"]["add"]["preset"]
    assert add["status"] == ["FINISHED"]
    stage, layout = add["stage"], load_layout("156")
    assert len(stage["lights"]) == 156 and add["after"]["lights"] - add["before"]["lights"] == 156
    _check_directions(stage, layout)  # numpy cells in Blender = scipy cells here
    assert np.allclose(stage["centre"], [0.3, -0.2, 0.5], atol=1e-6)  # the probe plane's centre
    radius = 3 * math.hypot(1.0, 0.5)  # 3 bounding-sphere radii of the 2 x 1 m plane
    assert np.allclose(np.linalg.norm([light["offset"] for light in stage["lights"]], axis=1), radius, rtol=1e-5)
    props = stage["props"]
    assert props["layout"] == "156" and props["count"] == 156 and props["light_type"] == "sun"
    assert props["strength"] == 1.0 and props["unit"] == "W/m^2" and "S/pi" in props["calibration"]
    assert props["radius_m"] == pytest.approx(radius)
    assert all(light["type"] == "SUN" and light["energy"] == 1.0 for light in stage["lights"])
    size = 0.1 * radius / 1.5  # the layout's 0.1 m at 1.5 m, scaled with the rig
    assert all(light["size"] == pytest.approx(2 * math.atan(size / 2 / radius), rel=1e-5) for light in stage["lights"])
    assert stage["collection"] == stage["name"]


def test_hemisphere_of_point_lights(session):
    stage = session["results"]["add"]["hemisphere"]["stage"]
    layout = layouts.upper_hemisphere(load_layout("ico:162"))
    assert len(stage["lights"]) == len(layout) == 91 and stage["props"]["hemisphere"]
    _check_directions(stage, layout)
    offsets = np.array([light["offset"] for light in stage["lights"]])
    assert offsets[:, 2].min() > -1e-6 and np.allclose(np.linalg.norm(offsets, axis=1), 1.2, rtol=1e-5)
    for light in stage["lights"]:  # 2 W/m^2 at the centre from 1.2 m: P = 2 * 4 pi 1.2^2
        assert light["type"] == "POINT" and light["energy"] == pytest.approx(2 * 4 * math.pi * 1.44, rel=1e-6)
        assert light["size"] == pytest.approx(0.1 * 1.2 / 1.5, rel=1e-6) and light["visible_camera"] is False
    assert sum(light["props"]["solid_angle_sr"] for light in stage["lights"]) == pytest.approx(2 * math.pi)


def test_area_lights_at_the_3d_cursor(session):
    stage = session["results"]["add"]["cursor"]["stage"]
    layout = load_layout(20)
    assert len(stage["lights"]) == 20 and np.allclose(stage["centre"], [1.0, 2.0, 3.0])
    _check_directions(stage, layout)
    assert np.allclose(np.linalg.norm([light["offset"] for light in stage["lights"]], axis=1), 1.5, rtol=1e-5)
    for light in stage["lights"]:  # the layout's own 1.5 m and 0.1 m; P = pi r^2 for 1 W/m^2
        assert light["type"] == "AREA" and light["energy"] == pytest.approx(math.pi * 1.5**2, rel=1e-6)
        assert light["size"] == pytest.approx(0.1, rel=1e-6)


def test_bad_layout_file_adds_nothing(session):
    add = session["results"]["add"]
    assert "light layout not found" in add["bad_file"]["error"] and add["bad_file"]["before"] == add["bad_file"]["after"]
    assert "choose a .lp or .json" in add["no_file"]["error"] and add["no_file"]["before"] == add["no_file"]["after"]


# ----------------------------------------------------------------------------- Render OLAT Dataset


def test_dataset_format(session):
    ds = session["out"] / "ds_sun"
    meta = json.loads((ds / "dataset.json").read_text())
    assert meta["schema_version"] == 1 and meta["generator"]["name"].startswith("pnrelight")
    assert meta["units"] == {"length": "metres", "radiance": "W/(m^2 sr)"} and meta["colour_space"] == "linear Rec.709"
    assert meta["layout"] == {"name": "calib4", "count": 4, "hemisphere": False}
    assert meta["renderer"]["samples"] == SAMPLES and meta["renderer"]["version"].startswith("5.0")
    assert meta["calibration"]["light_type"] == "sun" and meta["calibration"]["strength"] == 1.0
    assert meta["image_size"] == [SIZE, SIZE] and meta["cameras"] == {"Subject": 1} and meta["subjects"] == ["Subject"]
    assert "Blender/Cycles" in meta["latlong_convention"] and meta["envs"] == [] and meta["seeds"] == [0]

    lights = json.loads((ds / "lights.json").read_text())["lights"]
    layout = load_layout(session["root"] / "calib4.json")
    radius = 3 * math.sqrt(0.5)  # fitted to the 1 m plane
    assert [light["id"] for light in lights] == [0, 1, 2, 3]
    assert np.allclose([light["direction"] for light in lights], layout.directions, atol=1e-6)  # core frame
    assert np.allclose([light["position"] for light in lights], layout.directions * radius, atol=1e-5)
    assert np.allclose([light["solid_angle_sr"] for light in lights], layout.solid_angles)
    assert all(light["type"] == "sun" and light["intensity"] == {"strength": 1.0, "unit": "W/m^2", "colour": [1.0, 1.0, 1.0]}
               for light in lights)

    rows = _manifest(ds)
    assert len(rows) == 8 and len({r["path"] for r in rows}) == 8  # 4 OLAT frames + albedo, normal, depth, mask
    assert sorted(r["kind"] for r in rows) == ["albedo", "depth", "mask", "normal", "olat", "olat", "olat", "olat"]
    assert sorted(r["light_idx"] for r in rows if r["kind"] == "olat") == [0, 1, 2, 3]
    for r in rows:
        assert r["status"] == "done" and r["subject"] == "Subject" and r["cam_idx"] == 0 and r["shard"] is None
        assert hashlib.sha256((ds / r["path"]).read_bytes()).hexdigest() == r["sha256"]
    assert not [p for p in ds.rglob("*") if ".part" in p.name]  # no temporary files left

    tf = json.loads((ds / SUBJECT / "transforms.json").read_text())
    f = 50.0 / 36.0 * SIZE
    assert tf["fl_x"] == pytest.approx(f) and tf["fl_y"] == pytest.approx(f) and (tf["cx"], tf["cy"], tf["w"], tf["h"]) == (16, 16, 32, 32)
    assert tf["camera_angle_x"] == pytest.approx(2 * math.atan(SIZE / 2 / f))
    assert [fr["file_path"] for fr in tf["frames"]] == [f"cam_00/olat/{i:03d}.exr" for i in range(4)]
    pose = np.array(tf["frames"][0]["transform_matrix"])  # core frame, stage centre at the origin
    assert np.allclose(pose[:3, 3], [0.0, CAMERA_HEIGHT, 0.0]) and np.allclose(-pose[:3, 2], [0.0, -1.0, 0.0])
    assert np.allclose(tf["frames"][1]["pl_pos"], lights[1]["position"]) and tf["frames"][1]["pl_intensity"] == [1.0, 1.0, 1.0]

    import OpenEXR

    with OpenEXR.File(str(ds / SUBJECT / "cam_00" / "olat" / "000.exr")) as exr_file:
        assert exr_file.header()["compression"] == OpenEXR.ZIP_COMPRESSION
        assert {k: c.pixels.dtype for k, c in exr_file.channels().items()} == {"RGBA": np.float16}
    with OpenEXR.File(str(ds / SUBJECT / "cam_00" / "normal.exr")) as exr_file:
        assert exr_file.header()["compression"] == OpenEXR.ZIP_COMPRESSION
    assert read_image(ds / "preview.png").shape[2] == 3


def test_calibration_sun_point_and_area(session):
    """Core vs Blender: a white Lambertian plane facing a sun of strength 1 renders 1/pi; each light's
    frame matches E cos(theta) / pi per pixel (near-field for point and area lights)."""
    out = session["out"]
    inside = _interior(out / "ds_sun")  # the same plane and camera in every dataset
    seen = read_exr(out / "ds_sun" / SUBJECT / "cam_00" / "albedo.exr")[..., 0] > 0  # the plane and the clutter cube
    outside = ~(seen | np.roll(seen, 1, 0) | np.roll(seen, -1, 0) | np.roll(seen, 1, 1) | np.roll(seen, -1, 1))
    assert inside.sum() > 300 and outside.sum() > 300
    points = _plane_points(json.loads((out / "ds_sun" / SUBJECT / "transforms.json").read_text()))
    anchor = read_exr(out / "ds_sun" / SUBJECT / "cam_00" / "olat" / "000.exr")
    assert np.abs(anchor[inside][:, :3] * math.pi - 1.0).max() < 0.01  # 1/pi within 1 %
    for key, tol in (("sun", 0.01), ("point", 0.03), ("area", 0.03)):
        ds = out / f"ds_{key}"
        lights = json.loads((ds / "lights.json").read_text())["lights"]
        assert [light["type"] for light in lights] == [key] * 4
        for light in lights:
            frame = read_exr(ds / SUBJECT / "cam_00" / "olat" / f"{light['id']:03d}.exr")
            expected = _expected(light, points)[inside][:, None]
            got = frame[inside][:, :3]
            assert np.allclose(got, expected, rtol=tol, atol=2e-3), (key, light["id"], np.abs(got - expected).max())
            assert np.allclose(frame[outside][:, :3], 0.0, atol=1e-3)  # black world, nothing else lit


def test_ground_truth_passes(session):
    cam = session["out"] / "ds_sun" / SUBJECT / "cam_00"
    inside = _interior(session["out"] / "ds_sun")
    albedo, normal, depth = (read_exr(cam / f"{k}.exr") for k in ("albedo", "normal", "depth"))
    mask = read_image(cam / "mask.png")
    assert albedo.shape == (SIZE, SIZE, 3) and np.allclose(albedo[inside], 1.0, atol=1e-3)  # the Diffuse Color pass
    assert np.allclose(normal[inside], [0.0, 0.0, 1.0], atol=1e-3)  # camera space: towards the camera
    assert depth.ndim == 2 and np.allclose(depth[inside], CAMERA_HEIGHT, atol=1e-4)  # along -z, not the ray length
    f = 50.0 / 36.0 * SIZE
    side = f / CAMERA_HEIGHT  # the 1 m plane in pixels
    assert mask.sum() == pytest.approx(side**2, rel=0.03)  # antialiased coverage of the plane
    on_plane = np.zeros_like(inside)
    lo, hi = int(SIZE / 2 - side / 2) - 1, int(math.ceil(SIZE / 2 + side / 2)) + 1  # + the pixel filter
    on_plane[lo:hi, lo:hi] = True
    assert np.all(mask[~on_plane] == 0) and np.all(depth[~on_plane & (albedo[..., 0] == 0)] == 0)
    cube = ~on_plane & (albedo[..., 0] > 0.5)  # the clutter cube (Blender's default grey): seen, not in the mask
    assert cube.sum() >= 2 and albedo[cube].max() <= 0.81 and np.all((depth[cube] > 1.9) & (depth[cube] < 2.0))


def test_rerun_is_a_no_op_and_resume_renders_only_the_missing_frame(session):
    runs = session["results"]["runs"]
    assert runs["first"]["rendered"] == 5  # the passes + 4 lights
    assert runs["again"]["rendered"] == 0 and runs["again"]["unchanged"]
    assert runs["resume"]["rendered"] == 1
    assert runs["resume"]["changed"] == ["manifest.jsonl", "preview.png", "subjects/Subject/cam_00/olat/001.exr"]
    rows = _manifest(session["out"] / "ds_sun")
    assert len(rows) == 8 and rows[-1]["path"] == "subjects/Subject/cam_00/olat/001.exr"


def test_stopping_keeps_a_valid_partial_dataset_and_a_rerun_finishes_it(session):
    runs = session["results"]["runs"]
    stop = runs["max_frames"]
    assert stop["status"] == ["CANCELLED"] and stop["error"] is None
    assert [json.loads(r)["kind"] for r in stop["manifest"]] == ["mask", "albedo", "normal", "depth", "olat"]
    assert not any(".part" in f for f in stop["files"]) and "preview.png" not in stop["files"]
    modal = runs["modal"]
    assert [s["result"] for s in modal["steps"]] == [["RUNNING_MODAL"], ["RUNNING_MODAL"], ["CANCELLED"]]
    assert [s["rendered"] for s in modal["steps"]] == [1, 1, 1]  # a timer tick renders one frame; Esc stops there
    assert len(modal["manifest"]) == 6 and "subjects/Subject/cam_00/olat/001.exr" in modal["files"]
    assert modal["reports"][0][0] == ["WARNING"] and "rerun to resume" in modal["reports"][0][1]
    assert modal["state"] == session["results"]["state_before"]  # the scene is restored when stopped
    assert runs["finish"]["status"] == ["FINISHED"] and runs["finish"]["rendered"] == 2
    ds = session["out"] / "ds_stop"
    assert len(_manifest(ds)) == 8 and (ds / "preview.png").is_file()
    for k in range(4):  # the same frames as one uninterrupted run (same seed)
        a = read_exr(ds / SUBJECT / "cam_00" / "olat" / f"{k:03d}.exr")
        b = read_exr(session["out"] / "ds_sun" / SUBJECT / "cam_00" / "olat" / f"{k:03d}.exr")
        assert np.array_equal(a, b)


def test_the_scene_is_restored_after_a_run(session):
    res = session["results"]
    assert res["state_after"] == res["state_before"]


BAD = {"no_stage": "no light stage named 'Nope'", "not_writable": "is a file", "other_samples": "made with other samples",
       "relative_unsaved": "save the file first", "no_camera": "no active camera", "ortho": "perspective",
       "which_stage": "select the one to render"}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_is_refused_and_writes_nothing(session, name):
    outcome = session["results"]["bad"][name]
    assert outcome["status"] == ["RuntimeError"] and outcome["error"].startswith("Error: ") and BAD[name] in outcome["error"]
    assert outcome["before"] == outcome["after"]  # no datablock left behind (the black world included)
    assert outcome.get("files_unchanged", True) and outcome.get("state_unchanged", True)
