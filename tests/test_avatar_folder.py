"""pnrelight.avatar.folder (what hosts read from an avatar folder), on a tiny hand-made folder: checks and
bad input, the photo camera in Blender terms against the add-on's own intrinsics, the photo light
turned into the world frame, subsurface, expression groups and UV parts. Fast, no bpy."""
from __future__ import annotations

import importlib.util
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import REPO
from pnrelight.avatar import folder as F
from pnrelight.errors import InputError


def _olat():
    spec = importlib.util.spec_from_file_location("pnrelight_addon_olat", REPO / "blender_addon" / "olat.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rotation(yaw_deg, pitch_deg):
    from pnrelight.envmap import rotation_y

    p = math.radians(pitch_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    return rx @ rotation_y(yaw_deg)


@pytest.fixture
def tiny(tmp_path):
    """A one-triangle avatar folder: glb with UVs, the four textures, avatar.json with an off-centre camera."""
    from pnrelight.avatar.export import write_glb
    from pnrelight.imageio import write_image

    d = tmp_path / "tiny"
    (d / "textures").mkdir(parents=True)
    tex = np.full((4, 4, 3), 0.5, np.float32)
    write_glb(d / "avatar.glb", np.array([[0, 0, 0], [0.1, 0, 0], [0, 0.1, 0]], np.float32), np.array([[0, 1, 2]]),
              np.array([[0, 0], [1, 0], [0, 1]], np.float32), np.array([[0, 0, 1]] * 3, np.float32), tex,
              np.dstack([tex[..., :2] * 0, tex[..., :1] * 0 + 1]), tex)
    for name in F.TEXTURE_FILES.values():
        write_image(d / name, tex)
    photo = write_image(tmp_path / "photo.png", np.zeros((300, 400, 3), np.float32))
    info = {"photo": str(photo), "image_size": [400, 300],
            "camera": {"focal_px": 500.0, "principal_point": [190.0, 160.0], "rotation": _rotation(20, -10).tolist(),
                       "translation": [0.02, -0.01, -0.9]},
            "fit": {"expression": [0.2, 0.7], "expression_names": ["eyeBlinkLeft", "jawOpen"]},
            "model": {"name": "ict-facekit-head"}, "sh_lighting": {"coefficients": [[0.5] * 3] + [[0.0] * 3] * 8}}
    (d / "avatar.json").write_text(json.dumps(info))
    return d


def test_reads_a_folder_as_version_1(tiny):
    av = F.read_avatar_folder(tiny / "avatar.json")
    assert av.format_version == 1 and av.image_size == (400, 300) and av.photo is not None
    assert av.expression_names == ["eyeBlinkLeft", "jawOpen"] and np.allclose(av.expression_weights, [0.2, 0.7])
    assert set(av.textures) == set(F.TEXTURE_FILES) and av.glb.name == "avatar.glb"


@pytest.mark.parametrize("spoil,needle", [
    (lambda d: (d / "avatar.json").write_text("{oops"), "not readable JSON"),
    (lambda d: (d / "avatar.json").write_text(json.dumps({**json.loads((d / "avatar.json").read_text()), "format_version": 2})),
     "update the add-on"),
    (lambda d: (d / "textures" / "albedo.png").unlink(), "albedo.png"),
    (lambda d: (d / "avatar.glb").unlink(), "no avatar.glb"),
    (lambda d: (d / "avatar.glb").write_bytes(b"not a glb at all, no"), "not a readable glTF"),
    (lambda d: (d / "avatar.json").write_text(json.dumps({**json.loads((d / "avatar.json").read_text()), "camera": {}})),
     "camera"),
])
def test_bad_folders_raise_one_line(tiny, spoil, needle):
    spoil(tiny)
    with pytest.raises(InputError, match=needle) as err:
        F.read_avatar_folder(tiny)
    assert "\n" not in str(err.value)


def test_glb_without_uvs_is_refused(tiny):
    data = (tiny / "avatar.glb").read_bytes()
    jlen = int.from_bytes(data[12:16], "little")
    gltf = json.loads(data[20:20 + jlen])
    gltf["meshes"][0]["primitives"][0]["attributes"].pop("TEXCOORD_0")
    js = json.dumps(gltf).encode()
    js += b" " * (-len(js) % 4)
    rest = data[20 + jlen:]
    head = b"glTF" + (2).to_bytes(4, "little") + (20 + len(js) + len(rest)).to_bytes(4, "little")
    (tiny / "avatar.glb").write_bytes(head + len(js).to_bytes(4, "little") + b"JSON" + js + rest)
    with pytest.raises(InputError, match="without UVs"):
        F.read_avatar_folder(tiny)


def test_blender_camera_gives_the_fitted_intrinsics_and_pose_back(tiny):
    """Off-centre principal point on a 400 x 300 photo: the add-on's olat.intrinsics (Blender camera -> K)
    gives K back, and the Blender camera projects a model point where the fitted camera does."""
    from pnrelight.lightstage.layouts import pose_from_blender, to_blender

    av = F.read_avatar_folder(tiny)
    cam = F.blender_camera(av)
    k = _olat().intrinsics(lens_mm=cam["lens_mm"], sensor_width_mm=cam["sensor_mm"], sensor_height_mm=cam["sensor_mm"],
                           sensor_fit=cam["sensor_fit"], width=400, height=300, shift_x=cam["shift_x"], shift_y=cam["shift_y"])
    np.testing.assert_allclose(k["K"], F.photo_intrinsics(av), atol=1e-9)
    np.testing.assert_allclose(F.photo_intrinsics(av, 0.5)[:2], F.photo_intrinsics(av)[:2] * 0.5)
    # a model point, projected by the fit (u = cx + f X/(-Z), v = cy - f Y/(-Z)) and by the Blender camera
    p = np.array([0.03, 0.05, 0.04])
    pc = av.rotation @ p + av.translation
    f, (cx, cy) = 500.0, (190.0, 160.0)
    expected = [cx + f * pc[0] / -pc[2], cy - f * pc[1] / -pc[2]]
    m = cam["matrix_world"]  # Blender camera: looks down its -Z, +Y up
    local = np.linalg.inv(m) @ np.append(to_blender(p), 1.0)
    Kb = np.asarray(k["K"])
    got = [Kb[0, 2] + Kb[0, 0] * local[0] / -local[2], Kb[1, 2] - Kb[1, 1] * local[1] / -local[2]]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    from pnrelight.avatar.pipeline import camera_to_model

    np.testing.assert_allclose(pose_from_blender(m), camera_to_model(SimpleNamespace(rotation=av.rotation, translation=av.translation)),
                               atol=1e-12)


def test_world_light_map_turns_the_camera_frame_light(tiny):
    from pnrelight.envmap import latlong_directions, solid_angles

    av = F.read_avatar_folder(tiny)
    light = np.zeros((8, 16, 3), np.float32)
    dirs = latlong_directions(8)
    cam_dir = np.array([0.3, 0.4, 0.866])
    cam_dir /= np.linalg.norm(cam_dir)
    i, j = np.unravel_index(np.argmax(dirs @ cam_dir), (8, 16))
    light[i, j] = (2.0, 1.0, 0.5)
    world = F.world_light_map(light, av.rotation)
    assert world.shape == (F.WORLD_LIGHT_ROWS, 2 * F.WORLD_LIGHT_ROWS, 3) and world.min() >= 0
    # the same power, arriving from the texel's direction turned into the model frame (R^T d)
    power = lambda m: np.einsum("hwc,hw->c", m.astype(np.float64), solid_angles(m.shape[0]))  # noqa: E731
    np.testing.assert_allclose(power(world), power(light), rtol=1e-5)
    wd = latlong_directions(F.WORLD_LIGHT_ROWS)
    centroid = np.einsum("hw,hwc->c", world[..., 0] * solid_angles(F.WORLD_LIGHT_ROWS), wd)
    centroid /= np.linalg.norm(centroid)
    assert float(centroid @ (av.rotation.T @ dirs[i, j])) > 0.98


def test_photo_light_map_prefers_the_stored_map(tiny):
    av = F.read_avatar_folder(tiny)
    stored = np.random.default_rng(0).uniform(0, 1, (8, 16, 3)).round(6)
    av.info["render"] = {"photo_light": {"radiance": stored.tolist()}}
    np.testing.assert_allclose(F.photo_light_map(av), stored, atol=1e-6)
    del av.info["render"]
    fitted = F.photo_light_map(av)  # refitted from the SH: a constant SH gives a near-uniform light
    assert fitted.shape == (8, 16, 3) and fitted.min() >= 0 and fitted.mean() > 0


def test_subsurface_expression_groups_and_uv_parts():
    pale = F.subsurface_from_albedo(np.full((8, 8, 3), (0.6, 0.36, 0.28)))
    dark = F.subsurface_from_albedo(np.full((8, 8, 3), (0.15, 0.08, 0.05)))
    np.testing.assert_allclose(pale["radius"], F.SKIN_RADIUS_MM)
    assert pale["weight"] == pytest.approx(1.0) and 0.3 <= dark["weight"] < pale["weight"]
    assert all(d < p for d, p in zip(dark["radius"], pale["radius"])) and pale["scale"] == 0.001
    g = F.expression_groups(["eyeBlinkLeft", "browInnerUp", "jawOpen", "mouthSmileLeft", "cheekPuff", "noseSneerLeft", "x"])
    assert g == {"eyes": ["eyeBlinkLeft"], "brows": ["browInnerUp"], "jaw": ["jawOpen"],
                 "mouth": ["mouthSmileLeft", "cheekPuff", "noseSneerLeft"], "other": ["x"]}
    from pnrelight.avatar.build_ict_face_model import ATLAS_CELLS

    centre = lambda cell: [ATLAS_CELLS[cell][0] + ATLAS_CELLS[cell][2] / 2, ATLAS_CELLS[cell][1] + ATLAS_CELLS[cell][2] / 2]  # noqa: E731
    uv = np.array([centre("face"), centre("sclera"), centre("iris"), centre("teeth"), centre("gums_tongue"), centre("head")])
    assert F.uv_parts(uv, "ict-facekit-head").tolist() == [0, 1, 1, 2, 2, 0]
    assert F.uv_parts(uv, "mediapipe-face").tolist() == [0] * 6
