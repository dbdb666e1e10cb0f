"""Virtual light stage: layouts (counts, Voronoi solid angles, files), environment weights, OLAT
composition, and the project's lat-long convention checked against Cycles (bpy==5.0.1)."""
from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from pnrelight import envmap
from pnrelight.errors import InputError
from pnrelight.formats.lp import write_lp
from pnrelight.lightstage import envlight, layouts
from pnrelight.lightstage import compose, light_weights, load_layout

PRESETS = {"lightstage-x-331": 331, "humanolat-331": 331, "faceolat-331": 331, "156": 156, "114": 114}


def _one_line_error(fn, *args, match=None, **kwargs) -> str:
    with pytest.raises(InputError, match=match) as info:
        fn(*args, **kwargs)
    text = str(info.value)
    assert "\n" not in text and text.strip() == text and text
    return text


# ----------------------------------------------------------------------------- counts


@pytest.mark.parametrize("n", [1, 4, 25, 114, 331, 1000])
def test_fibonacci_count_and_unit_length(n):
    for hemisphere in (False, True):
        d = layouts.fibonacci_sphere(n, hemisphere=hemisphere)
        assert d.shape == (n, 3) and np.allclose(np.linalg.norm(d, axis=1), 1.0)
        if hemisphere:
            assert d[:, 1].min() > 0


def test_icosphere_counts_and_spec():
    assert [len(layouts.icosphere(level)) for level in range(4)] == [12, 42, 162, 642]
    for count in (12, 42, 162, 642):
        layout = load_layout(f"ico:{count}")
        assert len(layout) == count and not layout.hemisphere
        assert np.allclose(np.linalg.norm(layout.directions, axis=1), 1.0)
    assert np.allclose(layouts.icosphere(2)[0], [0, 1, 0])  # a vertex straight up
    assert np.sum(np.abs(layouts.icosphere(1)[:, 1]) < 1e-12) == 10  # and a ring on the horizon
    _one_line_error(load_layout, "ico:100", match="12, 42, 162, 642")
    _one_line_error(layouts.icosphere, 9)


@pytest.mark.parametrize("name,count", sorted(PRESETS.items()))
def test_preset_counts(name, count):
    layout = load_layout(name)
    assert len(layout) == count and layout.name == name
    assert layout.hemisphere == (name == "114")
    assert np.allclose(layout.distance_m, layouts.DEFAULT_DISTANCE_M) and np.allclose(layout.size_m, layouts.DEFAULT_SIZE_M)


def test_load_layout_specs():
    assert len(load_layout(200)) == 200 and len(load_layout("200")) == 200 and len(load_layout("fibonacci:17")) == 17
    assert np.allclose(load_layout("331").directions, load_layout("lightstage-x-331").directions)
    assert load_layout(load_layout("156")).name == "156"
    for bad in ("nope", "fibonacci:x", "", None, 0, True):
        _one_line_error(load_layout, bad)


# ----------------------------------------------------------------------------- solid angles


@pytest.mark.parametrize("spec", ["ico:12", "ico:42", "ico:162", "ico:642", "156", "114", "lightstage-x-331", 7, 500])
def test_cells_cover_the_sphere_or_hemisphere(spec):
    layout = load_layout(spec)
    total = 2 * math.pi if layout.hemisphere else 4 * math.pi
    assert layout.solid_angles.sum() == pytest.approx(total, rel=1e-6)
    assert np.all(layout.solid_angles > 0)


def test_symmetric_layouts_have_equal_cells():
    ico0 = layouts.solid_angles(layouts.icosphere(0))
    assert np.allclose(ico0, 4 * math.pi / 12, rtol=1e-9)
    # level 1: the 12 icosahedron vertices (5 neighbours) share one cell size, the 30 edge midpoints another
    ico1 = layouts.solid_angles(layouts.icosphere(1))
    assert np.ptp(ico1[:12]) < 1e-9 and np.ptp(ico1[12:]) < 1e-9 and ico1[0] < ico1[12]
    # the octahedron's upper half: the zenith keeps its whole cell (4 pi / 6), the four horizon lights half of theirs
    octa = np.array([[0, 1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1], [0, 0, -1]], float)
    assert np.allclose(layouts.solid_angles(octa, hemisphere=True), [2 * math.pi / 3] + [math.pi / 3] * 4)
    cube_upper = np.array([[x, 1, z] for x in (-1, 1) for z in (-1, 1)], float)
    assert np.allclose(layouts.solid_angles(cube_upper, hemisphere=True), math.pi / 2)


def test_upper_hemisphere_subsets():
    ico = load_layout("ico:162")
    upper = layouts.upper_hemisphere(ico)
    assert len(upper) == 91 and upper.hemisphere and upper.directions[:, 1].min() >= 0  # 71 above + 20 on the horizon
    assert upper.solid_angles.sum() == pytest.approx(2 * math.pi, rel=1e-6)
    high = layouts.upper_hemisphere(ico, min_elevation_deg=20.0)
    assert len(high) == 51 and np.degrees(np.arcsin(high.directions[:, 1])).min() >= 20.0 - 1e-9
    assert high.solid_angles.sum() == pytest.approx(2 * math.pi, rel=1e-6)
    _one_line_error(layouts.upper_hemisphere, ico, min_elevation_deg=-10)


def test_bad_direction_sets_raise_one_line():
    _one_line_error(layouts.solid_angles, [[0, 1, 0], [1, 0, 0], [1, 0, 0], [0, 0, 1], [0, -1, 0]], match="lights 2 and 3")
    _one_line_error(layouts.solid_angles, [[0, 1, 0], [1, 0, 0], [0, 0, 0], [0, 0, 1]], match="zero vector")
    _one_line_error(layouts.solid_angles, [[0, 1, 0], [1, 0, np.nan], [0, 0, 1], [0, -1, 0]], match="not finite")
    _one_line_error(layouts.solid_angles, [[1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0]], match="great circle")  # coplanar
    _one_line_error(layouts.solid_angles, np.zeros((0, 3)))
    _one_line_error(layouts.solid_angles, [[0, 1, 0], [1, -0.2, 0], [0, 0.5, 1]], hemisphere=True, match="below the horizon")
    _one_line_error(layouts.make_layout, "x", layouts.icosphere(0), distance_m=[1.0, 2.0], match="distance_m")


# ----------------------------------------------------------------------------- files


def test_lp_layout_dome_frame(tmp_path):
    dirs = layouts.fibonacci_sphere(30, hemisphere=True)  # generated with +y up, written as an RTI dome (+z up)
    lp_dirs = np.stack([dirs[:, 0], -dirs[:, 2], dirs[:, 1]], axis=1)
    write_lp(tmp_path / "dome.lp", [f"img_{k:02d}.png" for k in range(30)], lp_dirs)
    layout = load_layout(str(tmp_path / "dome.lp"))
    assert len(layout) == 30 and layout.hemisphere and layout.name == "dome"
    assert np.allclose(layout.directions, dirs, atol=1e-5)  # lz (towards the dome's camera) -> world up
    assert layout.solid_angles.sum() == pytest.approx(2 * math.pi, rel=1e-6)
    camera = layouts.layout_from_lp(tmp_path / "dome.lp", frame="camera")
    assert np.allclose(camera.directions, lp_dirs, atol=1e-5) and not camera.hemisphere
    assert camera.solid_angles.sum() == pytest.approx(4 * math.pi, rel=1e-6)


def test_json_layout_directions_and_positions(tmp_path):
    spec = {"name": "mine", "lights": [{"direction": [0, 2, 0]}, {"position": [3, 0, 0], "size_m": 0.3},
                                       {"direction": [-1, 0, 0], "distance_m": 2.0}, {"direction": [0, 0, 1]},
                                       {"direction": [0, 0, -1]}, {"direction": [0, -1, 0]}]}
    (tmp_path / "stage.json").write_text(json.dumps(spec))
    layout = load_layout(tmp_path / "stage.json")
    assert layout.name == "mine" and len(layout) == 6 and not layout.hemisphere
    assert np.allclose(layout.directions[1], [1, 0, 0]) and np.allclose(layout.distance_m, [1.5, 3.0, 2.0, 1.5, 1.5, 1.5])
    assert np.allclose(layout.size_m[:2], [0.1, 0.3]) and np.allclose(layout.positions[1], [3, 0, 0])
    assert np.allclose(layout.solid_angles, 4 * math.pi / 6)
    round_trip = tmp_path / "again.json"
    round_trip.write_text(json.dumps(layout.to_dict()))
    assert np.allclose(load_layout(round_trip).directions, layout.directions)


def test_bad_layout_files_raise_one_line(tmp_path):
    def lp(name, text):
        (tmp_path / name).write_text(text)
        return str(tmp_path / name)

    def js(name, obj):
        (tmp_path / name).write_text(obj if isinstance(obj, str) else json.dumps(obj))
        return str(tmp_path / name)

    good = [{"direction": d} for d in ([0, 1, 0], [1, 0, 0], [0, 0, 1], [-1, -1, -1])]
    cases = {
        "missing lp": (str(tmp_path / "missing.lp"), "not found"),
        "missing json": (str(tmp_path / "missing.json"), "not found"),
        "empty lp": (lp("empty.lp", ""), "empty"),
        "empty json": (js("empty.json", ""), "not valid JSON"),
        "no lights": (js("none.json", {"lights": []}), "no lights"),
        "nan lp": (lp("nan.lp", "4\na 0 0 1\nb nan 0 1\nc 1 0 0\nd 0 1 0\n"), "not finite"),
        "nan json": (js("nan.json", {"lights": good + [{"direction": [float("nan"), 0, 1]}]}), "not finite"),
        "zero lp": (lp("zero.lp", "4\na 0 0 1\nb 0 0 0\nc 1 0 0\nd 0 1 0\n"), "zero vector"),
        "zero json": (js("zero.json", {"lights": good + [{"position": [0, 0, 0]}]}), "zero vector"),
        "duplicate lp": (lp("dup.lp", "4\na 0 0 1\nb 0.5 0 0.5\nc 1 0 1\nd 0 1 0\n"), "same direction"),
        "duplicate json": (js("dup.json", {"lights": good + [{"direction": [0, 0, 2]}]}), "same direction"),
        "both keys": (js("both.json", {"lights": [{"direction": [0, 1, 0], "position": [0, 1, 0]}]}), "exactly one"),
        "short vector": (js("short.json", {"lights": [{"direction": [0, 1]}]}), "three numbers"),
        "bad distance": (js("dist.json", {"lights": good[:3] + [{"direction": [0, -1, 0], "distance_m": -1}]}), "> 0"),
        "unknown suffix": (lp("layout.txt", "x"), "neither .lp nor .json"),
    }
    for name, (spec, match) in cases.items():
        text = _one_line_error(load_layout, spec, match=match)
        assert len(text) < 300, name


def test_layout_picture(tmp_path):
    from PIL import Image

    path = layouts.layout_picture([load_layout("114"), load_layout("ico:42")], tmp_path / "p.png", size=120)
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width > 240 and img.height > 2 * 120
        pixels = np.asarray(img.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20  # lights in several colours


# ----------------------------------------------------------------------------- environment weights


@pytest.mark.parametrize("spec", ["lightstage-x-331", "156", "114", "ico:642"])
def test_uniform_environment_weights_sum_to_the_sphere(spec):
    layout = load_layout(spec)
    radiance = np.array([0.5, 1.0, 2.0])
    env = np.ones((128, 256, 3), np.float32) * radiance.astype(np.float32)
    w = light_weights(env, layout)
    total = (2 if layout.hemisphere else 4) * math.pi * radiance
    assert w.shape == (len(layout), 3) and np.allclose(w.sum(axis=0), total, rtol=1e-3)
    if layout.hemisphere:  # nothing below the horizon: a black lower half changes nothing
        lower_black = env.copy()
        lower_black[64:] = 0
        assert np.allclose(light_weights(lower_black, layout), w)


def test_weights_follow_the_voronoi_cells():
    layout = load_layout("lightstage-x-331")
    cells = light_weights(np.ones((256, 512, 3), np.float32), layout, working_height=None)[:, 0]
    assert np.abs(cells / layout.solid_angles - 1).max() < 0.05  # texel quantisation of each cell's border
    assert np.corrcoef(cells, layout.solid_angles)[0, 1] > 0.5


def test_a_bright_texel_lands_in_its_nearest_light_and_yaw_moves_it():
    layout = load_layout("lightstage-x-331")
    h, w = 64, 128
    env = np.zeros((h, w, 3), np.float32)
    i, j = 31, 64  # just above the horizon, u = 0.5 + 1/256: close to +x
    env[i, j] = [100.0, 50.0, 25.0]
    texel = envmap.latlong_directions(h)[i, j]
    assert texel[0] > 0.99
    energy = env[i, j] * envmap.solid_angles(h)[i, j]
    weights = light_weights(env, layout)
    nearest = int(np.argmax(layout.directions @ texel))
    assert np.allclose(weights[nearest], energy, rtol=1e-6) and np.allclose(weights.sum(axis=0), energy, rtol=1e-6)
    # yaw +90 turns the map counter-clockwise seen from above: light from +x now comes from -z
    turned = light_weights(env, layout, yaw_deg=90.0)
    moved = envmap.rotation_y(90.0) @ texel
    assert moved[2] < -0.99
    assert int(np.argmax(turned[:, 0])) == int(np.argmax(layout.directions @ moved))
    assert np.allclose(turned.sum(axis=0), energy, rtol=1e-6)


def test_yaw_equals_turning_the_map_texels():
    env = np.random.default_rng(1).random((64, 128, 3)).astype(np.float32)
    layout = load_layout("156")
    # +90 degrees = 32 columns; the turned map has E(rotation_y(-90) d): u + 0.25, i.e. columns shift left
    assert np.allclose(light_weights(env, layout, yaw_deg=90.0), light_weights(np.roll(env, -32, axis=1), layout), rtol=1e-9)
    assert np.allclose(light_weights(env, layout, yaw_deg=-270.0), light_weights(env, layout, yaw_deg=90.0))


def test_downsampling_keeps_the_integral():
    env = np.random.default_rng(2).random((256, 512, 3)).astype(np.float32) ** 4
    layout = load_layout("lightstage-x-331")
    full = (env * envmap.solid_angles(256)[..., None]).sum(axis=(0, 1))
    assert np.allclose(light_weights(env, layout).sum(axis=0), full, rtol=1e-5)
    fine = light_weights(env, layout, working_height=None)
    coarse = light_weights(env, layout)
    assert np.abs(coarse - fine).sum() / fine.sum() < 0.1  # cell borders move by at most one coarse texel


def test_compose_is_the_weighted_sum():
    rng = np.random.default_rng(3)
    olat = rng.random((7, 9, 11, 3)).astype(np.float32)
    weights = rng.random((7, 3))
    expected = np.einsum("nhwc,nc->hwc", olat.astype(np.float64), weights)
    assert np.allclose(compose(olat, weights), expected, rtol=1e-5)
    assert np.allclose(compose(list(olat), weights), expected, rtol=1e-5)
    assert np.allclose(compose((f for f in olat), weights), expected, rtol=1e-5)
    scalar = compose(olat, weights[:, 0])
    assert np.allclose(scalar, np.einsum("nhwc,n->hwc", olat.astype(np.float64), weights[:, 0]), rtol=1e-5)
    grey = compose(olat[..., 0], weights[:, 0])
    assert grey.shape == (9, 11) and grey.dtype == np.float32
    _one_line_error(compose, olat[:6], weights, match="6 OLAT frames for 7")
    _one_line_error(compose, olat, weights[:6], match="more OLAT frames")
    _one_line_error(compose, [olat[0], olat[1][:5]], weights[:2], match="must match")
    _one_line_error(compose, (olat * 255).astype(np.uint8), weights, match="float")
    _one_line_error(compose, olat[..., 0], weights, match="RGB weights")


def test_relight_and_point_light_multipliers():
    layout = load_layout("ico:42")
    rng = np.random.default_rng(4)
    olat = rng.random((42, 4, 4, 3)).astype(np.float32)
    env = np.ones((32, 64, 3), np.float32)
    expected = compose(olat, light_weights(env, layout))
    assert np.allclose(envlight.relight(olat, env, layout), expected)
    # frames lit by a 100 W point light at 1.5 m: irradiance 100 / (4 pi 1.5^2) instead of 1 W/m^2
    pts = envlight.relight(olat, env, layout, olat_light="point", strength=100.0)
    assert np.allclose(pts, expected * (4 * math.pi * 1.5**2 / 100.0), rtol=1e-5)
    _one_line_error(envlight.olat_multipliers, np.ones((42, 3)), layout, olat_light="spot")


# ----------------------------------------------------------------------------- lat-long convention vs Cycles


@pytest.mark.blender
@pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy (pip install bpy==5.0.1) is not installed")
def test_latlong_convention_matches_cycles(tmp_path):
    """Cycles renders a world texture through 90-degree perspective views (a cube's six faces, and two
    with the world turned by a Mapping node); every pixel must show sample_latlong's colour for its ray."""
    from pnrelight.imageio import write_exr

    h, w, size = 32, 64, 24
    rows, cols = np.arange(h)[:, None] // 4, np.arange(w)[None, :] // 4  # 8 x 16 blocks, each its own colour
    env = np.stack(np.broadcast_arrays((cols + 1) / 16.0, (rows + 1) / 8.0, ((rows + cols) % 3) / 2.0 + 0.1), axis=-1)
    env = env.astype(np.float32)
    write_exr(tmp_path / "env.exr", env)

    def look(forward, up):  # camera-to-world rotation, world frame: columns = camera x, y, z (looks down -z)
        f, u = np.asarray(forward, float), np.asarray(up, float)
        return np.stack([np.cross(f, u), u, -f], axis=1)

    views = [(look([1, 0, 0], [0, 1, 0]), 0.0), (look([-1, 0, 0], [0, 1, 0]), 0.0), (look([0, 0, 1], [0, 1, 0]), 0.0),
             (look([0, 0, -1], [0, 1, 0]), 0.0), (look([0, 1, 0], [0, 0, -1]), 0.0), (look([0, -1, 0], [0, 0, 1]), 0.0),
             (look([1, 0, 0], [0, 1, 0]), 30.0), (look([0, 0, 1], [0, 1, 0]), -75.0)]
    to_blender = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float)  # (x, y, z) -> (x, -z, y)
    job = {"envmap": str(tmp_path / "env.exr"), "size": size, "out": str(tmp_path / "seen.npy"),
           "views": [{"rotation": (to_blender @ r).tolist(), "mapping_z_deg": a} for r, a in views]}
    (tmp_path / "job.json").write_text(json.dumps(job))
    run = subprocess.run([sys.executable, str(REPO / "tests" / "blender_latlong_worker.py"), str(tmp_path / "job.json")],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    seen = np.load(tmp_path / "seen.npy")
    assert seen.shape == (len(views), size, size, 3)

    c = (np.arange(size) + 0.5) / size * 2 - 1  # pixel centres on the image plane at distance 1 (90 degree FOV)
    x, y = np.meshgrid(c, -c)  # top row first
    rays = np.stack([x, y, -np.ones_like(x)], axis=-1)
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    for (rot, mapping_deg), img in zip(views, seen):
        d = rays @ rot.T
        # Blender's Mapping (Point) turns the lookup vector by +a: the map itself turns by -a (our yaw = -a)
        expected = envmap.sample_latlong(env, d @ envmap.rotation_y(mapping_deg).T)
        err = np.abs(img - expected).max(axis=-1)
        # float32 rounding in Cycles near the poles; a wrong convention is off by a whole block (>= 0.06)
        assert err.max() < 0.02 and np.median(err) < 1e-4, (mapping_deg, err.max())


# ----------------------------------------------------------------------------- without scipy (Blender), Blender's axes, rigs


@pytest.mark.parametrize("spec", ["ico:12", "ico:642", "156", "114", "lightstage-x-331", 7, 200])
def test_solid_angles_without_scipy_match_scipy(spec, monkeypatch):
    layout = load_layout(spec)  # scipy's cells
    monkeypatch.setitem(sys.modules, "scipy", None)  # as in Blender's Python
    monkeypatch.setitem(sys.modules, "scipy.spatial", None)
    assert np.allclose(layouts.solid_angles(layout.directions, hemisphere=layout.hemisphere), layout.solid_angles,
                       rtol=1e-9, atol=1e-12)
    octa = np.array([[0, 1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1], [0, 0, -1]], float)
    assert np.allclose(layouts.solid_angles(octa, hemisphere=True), [2 * math.pi / 3] + [math.pi / 3] * 4)
    rng = np.random.default_rng(3)
    clustered = np.vstack([[0, 0, 1], rng.normal([0, 0, 1], 0.05, (5, 3)), [1, 0, 0]])  # one cell bigger than a hemisphere
    with monkeypatch.context() as m:
        m.delitem(sys.modules, "scipy")
        m.delitem(sys.modules, "scipy.spatial")
        reference = layouts.solid_angles(clustered)
    assert np.allclose(layouts.solid_angles(clustered), reference, rtol=1e-9)
    _one_line_error(layouts.solid_angles, [[1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0]], match="great circle")
    _one_line_error(layouts.solid_angles, [[0, 1, 0], [1, 0, 0], [1, 0, 0], [0, 0, 1], [0, -1, 0]], match="lights 2 and 3")


def test_blender_axes():
    v = np.array([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]])
    assert np.allclose(layouts.to_blender(v), [[1.0, -3.0, 2.0], [0.0, 0.0, 1.0]])  # core up (+y) is Blender's +Z
    assert np.allclose(layouts.from_blender(layouts.to_blender(v)), v)
    assert np.allclose(layouts.BLENDER_FROM_CORE @ v.T, layouts.to_blender(v).T)
    blender_cam = np.eye(4)
    blender_cam[:3, 3] = [0.0, -2.0, 1.0]  # 2 m in front of the subject (Blender -Y), 1 m up, looking down -Z
    pose = layouts.pose_from_blender(blender_cam)
    assert np.allclose(pose[:3, 3], [0.0, 1.0, 2.0]) and np.allclose(-pose[:3, 2], [0.0, -1.0, 0.0])
    assert np.allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3)) and np.linalg.det(pose[:3, :3]) == pytest.approx(1.0)


def test_rig_placement_and_calibrated_strengths():
    from pnrelight.lightstage import rig

    layout = load_layout("114")
    assert rig.rig_radius(layout) == pytest.approx(layouts.DEFAULT_DISTANCE_M)
    assert rig.rig_radius(layout, bounding_radius=0.2) == pytest.approx(0.6)
    assert rig.rig_radius(layout, bounding_radius=0.2, radius=2.0) == 2.0
    sun = rig.place_lights(layout, 3.0, "sun", 2.0)
    assert np.allclose(np.linalg.norm(sun.positions, axis=1), 3.0) and np.allclose(sun.positions / 3.0, layout.directions)
    assert np.allclose(sun.energy, 2.0) and sun.unit == "W/m^2" and np.allclose(sun.size_m, 0.2)
    assert np.allclose(sun.angle_rad, 2 * np.arctan(0.1 / 3.0))
    point = rig.place_lights(layout, 0.6, "point", 1.0)
    # irradiance at the centre P / (4 pi r^2) = the strength
    assert np.allclose(point.energy / (4 * math.pi * point.distance_m**2), 1.0) and point.unit == "W"
    area = rig.place_lights(layout, 0.6, "area", 1.0)
    assert np.allclose(area.energy / (math.pi * area.distance_m**2), 1.0) and "P/pi" in area.calibration
    for bad in ((layout, 0.0), (layout, 1.0, "spot"), (layout, 1.0, "sun", -1.0)):
        _one_line_error(rig.place_lights, *bad)
