"""End to end: ``pnrelight avatar`` on skimage's astronaut, and every bad input (exit 2, one line, nothing written)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from avatar_synthetic import blender_import_glb, ellipsoid_mesh, glb_accessor, read_glb
from conftest import run_cli  # the astronaut_png and avatar_dir fixtures are in conftest (shared)

VIEWS = ("-090", "-045", "+000", "+045", "+090", "+180")


@pytest.mark.slow
def test_cli_writes_every_output(avatar_dir):
    summary = json.loads((avatar_dir / "avatar.json").read_text())
    expected = {"avatar.glb", "avatar.json", "preview.png", "textures/albedo.png", "textures/albedo.exr", "textures/normal_object.png",
                "textures/normal_tangent.png", "textures/specular.png", "textures/roughness_metallic.png", "textures/confidence.png",
                "renders/rerender_input.png", "renders/turntable.gif"}
    expected |= {f"renders/turntable_yaw{y}.png" for y in VIEWS} | {f"renders/turntable/frame_{k:03d}.png" for k in range(4)}
    assert expected <= set(summary["files"])
    assert len([f for f in summary["files"] if f.startswith("renders/relit_")]) == 3
    for rel in summary["files"]:
        assert (avatar_dir / rel).is_file() and (avatar_dir / rel).stat().st_size > 0, rel
    # Nothing left over from the atomic write.
    assert not [p for p in avatar_dir.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_avatar_json_records_the_run(avatar_dir):
    s = json.loads((avatar_dir / "avatar.json").read_text())
    assert s["model"]["name"] and s["model"]["vertices"] > 400
    assert s["image_size"] == [512, 512] and s["faces_detected"] == 1
    assert 100 < s["camera"]["focal_px"] < 5000
    assert np.allclose(np.asarray(s["camera"]["rotation"]) @ np.asarray(s["camera"]["rotation"]).T, np.eye(3), atol=1e-4)
    assert s["fit"]["landmark_residual_px"] < 6.0
    sh = np.asarray(s["sh_lighting"]["coefficients"])
    assert sh.shape == (9, 3) and np.all(sh[0] > 0)
    assert s["seeds"]["seed"] == 0 and "numpy" in s["versions"]
    stages = {"load", "landmarks", "face model", "fit", "rasterize", "intrinsics", "uv textures", "export", "renders", "turntable",
              "preview"}
    assert stages <= set(s["timings_s"]) and s["timings_s"]["total"] > 0
    # The photo re-rendered from the textures alone matches it inside the face.
    assert s["quality"]["rerender_psnr_db"] > 22.0 and s["quality"]["rerender_ssim"] > 0.6


@pytest.mark.slow
def test_textures_have_sane_content(avatar_dir):
    from pnrelight.imageio import read_exr, read_image

    from pnrelight.avatar.build_ict_face_model import ATLAS_CELLS

    albedo = read_image(avatar_dir / "textures" / "albedo.png")
    assert albedo.shape == (256, 256, 3)
    # The default head's face cell (u0, v0, size): its centre holds the cheeks and nose.
    u0, v0, size = (np.array(ATLAS_CELLS["face"]) * 256).astype(int)
    r0, c0 = 256 - v0 - size, u0  # row 0 is v = 1
    mid = size // 2
    cell = albedo[r0:r0 + size, c0:c0 + size]
    centre = cell[mid - 24:mid + 24, mid - 24:mid + 24].reshape(-1, 3).mean(0)
    assert centre[0] > centre[2] and 0.2 < centre.mean() < 0.95  # skin: red over blue, neither black nor white
    assert albedo.std() > 0.03
    # No seam along the face's mirror line: the colour step between the cell's two middle columns is ordinary.
    seen = read_image(avatar_dir / "textures" / "confidence.png")[r0:r0 + size, c0:c0 + size - 1] > 0
    step = np.abs(np.diff(cell, axis=1)).max(-1)
    assert step[:, mid - 1][seen[:, mid - 1]].mean() < 2 * step[seen].mean()
    lin = read_exr(avatar_dir / "textures" / "albedo.exr")
    assert lin.shape == (256, 256, 3) and np.isfinite(lin).all() and 0 <= lin.min() and lin.max() <= 1
    n = read_image(avatar_dir / "textures" / "normal_object.png") * 2 - 1
    assert np.abs(np.linalg.norm(n, axis=-1) - 1).mean() < 0.02
    ncell = n[r0:r0 + size, c0:c0 + size]
    assert np.median(ncell[mid - 32:mid + 32, mid - 32:mid + 32, 2]) > 0.7  # model frame: the face looks along +z
    nt = read_image(avatar_dir / "textures" / "normal_tangent.png") * 2 - 1
    assert np.median(nt[..., 2]) > 0.8  # tangent-space detail normals stay close to the surface normal
    preview = read_image(avatar_dir / "preview.png")
    assert preview.shape[0] > 400 and preview.shape[1] > 1000 and preview.std() > 0.1
    views = {y: read_image(avatar_dir / "renders" / f"turntable_yaw{y}.png") for y in VIEWS}
    for y in ("-045", "+000", "+045"):
        face = (views[y].max(-1) < 0.97)
        assert 0.1 < face.mean() < 0.9, y  # the head is in the frame on a light background
    for y in ("-090", "+090", "+180"):
        assert (views[y].max(-1) < 0.97).mean() > 0.03, y  # something is seen from the side and from behind
    assert np.abs(views["-045"] - views["+045"]).mean() > 0.02  # different viewpoints, different pictures
    relit = {p.stem: read_image(p) for p in sorted((avatar_dir / "renders").glob("relit_*.png"))}
    front = views["+000"].max(-1) < 0.97
    for name, img in relit.items():
        assert 0.2 < img[front].mean() < 0.8, name  # well exposed: neither dark nor washed out
    names = sorted(relit)
    for k, a in enumerate(names):
        for b in names[k + 1:]:
            assert np.abs(relit[a] - relit[b])[front].mean() > 0.02, (a, b)  # each map lights the head its own way


@pytest.mark.slow
def test_turntable_frames_and_gif(avatar_dir):
    from PIL import Image

    from pnrelight.imageio import read_image

    s = json.loads((avatar_dir / "avatar.json").read_text())
    assert s["turntable"]["frames"] == 4 and s["turntable"]["gif_frame_ms"] == 80
    frames = sorted((avatar_dir / "renders" / "turntable").iterdir())
    assert [f.name for f in frames] == [f"frame_{k:03d}.png" for k in range(4)]
    # Frames every 90 degrees from the front: the same pictures as the fixed views (same path, same light).
    for frame, y in zip(frames, ("+000", "+090", "+180", "-090")):
        np.testing.assert_array_equal(read_image(frame), read_image(avatar_dir / "renders" / f"turntable_yaw{y}.png"))
    with Image.open(avatar_dir / "renders" / "turntable.gif") as gif:
        assert gif.n_frames == 4 and gif.info["loop"] == 0 and gif.info["duration"] == 80
        gif.seek(1)
        first = np.asarray(gif.convert("RGB"), dtype=np.float32) / 255
    assert first.shape == (512, 512, 3) and np.abs(first - read_image(frames[1])).mean() < 0.02  # 256 colours, dithered


def _fake_fit(verts_model, yaw_deg=20.0, tilt_deg=10.0, distance=0.6):
    """A FaceFit stand-in: the model turned and tilted in front of the photo's camera (model -> camera: R v + t)."""
    from types import SimpleNamespace

    from pnrelight.envmap import rotation_y

    a = np.radians(tilt_deg)
    tilt = np.array([[1.0, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    R = tilt @ rotation_y(yaw_deg)
    t = np.array([0.0, 0.0, -distance])
    return SimpleNamespace(vertices=(np.asarray(verts_model, np.float64) @ R.T + t).astype(np.float32), rotation=R, translation=t,
                           focal_px=600.0, principal_point=np.array([128.0, 128.0]))


def _side_sh():
    sh = np.zeros((9, 3))
    sh[0], sh[1], sh[3] = 0.6, 0.15, (0.45, 0.35, 0.3)  # brighter from +x (and +y): not symmetric about the y axis
    return sh


def test_photo_light_is_non_negative_and_gives_the_sh_shading_back():
    from pnrelight.avatar.pipeline import _calm_dark_chroma, photo_light, photo_light_shading
    from pnrelight.envmap import latlong_directions, render_sh, sh_shading_to_radiance, solid_angles

    sh = _side_sh()
    rng = np.random.default_rng(0)
    face = rng.normal(size=(3000, 3)) * [0.4, 0.4, 1.0]
    face[:, 2] = np.abs(face[:, 2])
    face /= np.linalg.norm(face, axis=1, keepdims=True)  # normals of a face turned to the camera (+z)
    light = photo_light(sh, face)
    assert light.shape == (8, 16, 3) and light.min() >= 0 and 10 < (light.max(-1) > 0).sum() <= 128
    # Its diffuse shading (one sun per texel, as the renderer casts it) is the SH shading on the face ...
    cells = latlong_directions(8).reshape(-1, 3)
    shading = photo_light_shading(light, face)
    target = _calm_dark_chroma(render_sh(face, sh), face)
    err = np.abs(shading - target).mean() / target.mean()
    assert err < 0.03
    # ... which the clipped SH radiance misses: clipping adds light where the band-limited radiance is negative.
    clipped = np.clip(render_sh(latlong_directions(8), sh_shading_to_radiance(sh)), 0, None).reshape(-1, 3)
    naive = np.clip(face @ cells.T, 0, None) * solid_angles(8).reshape(-1) / np.pi @ clipped
    assert np.abs(naive - target).mean() / target.mean() > 2 * err


def test_turntable_lighting_turns_with_the_camera():
    """A turntable view at yaw a (camera and the photo's light turned by a about the photo camera's +y) of a
    sphere sees what the front view sees; a light fixed in the world does not."""
    from avatar_synthetic import ellipsoid_mesh

    from pnrelight.avatar.pipeline import _orbit, _shade, photo_light, photo_light_suns

    v, tris = ellipsoid_mesh(48, 96, (0.09, 0.09, 0.09))
    fit = _fake_fit(v)
    mesh = {"vertices": v, "triangles": tris, "albedo": 0.6, "specular": 0.04, "roughness": 0.5}
    light = photo_light(_side_sh())
    orbit = _orbit(fit)

    def view(yaw, light_yaw):
        g = orbit.view(mesh, yaw, 64)
        return g.mask, _shade(g, photo_light_suns(light, fit, light_yaw), shadows=True)

    mask, front = view(0.0, 0.0)
    assert mask.mean() > 0.3 and front[mask].mean() > 0.05
    for yaw in (45.0, 90.0, 180.0):
        m, img = view(yaw, yaw)
        both = mask & m
        assert np.mean(m != mask) < 0.01 and np.abs(img - front)[both].mean() < 0.01 * front[mask].mean() + 1e-3, yaw
    m, fixed = view(90.0, 0.0)
    assert np.abs(fixed - front)[mask & m].mean() > 0.1 * front[mask].mean()  # a world-fixed light would not


def _ict_avatar(fit_yaw=20.0):
    """The ICT head as an avatar: uniform skin, its own vertex normals baked into a model-frame normal map."""
    from pnrelight.avatar.face_model import load_ict_face_model, vertex_normals
    from pnrelight.avatar.raster import interpolate, rasterize_uv

    model = load_ict_face_model()
    tris = np.asarray(model.triangles)
    r = rasterize_uv(model.uvs, tris, 256)
    nmap = interpolate(vertex_normals(model.vertices, tris), tris, r)
    nmap[~r.mask] = (0.0, 0.0, 1.0)
    nmap /= np.linalg.norm(nmap, axis=-1, keepdims=True)
    tex = {"albedo": np.full((256, 256, 3), (0.6, 0.45, 0.4), np.float32), "normal": nmap.astype(np.float32),
           "specular": np.full((256, 256), 0.03, np.float32)}
    return model, _fake_fit(model.vertices, yaw_deg=fit_yaw, tilt_deg=5.0), tex


def test_photo_light_shading_is_what_the_renderer_casts():
    """The albedo is divided out of photo_light_shading: the renderer's suns of that map must give exactly it."""
    from pnrelight.avatar.pipeline import _shade, avatar_mesh, camera_to_model, photo_light, photo_light_shading, photo_light_suns
    from pnrelight.lightstage.render import prepare_view

    model, fit, tex = _ict_avatar()
    tex["specular"][:] = 0.0
    light = photo_light(_side_sh())
    K = np.array([[600.0, 0, 96], [0, 600.0, 96], [0, 0, 1]])
    g = prepare_view(avatar_mesh(model, fit, tex), camera_to_model(fit), K, (192, 192))
    rendered = _shade(g, photo_light_suns(light, fit), shadows=False)[g.mask]
    normals_cam = g.image(g.normal)[g.mask] @ np.asarray(fit.rotation).T
    expected = np.asarray(tex["albedo"][0, 0]) * photo_light_shading(light, normals_cam)
    assert g.mask.sum() > 2000
    err = np.abs(rendered - expected).mean() / expected.mean()
    assert err < 0.01


def test_side_light_casts_a_nose_shadow_in_the_avatar_render():
    """An environment map with one lamp on the head's left (+x of the model frame = the render world) lights
    the front view of the relit renders: the nose shadows the far cheek, the near one stays lit."""
    from pnrelight.avatar.pipeline import _orbit, _shade, avatar_mesh, environment_suns
    from pnrelight.envmap import latlong_directions

    model, fit, tex = _ict_avatar()
    g = _orbit(fit).view(avatar_mesh(model, fit, tex), 0.0, 256)
    dirs = latlong_directions(32)
    lamp = np.array([0.85, 0.1, 0.5]) / np.linalg.norm([0.85, 0.1, 0.5])
    env = np.zeros((32, 64, 3), np.float32)
    env[np.unravel_index(np.argmax(dirs @ lamp), (32, 64))] = 500.0
    suns = environment_suns(env, g)
    assert len(suns) == 1 and np.dot(suns[0]["direction"], lamp) > 0.99
    lit, flat = _shade(g, suns, shadows=True)[..., 1], _shade(g, suns, shadows=False)[..., 1]
    pos = g.image(g.position)  # model frame
    tip = model.landmark_points()[1]  # mediapipe landmark 1: the nose tip
    near = g.mask & (flat > 0.02) & (np.abs(pos[..., 1] - tip[1] + 0.01) < 0.03) & (pos[..., 2] > tip[2] - 0.05)
    far_side = near & (pos[..., 0] < tip[0] - 0.004) & (pos[..., 0] > tip[0] - 0.04)
    light_side = near & (pos[..., 0] > tip[0] + 0.004) & (pos[..., 0] < tip[0] + 0.04)
    shadowed = lit < 1e-3 * flat.max()
    assert (shadowed & far_side).sum() >= 30
    assert (shadowed & light_side).sum() <= 0.1 * (shadowed & far_side).sum()


def test_relit_exposure_gives_the_face_the_same_mean_shading_under_every_map():
    from avatar_synthetic import ellipsoid_mesh

    from pnrelight import envmap
    from pnrelight.avatar.intrinsics import luminance
    from pnrelight.avatar.pipeline import RELIGHT_MEAN_SHADING, _orbit, _shade, environment_suns

    v, tris = ellipsoid_mesh(24, 48, (0.08, 0.1, 0.09))
    fit = _fake_fit(v)
    g = _orbit(fit).view({"vertices": v, "triangles": tris, "albedo": 1.0, "specular": 0.0}, 0.0, 48)
    facing = g.image(g.n_dot_v) > 0.3
    levels, images = [], []
    for path in envmap.default_envmaps()[:4]:
        suns = environment_suns(envmap.load_envmap(path), g)
        img = _shade(g, suns, shadows=False)  # albedo 1, no specular: the diffuse shading itself
        levels.append(float(luminance(img[facing]).mean()))
        images.append(img)
    np.testing.assert_allclose(levels, RELIGHT_MEAN_SHADING, rtol=1e-3)
    assert min(np.abs(a - b).mean() for k, a in enumerate(images) for b in images[k + 1:]) > 0.01  # yet lit differently


@pytest.mark.slow
def test_glb_loads_in_trimesh(avatar_dir):
    trimesh = pytest.importorskip("trimesh")
    s = json.loads((avatar_dir / "avatar.json").read_text())
    scene = trimesh.load(avatar_dir / "avatar.glb")
    (mesh,) = scene.geometry.values()
    assert len(mesh.vertices) == s["model"]["vertices"] and len(mesh.faces) == s["model"]["triangles"]
    mat = mesh.visual.material
    assert mat.baseColorTexture.size == (256, 256) and mat.normalTexture is not None and mat.metallicRoughnessTexture is not None
    extent = mesh.vertices.max(0) - mesh.vertices.min(0)
    assert 0.08 < extent[1] < 0.4  # a head-sized mesh in metres, upright
    # Expression blendshapes become morph targets named after them, weighted as fitted; none without any.
    gltf, _ = read_glb(avatar_dir / "avatar.glb")
    names = s["fit"]["expression_names"]
    assert s["glb"]["bytes"] == (avatar_dir / "avatar.glb").stat().st_size
    assert s["glb"]["morph_targets"] == len(names or [])
    if names:
        assert gltf["meshes"][0]["extras"]["targetNames"] == names and s["glb"]["base_mesh"] == "neutral expression"
        np.testing.assert_allclose(gltf["meshes"][0]["weights"], s["fit"]["expression"][: len(names)], atol=1e-9)
    else:
        assert "targets" not in gltf["meshes"][0]["primitives"][0] and s["glb"]["base_mesh"] == "fitted"


@pytest.mark.slow
@pytest.mark.blender
def test_glb_imports_in_blender(avatar_dir):
    pytest.importorskip("bpy")
    s = json.loads((avatar_dir / "avatar.json").read_text())
    res = blender_import_glb(avatar_dir / "avatar.glb")
    assert res["status"] == ["FINISHED"] and len(res["meshes"]) == 1
    assert res["meshes"][0]["vertices"] >= s["model"]["vertices"]  # Blender may split vertices along sharp edges
    assert res["meshes"][0]["polygons"] == s["model"]["triangles"]
    assert {"base_color", "normal", "metallic_roughness"} <= set(res["images"])
    assert res["images"]["base_color"]["size"] == [256, 256]


@pytest.mark.slow
@pytest.mark.blender
def test_glb_shape_keys_in_blender_open_the_jaw(avatar_dir, tmp_path):
    """The astronaut's head in Blender: 53 ARKit shape keys at the fitted weights; jawOpen moves the jaw."""
    pytest.importorskip("bpy")
    from avatar_synthetic import blender_shape_keys

    s = json.loads((avatar_dir / "avatar.json").read_text())
    names = s["fit"]["expression_names"]
    assert len(names) == 53 and "jawOpen" in names
    res = blender_shape_keys([{"glb": avatar_dir / "avatar.glb"}], tmp_path)[0]
    assert res["names"] == ["Basis"] + names
    np.testing.assert_allclose(res["values"][1:], s["fit"]["expression"], atol=1e-5)
    rest, moved = res["rest"], res["moved"][names.index("jawOpen")]
    shift = np.linalg.norm(moved - rest, axis=1)
    assert shift.max() > 0.01  # metres: the chin drops by more than a centimetre
    # Blender frame: +Z up, the face towards -Y. What moves lies below the mouth and in front of the neck.
    mouth_z = np.median(rest[np.argsort(rest[:, 1])[:200], 2])  # height of the front-most points (nose, lips)
    big = shift > 0.3 * shift.max()
    assert np.mean(rest[big, 2] < mouth_z) > 0.9
    assert np.mean(moved[big, 2] < rest[big, 2]) > 0.8  # and it moves down


def _assert_clean_failure(proc, out, needle):
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("pnrelight")]
    assert len(lines) == 1 and needle in lines[0], proc.stderr[-2000:]
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


def test_unreadable_file_exits_2(tmp_path):
    bad = tmp_path / "photo.png"
    bad.write_text("not an image")
    out = tmp_path / "out"
    _assert_clean_failure(run_cli("avatar", bad, "-o", out), out, "cannot read image")
    missing = tmp_path / "missing.jpg"
    _assert_clean_failure(run_cli("avatar", missing, "-o", out), out, "not found")


def test_blank_image_has_no_face(tmp_path):
    from pnrelight.imageio import write_image

    blank = write_image(tmp_path / "blank.png", np.full((240, 320, 3), 0.6, np.float32))
    out = tmp_path / "out"
    _assert_clean_failure(run_cli("avatar", blank, "-o", out), out, "no face")


def test_face_too_small_exits_2(tmp_path):
    import cv2
    from skimage import data

    from pnrelight.imageio import write_image

    small = cv2.resize(data.astronaut(), None, fx=0.45, fy=0.45, interpolation=cv2.INTER_AREA)
    canvas = np.full((800, 800, 3), 128, np.uint8)
    canvas[100 : 100 + small.shape[0], 100 : 100 + small.shape[1]] = small
    photo = write_image(tmp_path / "small.png", canvas)
    out = tmp_path / "out"
    _assert_clean_failure(run_cli("avatar", photo, "-o", out), out, "face too small")


def test_face_index_out_of_range_exits_2(tmp_path, astronaut_png):
    out = tmp_path / "out"
    _assert_clean_failure(run_cli("avatar", astronaut_png, "-o", out, "--face-index", "3"), out, "--face-index 3 is out of range")


def test_missing_envmap_exits_2(tmp_path, astronaut_png):
    out = tmp_path / "out"
    _assert_clean_failure(run_cli("avatar", astronaut_png, "-o", out, "--envmap", tmp_path / "nope.exr"), out, "environment map not found")


def test_bad_texture_size_exits_2(tmp_path, astronaut_png):
    out = tmp_path / "out"
    _assert_clean_failure(run_cli("avatar", astronaut_png, "-o", out, "--texture-size", "300"), out, "power of two")


@pytest.mark.parametrize("frames", ["1", "721", "-3"])
def test_bad_turntable_exits_2(tmp_path, astronaut_png, frames):
    out = tmp_path / "out"
    _assert_clean_failure(run_cli("avatar", astronaut_png, "-o", out, "--turntable", frames), out, f"--turntable {frames} is not")


@pytest.mark.slow
def test_several_faces_use_the_largest_with_a_warning(tmp_path):
    import cv2
    from skimage import data

    from pnrelight.imageio import write_image

    big = data.astronaut()
    small = cv2.resize(big, None, fx=0.75, fy=0.75, interpolation=cv2.INTER_AREA)
    canvas = np.full((512, 512 + 384, 3), 128, np.uint8)
    canvas[:, :512] = big
    canvas[64:448, 512:] = small
    photo = write_image(tmp_path / "two.png", canvas)
    out = tmp_path / "two_avatar"
    proc = run_cli("avatar", photo, "-o", out, "--texture-size", "64")
    assert proc.returncode == 0, proc.stderr[-3000:]
    warning = [ln for ln in proc.stderr.splitlines() if ln.startswith("pnrelight: warning")]
    assert len(warning) == 1 and "--face-index" in warning[0] and "2 faces" in warning[0]
    s = json.loads((out / "avatar.json").read_text())
    assert s["faces_detected"] == 2 and s["face_index"] == 0 and s["landmarks"]["bbox_px"][2] < 512  # the big, left face
    assert s["warnings"] and "--face-index" in s["warnings"][0]
    assert s["turntable"]["frames"] == 0 and not (out / "renders" / "turntable").exists()
    assert not (out / "renders" / "turntable.gif").exists()


def _write_ellipsoid_flame(folder):
    """A FLAME-layout model file (plain arrays) for a head-sized ellipsoid, with a landmark embedding
    (``.npz`` with mediapipe ``landmark_indices``) that puts the default model's landmarks on its front."""
    import pickle

    import scipy.sparse

    from pnrelight.avatar.face_model import load_default_face_model

    v, tris = ellipsoid_mesh(30, 60, (0.075, 0.1, 0.09))
    rng = np.random.default_rng(0)
    shapedirs = np.stack([1e-3 * np.sin(v @ rng.normal(size=3) * 20)[:, None] * rng.normal(size=3) for _ in range(20)], -1)
    # FLAME layout: 300 identity components (20 used here), then the expression ones (4, smooth, all over the head).
    expression = np.stack([5e-4 * np.cos(v @ rng.normal(size=3) * 15)[:, None] * rng.normal(size=3) for _ in range(4)], -1)
    shapedirs = np.concatenate([shapedirs, np.zeros((len(v), 3, 280)), expression], -1).astype(np.float32)
    flame = dict(v_template=v, f=tris.astype(np.uint32), shapedirs=shapedirs, posedirs=np.zeros((len(v), 3, 36)),
                 J_regressor=scipy.sparse.random(5, len(v), density=0.05, random_state=1, format="csc"),
                 weights=np.full((len(v), 5), 0.2), kintree_table=np.array([[-1, 0, 1, 1, 1], [0, 1, 2, 3, 4]]))
    path = folder / "generic_model.pkl"
    path.write_bytes(pickle.dumps(flame, protocol=2))
    # Landmarks: the default face's landmark points, scaled onto the ellipsoid's front, on the nearest front triangle.
    face = load_default_face_model()
    pts = face.landmark_points()
    ok = np.flatnonzero(np.isfinite(pts).all(1))
    xy = pts[ok, :2] * (0.06 / np.abs(pts[ok, 0]).max())
    cen = v[tris].mean(1)
    front = np.flatnonzero(cen[:, 2] > 0.02)
    nearest = front[np.argmin(((cen[front, None, :2] - xy[None]) ** 2).sum(-1), axis=0)]
    np.savez(folder / "mediapipe_landmark_embedding.npz", lmk_face_idx=nearest, lmk_b_coords=np.full((len(ok), 3), 1 / 3),
             landmark_indices=ok)
    return path, len(v)


@pytest.mark.slow
def test_cli_with_a_flame_model_file(astronaut_png, tmp_path):
    trimesh = pytest.importorskip("trimesh")
    model, num_vertices = _write_ellipsoid_flame(tmp_path)
    out = tmp_path / "flame_avatar"
    proc = run_cli("avatar", astronaut_png, "-o", out, "--face-model", model, "--texture-size", "128")
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = json.loads((out / "avatar.json").read_text())
    assert "flame" in s["model"]["name"].lower() and s["model"]["path"] == str(model)
    assert s["fit"]["shape"] and s["fit"]["landmark_residual_px"] < 20
    # FLAME's expression components become unnamed morph targets, dense (they move every vertex).
    assert s["fit"]["expression_names"] == ["expr_000", "expr_001", "expr_002", "expr_003"] and len(s["fit"]["expression"]) == 4
    assert s["glb"]["morph_targets"] == 4 and s["glb"]["base_mesh"] == "neutral expression"
    gltf, binary = read_glb(out / "avatar.glb")
    mesh = gltf["meshes"][0]
    assert mesh["extras"]["targetNames"] == s["fit"]["expression_names"]
    np.testing.assert_allclose(mesh["weights"], s["fit"]["expression"], atol=1e-9)
    targets = [gltf["accessors"][t["POSITION"]] for t in mesh["primitives"][0]["targets"]]
    assert all("bufferView" in t and "sparse" not in t for t in targets)
    assert 1e-4 < np.abs(glb_accessor(gltf, binary, mesh["primitives"][0]["targets"][0]["POSITION"])).max() < 1e-3
    (mesh,) = trimesh.load(out / "avatar.glb").geometry.values()
    assert len(mesh.vertices) >= num_vertices  # FLAME vertices (plus copies along the UV seam)
    assert (out / "preview.png").is_file()
