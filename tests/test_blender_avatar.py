"""Relightable avatars in Blender, end to end with bpy==5.0.1: File › Import › Relightable Avatar on the
astronaut's avatar (the shared ``avatar_dir`` fixture), rendered with Cycles on the CPU and compared with
the core's one renderer (``pnrelight.lightstage.render``) at the same camera and light, and with the photo.

Camera and light conventions are ``pnrelight.avatar.folder``'s: the photo camera (avatar.json) is the
render camera of both renderers, at SCALE x the photo's size; suns are given in the core's frame and
turned into Blender's with ``to_blender``. Cycles samples the pixel centres (box filter 0.01 px) as the
core's primary rays do, with direct light only for the sun renders.

All Blender work runs in one subprocess (tests/blender_avatar_worker.py) that sees only the extension's
bundled wheel and no Pillow (as in Blender).
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import REPO, build_addon, run_blender_worker

pytestmark = pytest.mark.blender
if importlib.util.find_spec("bpy") is None:
    pytest.skip("bpy (pip install bpy==5.0.1, Python 3.11) is not installed", allow_module_level=True)

from pnrelight.avatar.color import linear_to_srgb  # noqa: E402
from pnrelight.avatar.folder import (  # noqa: E402
    blender_camera, expression_groups, photo_intrinsics, photo_light_map, read_avatar_folder, world_light_map)
from pnrelight.avatar.pipeline import camera_to_model  # noqa: E402
from pnrelight.lightstage.layouts import to_blender  # noqa: E402
from pnrelight.metrics import psnr, ssim  # noqa: E402

SCALE = 1.0  # renders at the photo's size (512 x 512 for the astronaut: its face covers ~90 x 100 pixels)
SAMPLES = 4  # suns of angle 0 with direct light only: every sample gives the same light
PHOTO_SAMPLES = 64  # the photo-lit world (and the grey one)
SUN_STRENGTH = 3.0  # W/m^2: a face of albedo 0.6 facing it renders 0.57, below white
SIDE_DEG = 70.0  # the side sun: the front sun turned this far about the head's vertical


def _front_and_side(av) -> dict:
    """Sun directions (core frame, towards the light): from the head towards the photo camera, and turned by SIDE_DEG."""
    from pnrelight.envmap import rotation_y

    pose = camera_to_model(SimpleNamespace(rotation=av.rotation, translation=av.translation))
    front = pose[:3, 3] / np.linalg.norm(pose[:3, 3])  # the head sits at the model origin
    return {"sun_front": front, "sun_side": rotation_y(SIDE_DEG) @ front}


def _write_glb_without_uvs(src: Path, dst: Path) -> None:
    data = src.read_bytes()
    jlen = struct.unpack_from("<I", data, 12)[0]
    gltf = json.loads(data[20:20 + jlen])
    for mesh in gltf["meshes"]:
        for prim in mesh["primitives"]:
            prim["attributes"].pop("TEXCOORD_0", None)
    js = json.dumps(gltf).encode()
    js += b" " * (-len(js) % 4)
    rest = data[20 + jlen:]
    dst.write_bytes(struct.pack("<4sII", b"glTF", 2, 12 + 8 + len(js) + len(rest)) + struct.pack("<I4s", len(js), b"JSON") + js + rest)


def _bad_folders(avatar_dir: Path, root: Path) -> dict:
    def copy(name):
        dst = root / "bad" / name
        shutil.copytree(avatar_dir, dst, ignore=shutil.ignore_patterns("renders", "preview.png"))
        return dst

    bad = {}
    d = copy("missing_texture")
    (d / "textures" / "specular.png").unlink()
    bad["missing_texture"] = d
    d = copy("unreadable_json")
    (d / "avatar.json").write_text("{not json")
    bad["unreadable_json"] = d
    d = copy("newer_format")
    info = json.loads((d / "avatar.json").read_text())
    info["format_version"] = 99
    (d / "avatar.json").write_text(json.dumps(info))
    bad["newer_format"] = d
    d = copy("no_uvs")
    _write_glb_without_uvs(avatar_dir / "avatar.glb", d / "avatar.glb")
    bad["no_uvs"] = d
    return {k: str(v / "avatar.json") for k, v in bad.items()}


@pytest.fixture(scope="module")
def session(avatar_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("blender_avatar")
    zip_path, _ = build_addon(root / "dist")
    av = read_avatar_folder(avatar_dir)
    suns = {k: to_blender(v).tolist() for k, v in _front_and_side(av).items()}
    job = {"zip": str(zip_path), "out": str(root / "out"), "avatar": str(avatar_dir),
           "samples": SAMPLES, "photo_samples": PHOTO_SAMPLES, "scale": SCALE, "sun_strength": SUN_STRENGTH, "suns": suns, "bad": _bad_folders(avatar_dir, root)}
    res, _ = run_blender_worker("blender_avatar_worker.py", job, root, timeout=400)
    out = root / "out"
    return {"res": res, "out": out, "av": av, "renders": {p.stem: np.load(p) for p in out.glob("*.npy")}}


@pytest.fixture(scope="module")
def core(session, avatar_dir):
    """The core's renders at the photo camera (SCALE), and the face mask: the face part of the head (its
    UV atlas cell), seen at n.v > 0.3, inside the photo landmarks' hull (as avatar.json's re-render quality)."""
    from pnrelight.avatar.build_ict_face_model import ATLAS_CELLS
    from pnrelight.avatar.landmarks import detect_faces
    from pnrelight.avatar.photo import load_photo
    from pnrelight.avatar.pipeline import landmark_hull_mask
    from pnrelight.lightstage.render import load_subject, prepare_view, render_lights, sun_light

    av = session["av"]
    w, h = (int(round(x * SCALE)) for x in av.image_size)
    pose = camera_to_model(SimpleNamespace(rotation=av.rotation, translation=av.translation))
    K = photo_intrinsics(av, SCALE)
    mesh = load_subject(avatar_dir)
    gbuf = prepare_view(mesh, pose, K, (h, w))
    renders = {name: render_lights(gbuf, [sun_light(d, SUN_STRENGTH)], shadows=True) for name, d in _front_and_side(av).items()}
    T = int(mesh["albedo"].shape[0])
    cell = np.zeros((T, T, 3), np.float32)
    u0, v0, size = (np.array(ATLAS_CELLS["face"]) * T).astype(int)
    cell[T - v0 - size:T - v0, u0:u0 + size] = 1.0  # texture row 0 is v = 1
    part = prepare_view({**mesh, "albedo": cell}, pose, K, (h, w))
    face_part = part.image(part.albedo[:, 0] > 0.5) > 0.5
    facing = part.image(part.n_dot_v > 0.3) > 0.5
    photo = load_photo(av.photo)
    face = detect_faces(photo)[0]
    hull = landmark_hull_mask(face.points[:, :2] * SCALE, (h, w))
    small = photo.reshape(h, photo.shape[0] // h, w, photo.shape[1] // w, 3).mean(axis=(1, 3))  # SCALE = 1 / integer
    return {"renders": renders, "mask": face_part & facing & hull, "gbuf": gbuf, "photo": small, "landmarks": face.points * SCALE}


def _srgb(linear: np.ndarray) -> np.ndarray:
    return linear_to_srgb(np.clip(linear, 0.0, 1.0))


# ----------------------------------------------------------------------------- import


def test_import_builds_the_head(session, avatar_dir):
    res, av = session["res"], session["av"]
    imp = res["import"]
    assert res["install"] == ["FINISHED"] and "blender_user" in res["pnrelight_file"]  # the bundled wheel
    assert res["file_handler"] and res["menu"]
    assert imp["status"] == ["FINISHED"] and imp["uv_layers"] == 1
    assert imp["polygons"] == av.info["model"]["triangles"]
    # 53 ARKit shape keys at the fitted weights
    assert imp["shape_keys"] == ["Basis"] + av.expression_names and len(av.expression_names) == 53
    np.testing.assert_allclose(imp["shape_key_values"][1:], av.expression_weights, atol=1e-5)
    # skin, eyes and teeth materials; every face in one
    assert [m.split()[-1] for m in imp["materials"]] == ["Skin", "Eyes", "Teeth"]
    assert sum(imp["faces_per_material"]) == imp["polygons"] and min(imp["faces_per_material"]) > 100
    assert imp["subsurface_weights"] == [0.0, 0.0, 0.0]  # imported with subsurface off
    # metres, +Z up, facing -Y: the front-most point (min y) is the nose tip, at the height of the face
    size = np.subtract(imp["bbox_max"], imp["bbox_min"])
    assert 0.15 < size[2] < 0.45 and 0.1 < size[0] < 0.3
    front = np.array(imp["front_point"])
    assert abs(front[0]) < 0.02 and imp["bbox_min"][2] < front[2] < imp["bbox_max"][2]
    np.testing.assert_allclose(imp["matrix_world"], np.eye(4), atol=1e-9)
    # nothing but the head, its camera, its world (and their images / materials) was made
    assert imp["new"]["objects"] == 2 and imp["new"]["worlds"] == 1 and imp["new"]["cameras"] == 1
    assert imp["new"]["materials"] == 3 and imp["new"]["lights"] == 0
    print(f"\nimport: {imp['import_seconds']:.2f} s (operator call {imp['seconds']:.2f} s), {imp['node_count']} nodes, "
          f"{imp['polygons']} faces, textures {imp['texture_size']} px")
    assert imp["node_count"] <= 45 and imp["import_seconds"] < 10.0


def test_camera_from_photo_has_the_fitted_intrinsics_and_pose(session):
    spec = importlib.util.spec_from_file_location("pnrelight_addon_olat", REPO / "blender_addon" / "olat.py")
    olat = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(olat)
    res, av = session["res"], session["av"]
    cam = res["import"]["camera"]
    expected = blender_camera(av)
    np.testing.assert_allclose(cam["matrix_world"], expected["matrix_world"], atol=1e-5)
    w, h = av.image_size
    assert res["import"]["resolution"] == [w, h]
    k = olat.intrinsics(lens_mm=cam["lens"], sensor_width_mm=cam["sensor_width"], sensor_height_mm=cam["sensor_width"],
                        sensor_fit=cam["sensor_fit"], width=w, height=h, shift_x=cam["shift"][0], shift_y=cam["shift"][1])
    np.testing.assert_allclose(k["K"], photo_intrinsics(av), atol=1e-3)  # Blender's camera gives back the fitted K
    assert cam["background_images"] == 1 and Path(cam["background_image"]).name == Path(av.info["photo"]).name


def test_world_texture_is_the_photo_light_in_the_world_frame(session):
    res, av = session["res"], session["av"]
    env = np.load(session["out"] / "world_env.npy")
    expected = world_light_map(photo_light_map(av), av.rotation)
    np.testing.assert_allclose(env, expected, rtol=1e-4, atol=1e-6)
    assert res["import"]["world"].endswith("photo light") and res["import"]["view_transform"] == "Standard"


# ----------------------------------------------------------------------------- must show 1: Cycles = the core renderer


@pytest.mark.parametrize("name", ["sun_front", "sun_side"])
def test_cycles_matches_the_core_renderer(session, core, name):
    blender, ours = session["renders"][name], core["renders"][name]
    mask = core["mask"]
    assert mask.sum() > 3000
    value = psnr(_srgb(blender), _srgb(ours), mask)
    lum = lambda x: x[mask].mean()  # noqa: E731
    print(f"\n{name}: Cycles vs core PSNR {value:.2f} dB, SSIM {ssim(_srgb(blender), _srgb(ours), mask):.4f}, "
          f"mean {lum(blender):.4f} vs {lum(ours):.4f} (linear), {mask.sum()} px, "
          f"render {session['res']['render_seconds'][name]:.1f} s")
    assert value >= 28.0


# ----------------------------------------------------------------------------- must show 2: the photo


def test_match_photo_lighting_reproduces_the_photo(session, core):
    mask, photo = core["mask"], core["photo"]
    lit = _srgb(session["renders"]["photo_world"])
    grey = _srgb(session["renders"]["grey_world"])
    p_lit, s_lit = psnr(lit, photo, mask), ssim(lit, photo, mask)
    p_grey, s_grey = psnr(grey, photo, mask), ssim(grey, photo, mask)
    print(f"\nphoto lighting: PSNR {p_lit:.2f} dB, SSIM {s_lit:.4f}; default grey world "
          f"{session['res']['grey_world_colour'][0]:.3f}: PSNR {p_grey:.2f} dB, SSIM {s_grey:.4f}; "
          f"avatar.json's core re-render {session['av'].info['quality']['rerender_psnr_db']} dB")
    assert p_lit >= 24.0 and s_lit > 0.6
    assert p_lit > p_grey + 5.0 and s_lit > s_grey


# ----------------------------------------------------------------------------- must show 3: jawOpen


def test_jaw_open_opens_the_mouth_in_the_render(session, core):
    """The lips part: between the mouth corners, from the upper lip down, the jawOpen render has a dark gap
    (the mouth's inside, in the lips' shadow) that the fitted expression's render does not."""
    pts = core["landmarks"]
    neutral, opened = _srgb(session["renders"]["sun_front"]).mean(-1), _srgb(session["renders"]["jaw_open"]).mean(-1)
    x0, x1 = sorted((pts[61, 0], pts[291, 0]))  # mouth corners
    y0, y1 = pts[13, 1], pts[152, 1]  # upper lip's inner edge, chin
    region = np.zeros_like(neutral, dtype=bool)
    region[int(y0):int(np.ceil(y1)), int(x0 + 0.25 * (x1 - x0)):int(np.ceil(x1 - 0.25 * (x1 - x0)))] = True
    skin = np.median(neutral[core["mask"]])
    dark = lambda img: int(((img < 0.5 * skin) & region).sum())  # noqa: E731
    changed = np.abs(opened - neutral)
    upper = np.zeros_like(region)
    upper[: int(pts[168, 1])] = True  # above the nose bridge: nothing moves
    print(f"\njawOpen = 1: dark pixels in the mouth region {dark(neutral)} -> {dark(opened)} (of {region.sum()}); "
          f"mean change {changed[region].mean():.3f} there, {changed[upper & core['mask']].mean():.4f} above the nose bridge")
    assert dark(opened) > dark(neutral) + 0.1 * region.sum()
    assert changed[region].mean() > 0.05 and changed[upper & core["mask"]].mean() < 0.01


def test_reset_to_photo_and_panel(session):
    res, av = session["res"], session["av"]
    assert res["reset"] == ["FINISHED"]
    np.testing.assert_allclose(res["after_reset"][1:], av.expression_weights, atol=1e-5)
    assert res["panel_poll"]
    groups = expression_groups(av.expression_names)
    for group in ("eyes", "brows", "mouth", "jaw"):
        items = res["panel"][group]
        sliders = [i.split("=")[0][len("prop:"):] for i in items if i.startswith("prop:") and "=" in i]
        assert set(groups[group]) <= set(sliders) and groups[group], group
        assert "prop:Specular Strength" in " ".join(items) or any(i.startswith("prop:specular_strength") for i in items)
        assert any(i.startswith("label:Photo:") and Path(av.info["photo"]).name in i for i in items)
    assert len(groups["jaw"]) == 4 and "jawOpen" in groups["jaw"] and len(groups["eyes"]) == 14
    assert res["panel_effect"]["specular_level_scale"] == pytest.approx(2.0 / 0.08)
    assert res["panel_effect"]["albedo_gain"] == pytest.approx([2.0, 2.0, 2.0])


def test_second_import_with_light_stage_and_subsurface(session):
    sec = session["res"]["second"]
    assert sec["status"] == ["FINISHED"] and sec["texture_size"] == 256
    skin, eyes, teeth = sec["subsurface_weights"]
    assert 0.3 <= skin <= 1.0 and eyes == 0.0 and teeth == pytest.approx(0.5 * skin)
    r = sec["subsurface_radius"]
    assert r[0] > r[1] > r[2] > 0  # red scatters furthest
    stage = [s for s in sec["stages"] if s["target"] == sec["name"]]
    assert len(stage) == 1 and stage[0]["lights"] == 156
    assert np.linalg.norm(stage[0]["centre"]) < 0.2  # around the head
    assert session["res"]["dropped"]["status"] == ["FINISHED"]  # the FileHandler's call (directory + files)


# ----------------------------------------------------------------------------- must show 4: glTF export


def test_gltf_export_reads_back_in_the_core(session, avatar_dir):
    from avatar_synthetic import glb_accessor, read_glb

    from pnrelight.lightstage.render import load_subject

    exp = session["res"]["export"]
    assert exp["status"] == ["FINISHED"]
    gltf, binary = read_glb(exp["path"])
    src, src_bin = read_glb(avatar_dir / "avatar.glb")
    names = session["av"].expression_names
    prims = gltf["meshes"][0]["primitives"]
    assert len(prims) == 3  # skin, eyes, teeth
    assert gltf["meshes"][0]["extras"]["targetNames"] == names
    assert all(len(p["targets"]) == 53 for p in prims)
    np.testing.assert_allclose(gltf["meshes"][0]["weights"], session["av"].expression_weights, atol=1e-5)
    # the jawOpen target moves the same vertices by the same amounts (compared as point sets)
    k = names.index("jawOpen")
    moved = np.concatenate([glb_accessor(gltf, binary, p["targets"][k]["POSITION"]) for p in prims])
    src_moved = glb_accessor(src, src_bin, src["meshes"][0]["primitives"][0]["targets"][k]["POSITION"])
    np.testing.assert_allclose(np.sort(np.linalg.norm(moved, axis=1))[-1000:],
                               np.sort(np.linalg.norm(src_moved, axis=1))[-1000:], atol=1e-5)
    # the four textures, shared by the three materials; the skin's base colour, normal and roughness as glTF's
    assert sorted(i["name"] for i in gltf["images"]) == ["albedo", "normal_tangent", "roughness_metallic", "specular"]
    skin = gltf["materials"][0]
    source = lambda ref: gltf["images"][gltf["textures"][ref["index"]]["source"]]["name"]  # noqa: E731
    assert source(skin["pbrMetallicRoughness"]["baseColorTexture"]) == "albedo"
    assert source(skin["normalTexture"]) == "normal_tangent"
    assert source(skin["pbrMetallicRoughness"]["metallicRoughnessTexture"]) == "roughness_metallic"
    mesh = load_subject(exp["path"])
    ref = load_subject(avatar_dir / "avatar.glb")
    assert len(mesh["triangles"]) == len(ref["triangles"])
    # the same head at the fitted expression (Blender splits vertices at UV seams and material borders)
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(ref["vertices"]).query(mesh["vertices"])
    back, _ = cKDTree(mesh["vertices"]).query(ref["vertices"])
    print(f"\nglTF export: {len(prims)} primitives, {len(mesh['vertices'])} vertices (source {len(ref['vertices'])}), "
          f"max distance {max(dist.max(), back.max()) * 1000:.4f} mm, {exp['seconds']:.2f} s")
    assert dist.max() < 1e-5 and back.max() < 1e-5
    assert mesh["albedo"].shape == ref["albedo"].shape
    assert np.abs(mesh["albedo"] - ref["albedo"]).mean() < 0.005


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("name,needle", [("missing_texture", "specular.png"), ("unreadable_json", "not readable JSON"),
                                         ("newer_format", "update the add-on"), ("no_uvs", "without UVs")])
def test_bad_input_reports_and_creates_nothing(session, name, needle):
    out = session["res"]["bad"][name]
    assert out["status"] == ["RuntimeError"] and needle in out["error"], out["error"]
    assert out["before"] == out["after"] and out["scene_kept"]


def test_addon_disables_cleanly(session):
    assert session["res"]["disabled"] == {"operator_gone": True, "property_gone": True}
