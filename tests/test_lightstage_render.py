"""The light stage's OLAT renderer: Cycles' light calibration, the BRDF's energy, linearity, cast shadows, subjects."""
from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest

from pnrelight.avatar.render import orbit_pose
from pnrelight.errors import InputError
from pnrelight.lightstage import render as R
from pnrelight.lightstage.render import (environment_to_suns, ground_truth_passes, load_subject, point_light, prepare_view,
                                         render_environment, render_lights, render_olat, render_olat_set, specular_brdf,
                                         sun_light)

BACKENDS = ["embree", "raster"]


def _K(size: int, focal: float) -> np.ndarray:
    return np.array([[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]])


def _plate(half=1.0, **material) -> dict:
    """A square in the z = 0 plane facing +z (two counter-clockwise triangles)."""
    v = np.array([[-half, -half, 0], [half, -half, 0], [half, half, 0], [-half, half, 0]], dtype=np.float32)
    return {"vertices": v, "triangles": [[0, 1, 2], [0, 2, 3]], "uvs": (v[:, :2] / (2 * half) + 0.5),
            **{"albedo": 1.0, "specular": 0.0, **material}}


def _box_faces(lo, hi):
    """Vertices (24, 3) and triangles (12, 3) of an axis-aligned box, one quad per face (flat normals), outward CCW."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    verts, tris = [], []
    for axis in range(3):
        for side in (0, 1):
            u, w = [a for a in range(3) if a != axis]
            quad = []
            for a, b in ((0, 0), (1, 0), (1, 1), (0, 1)):
                p = np.empty(3)
                p[axis] = hi[axis] if side else lo[axis]
                p[u] = hi[u] if a else lo[u]
                p[w] = hi[w] if b else lo[w]
                quad.append(p)
            quad = np.array(quad)
            n = np.cross(quad[1] - quad[0], quad[2] - quad[0])
            if (n[axis] > 0) != bool(side):
                quad = quad[::-1]
            k = len(verts) * 4
            verts.append(quad)
            tris += [[k, k + 1, k + 2], [k, k + 2, k + 3]]
    return np.concatenate(verts), np.array(tris)


def _box_on_plane():
    plane_v = np.array([[-2, 0, 2], [2, 0, 2], [2, 0, -2], [-2, 0, -2]], dtype=float)  # y = 0, facing +y
    bv, bt = _box_faces([-0.25, 0.0, -0.25], [0.25, 0.5, 0.25])
    verts = np.concatenate([plane_v, bv])
    tris = np.concatenate([[[0, 1, 2], [0, 2, 3]], bt + 4])
    return {"vertices": verts, "triangles": tris, "albedo": 0.5, "specular": 0.0}, (np.array([-0.25, 0.0, -0.25]), np.array([0.25, 0.5, 0.25]))


@pytest.fixture(scope="module")
def head_view():
    from pnrelight.avatar.face_model import load_ict_face_model
    from pnrelight.avatar.render import framing

    m = load_ict_face_model()
    mesh = {"vertices": m.vertices, "triangles": m.triangles, "uvs": m.uvs, "albedo": (0.6, 0.45, 0.4), "specular": 0.028, "roughness": 0.45}
    center, dist = framing(m.vertices, 30.0)
    size = 256
    return m, prepare_view(mesh, orbit_pose(center, dist, 0.0, 0.0), _K(size, (size / 2) / math.tan(math.radians(15))), size)


# ----------------------------------------------------------------------------- calibration


@pytest.mark.parametrize("backend", BACKENDS)
def test_sun_calibration_matches_cycles(backend):
    g = prepare_view(_plate(), orbit_pose(np.zeros(3), 3.0, 0, 0), _K(64, 150.0), 64, backend=backend)
    assert g.mask.all()
    facing = render_olat(g, sun_light([0, 0, 1], 1.0))
    tilted = render_olat(g, sun_light([math.sin(math.pi / 3), 0, 0.5], 1.0))
    assert np.allclose(facing, 1 / math.pi, rtol=0.005)
    assert np.allclose(tilted, 1 / (2 * math.pi), rtol=0.005)
    coloured = render_olat(g, sun_light([0, 0, 1], 2.0, colour=(1.0, 0.5, 0.25)))
    assert np.allclose(coloured, np.array([2.0, 1.0, 0.5]) / math.pi, rtol=0.005)


@pytest.mark.parametrize("backend", BACKENDS)
def test_point_light_calibration_inverse_square(backend):
    P, r = 100.0, 2.0
    g = prepare_view(_plate(), orbit_pose(np.zeros(3), 3.0, 0, 0), _K(64, 150.0), 64, backend=backend)
    img = render_olat(g, point_light([0, 0, r], P))
    # Every pixel: P / (4 pi d²) cos(theta) / pi with its own distance and angle.
    pos = ground_truth_passes(g)["position"].astype(np.float64)
    to_light = np.array([0, 0, r]) - pos
    d = np.linalg.norm(to_light, axis=-1)
    expected = P / (4 * math.pi * d**2) * (to_light[..., 2] / d) / math.pi
    assert np.allclose(img[..., 0], expected, rtol=0.005)
    centre = img[31:33, 31:33, 1].mean()
    assert centre == pytest.approx(P / (4 * math.pi * r**2) / math.pi, rel=0.005)


def test_uniform_world_renders_albedo():
    g = prepare_view(_plate(albedo=(0.7, 0.5, 0.3)), orbit_pose(np.zeros(3), 3.0, 0, 0), _K(16, 40.0), 16)
    env = np.ones((64, 128, 3), dtype=np.float32)
    img = render_environment(g, env, rows=16)  # 512 suns: 0.3 % short of the integral (cells cut by the horizon)
    assert np.allclose(img, [0.7, 0.5, 0.3], rtol=0.005)


# ----------------------------------------------------------------------------- BRDF energy


@pytest.mark.parametrize("roughness", [0.1, 0.3, 0.6, 1.0])
@pytest.mark.parametrize("view_deg", [0.0, 45.0, 75.0])
def test_specular_lobe_reflects_at_most_what_arrives(roughness, view_deg):
    """White furnace on the lobe alone (F0 = 1): the directional albedo, integrated by sampling the GGX half
    vectors with their own pdf (stratified), stays <= 1, and a smooth lobe keeps most of the energy."""
    alpha = roughness**2
    k = 400
    xi1, xi2 = np.meshgrid((np.arange(k) + 0.5) / k, (np.arange(k) + 0.5) / k)
    theta_h = np.arctan(alpha * np.sqrt(xi1 / (1 - xi1))).reshape(-1)
    phi_h = 2 * np.pi * xi2.reshape(-1)
    h = np.stack([np.sin(theta_h) * np.cos(phi_h), np.sin(theta_h) * np.sin(phi_h), np.cos(theta_h)], 1)
    v = np.array([math.sin(math.radians(view_deg)), 0.0, math.cos(math.radians(view_deg))])
    vh = h @ v
    l = 2 * vh[:, None] * h - v
    n = np.array([0.0, 0.0, 1.0])
    D = alpha**2 / (np.pi * (np.cos(theta_h) ** 2 * (alpha**2 - 1) + 1) ** 2)
    pdf_l = D * np.cos(theta_h) / (4 * np.maximum(vh, 1e-12))
    f = specular_brdf(n, v, l, roughness, 1.0).astype(np.float64)
    integrand = np.where((l[:, 2] > 0) & (vh > 0), f * np.clip(l[:, 2], 0, None) / np.maximum(pdf_l, 1e-300), 0.0)
    albedo = integrand.mean()
    assert albedo <= 1.0 + 2e-3
    if roughness <= 0.3 and view_deg <= 45:
        assert albedo > 0.9


def test_specular_plate_in_a_white_furnace_stays_below_one():
    g = prepare_view(_plate(albedo=0.0, specular=1.0, roughness=0.5), orbit_pose(np.zeros(3), 3.0, 30, 0), _K(8, 20.0), 8)
    img = render_environment(g, np.ones((64, 128, 3), np.float32), rows=32, shadows=False)
    assert 0.5 < img.max() <= 1.0 + 5e-3


def test_diffuse_only_has_no_specular():
    pose = orbit_pose(np.zeros(3), 3.0, 30, 0)
    g = prepare_view(_plate(albedo=0.5, specular=0.5, roughness=0.3), pose, _K(32, 80.0), 32)
    mirror = pose[:3, 3] * np.array([-1, 1, 1])  # the camera's mirror image in the plate's normal
    light = sun_light(mirror, 1.0)
    full, diffuse = render_olat(g, light), render_olat(g, light, diffuse_only=True)
    cos = mirror[2] / np.linalg.norm(mirror)
    assert np.allclose(diffuse, 0.5 / math.pi * cos, rtol=1e-4)  # exactly the Lambert term
    assert (full - diffuse).min() > 0 and (full - diffuse).max() > 0.5 * diffuse.max()


# ----------------------------------------------------------------------------- linearity


def test_lights_add_up_exactly(head_view):
    _, g = head_view
    suns = [sun_light([0.8, 0.2, 0.5], (2.0, 1.0, 0.5)), sun_light([-0.3, 0.6, 0.7], 1.5, colour=(0.2, 0.4, 1.0)),
            point_light([0.0, 0.3, 1.0], 50.0, size=0.05)]
    each = [render_olat(g, lt) for lt in suns]
    together = render_lights(g, suns)
    assert np.allclose(together, each[0] + each[1] + each[2], rtol=1e-6, atol=1e-7)
    assert np.allclose(render_environment(g, suns[:2]), each[0] + each[1], rtol=1e-6, atol=1e-7)
    env = np.zeros((16, 32, 3), np.float32)
    env[3, 5] = (5.0, 4.0, 3.0)
    env[6, 20] = (1.0, 2.0, 3.0)
    env_suns = environment_to_suns(env, rows=8)
    assert len(env_suns) == 2
    direct = render_environment(g, env, rows=8)
    assert np.allclose(direct, sum(render_olat(g, lt) for lt in env_suns), rtol=1e-6, atol=1e-7)


def test_environment_to_suns_follows_cycles_layout():
    env = np.zeros((8, 16, 3), np.float32)
    env[3, 8] = 1.0  # just above the horizon at the image centre: Blender +X = world +x
    env[0, 4] = 1.0  # top row, u = 0.25: straight up, towards Blender +Y = world -z
    suns = environment_to_suns(env, rows=8)
    dirs = np.array([s["direction"] for s in suns])
    assert any(d[0] > 0.95 and d[1] > 0 for d in dirs)
    assert any(d[1] > 0.9 and d[2] < 0 for d in dirs)
    total = sum(np.asarray(s["strength"]) for s in suns)
    el = np.linspace(math.pi / 2, -math.pi / 2, 9)
    omega = (np.sin(el[:-1]) - np.sin(el[1:])) * 2 * math.pi / 16
    assert np.allclose(total, omega[3] + omega[0], rtol=1e-5)


@pytest.mark.parametrize("parallel", [{"workers": 2}, {"threads": 2}])
def test_olat_set_in_processes_or_threads_matches_one_process(head_view, parallel):
    _, g = head_view
    lights = [sun_light(d, 1.0) for d in ([1, 0, 1], [-1, 0.5, 1], [0, 1, 0.2], [0.3, -0.4, 1], [0, 0, 1], [1, 1, 1])]
    one = list(render_olat_set(g, lights))
    many = list(render_olat_set(g, lights, **parallel))
    assert len(many) == 6 and all(np.array_equal(a, b) for a, b in zip(one, many))


# ----------------------------------------------------------------------------- shadows


def _box_shadow_masks(backend):
    mesh, (lo, hi) = _box_on_plane()
    size = 128
    pose = orbit_pose(np.array([-0.4, 0.0, 0.0]), 3.0, 25.0, 55.0)
    g = prepare_view(mesh, pose, _K(size, 150.0), size, backend=backend)
    L = np.array([1.0, 0.6, 0.4])
    L /= np.linalg.norm(L)
    lit, unshadowed = render_olat(g, sun_light(L)), render_olat(g, sun_light(L), shadows=False)
    pos = ground_truth_passes(g)["position"].astype(np.float64)
    plane = g.mask & (np.abs(pos[..., 1]) < 1e-4) & ~np.all((pos >= lo - 1e-4) & (pos <= hi + 1e-4), axis=-1)
    # Reference: the ray from each plane point towards the sun against the box (slab test).
    with np.errstate(divide="ignore", invalid="ignore"):
        t0, t1 = (lo - pos) / L, (hi - pos) / L
    tnear = np.minimum(t0, t1).max(-1)
    tfar = np.maximum(t0, t1).min(-1)
    reference = plane & (tfar >= np.maximum(tnear, 0))
    rendered = plane & (lit[..., 0] < 0.5 * unshadowed[..., 0])
    return rendered, reference, g, lit, unshadowed


@pytest.mark.parametrize("backend", BACKENDS)
def test_box_casts_the_analytic_shadow(backend):
    rendered, reference, *_ = _box_shadow_masks(backend)
    assert reference.sum() > 300
    iou = (rendered & reference).sum() / (rendered | reference).sum()
    assert iou >= 0.9 if backend == "raster" else iou >= 0.97


@pytest.mark.parametrize("position", [(2.0, 1.5, 0.5), (0.6, 0.8, 0.1)], ids=["outside", "inside-cube-map"])
def test_point_light_shadow_maps_agree_with_ray_casting(monkeypatch, position):
    monkeypatch.setattr(R, "_SHADOW_MAP_SIZE", 512)  # coarse maps keep the cube-map case quick
    mesh, _ = _box_on_plane()
    masks = []
    for backend in BACKENDS:
        g = prepare_view(mesh, orbit_pose(np.array([-0.4, 0.0, 0.0]), 3.0, 25.0, 55.0), _K(96, 110.0), 96, backend=backend)
        light = point_light(position, 100.0)
        masks.append(g.mask & (render_olat(g, light)[..., 0] < 0.5 * render_olat(g, light, shadows=False)[..., 0]))
    assert masks[0].sum() > 300
    assert (masks[0] & masks[1]).sum() / (masks[0] | masks[1]).sum() >= 0.9


def test_soft_shadow_has_a_penumbra():
    mesh, _ = _box_on_plane()
    g = prepare_view(mesh, orbit_pose(np.zeros(3), 6.0, 25.0, 55.0), _K(96, 140.0), 96)
    L = [1.0, 1.2, 0.4]
    hard = render_olat(g, sun_light(L), shadows=True)
    soft = render_olat(g, sun_light(L, size=math.radians(10)), shadow_samples=16)
    free = render_olat(g, sun_light(L), shadows=False)
    ratio_hard = hard[..., 0][g.mask] / np.maximum(free[..., 0][g.mask], 1e-9)
    ratio_soft = soft[..., 0][g.mask] / np.maximum(free[..., 0][g.mask], 1e-9)
    partial = lambda r: ((r > 0.05) & (r < 0.95) & (free[..., 0][g.mask] > 0)).sum()  # noqa: E731
    assert partial(ratio_hard) == 0 and partial(ratio_soft) > 30
    assert abs(ratio_soft.mean() - ratio_hard.mean()) < 0.02  # same shadow, blurred


@pytest.mark.parametrize("backend", BACKENDS)
def test_head_nose_casts_a_shadow_on_the_far_cheek(head_view, backend):
    model, g_embree = head_view
    g = g_embree if backend == "embree" else prepare_view(
        {"vertices": model.vertices, "triangles": model.triangles, "albedo": 0.5, "specular": 0.0},
        g_embree.camera_pose, g_embree.K, g_embree.height, backend="raster")
    L = np.array([0.85, 0.1, 0.5])  # from the subject's left (+x), a little in front
    lit = render_olat(g, sun_light(L, 3.0))[..., 0]
    cos = g.image(g.normal @ (L / np.linalg.norm(L)).astype(np.float32))
    pos = g.image(g.position)
    tip = model.landmark_points()[1]  # mediapipe landmark 1: the nose tip
    near = g.mask & (cos > 0.1) & (np.abs(pos[..., 1] - tip[1] + 0.01) < 0.03) & (pos[..., 2] > tip[2] - 0.05)
    far_side = near & (pos[..., 0] < tip[0] - 0.004) & (pos[..., 0] > tip[0] - 0.04)
    light_side = near & (pos[..., 0] > tip[0] + 0.004) & (pos[..., 0] < tip[0] + 0.04)
    shadowed = lit < 1e-6
    assert (shadowed & far_side).sum() >= 30
    assert (shadowed & light_side).sum() <= 0.1 * (shadowed & far_side).sum()


def test_head_cast_shadows_agree_between_ray_casting_and_shadow_maps(head_view):
    """Issue #14's shadow check on a head: the side light's cast shadows (pixels facing the light yet
    unlit: occluded, not back-facing) from Embree's ray casting against the independent shadow-map
    backend, as IoU; both renders share one set of pixels (the Embree G-buffer's)."""
    model, g = head_view
    L = np.array([0.85, 0.1, 0.5])
    lit = render_olat(g, sun_light(L, 3.0))[..., 0]
    facing = g.image(g.normal @ (L / np.linalg.norm(L)).astype(np.float32)) > 0.05
    ray_cast = g.mask & facing & (lit < 1e-6)
    g_raster = prepare_view({"vertices": model.vertices, "triangles": model.triangles, "albedo": 0.5, "specular": 0.0},
                            g.camera_pose, g.K, g.height, backend="raster")
    lit_r = render_olat(g_raster, sun_light(L, 3.0))[..., 0]
    facing_r = g_raster.image(g_raster.normal @ (L / np.linalg.norm(L)).astype(np.float32)) > 0.05
    shadow_map = g_raster.mask & facing_r & (lit_r < 1e-6)
    both = g.mask & g_raster.mask
    iou = (ray_cast & shadow_map & both).sum() / max((( ray_cast | shadow_map) & both).sum(), 1)
    assert ray_cast.sum() > 200  # the nose, ears and jaw cast real shadows
    assert iou >= 0.9, iou


# ----------------------------------------------------------------------------- G-buffer passes


def test_ground_truth_passes_of_a_plate():
    g = prepare_view(_plate(albedo=(0.2, 0.4, 0.6)), orbit_pose(np.zeros(3), 3.0, 0, 0), _K(32, 100.0), 32)
    p = ground_truth_passes(g)
    assert p["mask"].all() and np.allclose(p["depth"], 3.0, atol=1e-5)
    assert np.allclose(p["normal_camera"], [0, 0, 1], atol=1e-5)
    assert np.allclose(p["albedo"], [0.2, 0.4, 0.6], atol=1e-6)
    wide = prepare_view(_plate(half=0.2), orbit_pose(np.zeros(3), 3.0, 0, 0), _K(32, 100.0), 32)
    q = ground_truth_passes(wide)
    assert 0 < q["mask"].mean() < 0.5 and np.isinf(q["depth"][~q["mask"]]).all() and (q["albedo"][~q["mask"]] == 0).all()


def test_textures_and_normal_maps_are_sampled():
    T = 4
    tex = np.zeros((T, T, 3), np.float32)
    tex[:, : T // 2] = (1.0, 0.0, 0.0)  # left half red, right half blue
    tex[:, T // 2:] = (0.0, 0.0, 1.0)
    tilt = np.array([0.5, 0.0, math.sqrt(0.75)], np.float32)
    plate = _plate(albedo=tex, normal_map=np.broadcast_to(tilt, (T, T, 3)), normal_map_space="tangent")
    g = prepare_view(plate, orbit_pose(np.zeros(3), 3.0, 0, 0), _K(32, 100.0), 32)
    p = ground_truth_passes(g)
    assert p["albedo"][16, 2, 0] == pytest.approx(1.0) and p["albedo"][16, 29, 2] == pytest.approx(1.0)
    # The plate's tangent is +x (u grows with x): the tangent-space tilt shows as a world normal towards +x.
    assert np.allclose(p["normal_world"][16, 16], tilt, atol=1e-4)


# ----------------------------------------------------------------------------- subjects and bad input


def _write_avatar_folder(folder, with_textures=True):
    from pnrelight.avatar.export import write_glb
    from pnrelight.avatar.face_model import load_default_face_model, vertex_normals
    from pnrelight.imageio import write_exr, write_image

    m = load_default_face_model(0)
    T = 32
    albedo = np.random.default_rng(0).uniform(0.1, 0.9, (T, T, 3)).astype(np.float32)
    folder.mkdir()
    delta = np.zeros((1, len(m.vertices), 3), np.float32)
    delta[0, :10, 1] = 0.01
    write_glb(folder / "avatar.glb", m.vertices, m.triangles, m.uvs, vertex_normals(m.vertices, m.triangles), albedo ** (1 / 2.2),
              np.broadcast_to([0, 0, 1.0], (T, T, 3)), np.ones((T, T, 3)), morph_targets=delta, morph_weights=[0.5])
    if with_textures:
        (folder / "textures").mkdir()
        write_exr(folder / "textures" / "albedo.exr", albedo)
        write_image(folder / "textures" / "normal_object.png", np.broadcast_to([0.5, 0.5, 1.0], (T, T, 3)))
        write_image(folder / "textures" / "specular.png", np.full((T, T), 0.25), bits=16)
    return m, albedo


def test_load_avatar_folder(tmp_path):
    m, albedo = _write_avatar_folder(tmp_path / "avatar")
    (tmp_path / "avatar" / "avatar.json").write_text("{}")
    for path in (tmp_path / "avatar", tmp_path / "avatar" / "avatar.json"):
        s = load_subject(path)
        assert np.allclose(s["albedo"], albedo, atol=1e-6) and s["normal_map_space"] == "object"
        assert np.allclose(s["specular"], 0.25, atol=1e-4) and 0.35 <= s["roughness"].min() <= s["roughness"].max() <= 0.9
        assert np.allclose(s["uvs"], m.uvs, atol=1e-6)
        moved = s["vertices"] - m.vertices
        assert np.allclose(moved[:10, 1], 0.005, atol=1e-6) and np.abs(moved[10:]).max() < 1e-6  # morph weight 0.5 applied
    g = prepare_view(s, orbit_pose(m.vertices.mean(0), 0.6, 0, 0), _K(32, 60.0), 32)
    assert g.mask.any() and np.isfinite(render_olat(g, sun_light([0, 0, 1]))).all()


def test_load_glb_and_obj_with_textures(tmp_path):
    import trimesh
    from PIL import Image

    m, _ = _write_avatar_folder(tmp_path / "avatar", with_textures=False)
    s = load_subject(tmp_path / "avatar" / "avatar.glb")  # the embedded sRGB base colour, decoded
    assert s["albedo"].shape == (32, 32, 3) and s["albedo"].max() <= 1.0 and s["normal_map_space"] == "tangent"
    with pytest.raises(InputError, match="albedo"):
        load_subject(tmp_path / "avatar")  # the folder needs textures/albedo.*

    tex = np.zeros((8, 8, 3), np.uint8)
    tex[...] = (188, 128, 64)
    Image.fromarray(tex).save(tmp_path / "skin.png")
    (tmp_path / "plate.mtl").write_text("newmtl skin\nKd 1 1 1\nmap_Kd skin.png\n")
    (tmp_path / "plate.obj").write_text("mtllib plate.mtl\nv -1 -1 0\nv 1 -1 0\nv 1 1 0\nv -1 1 0\nvt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\n"
                                        "usemtl skin\nf 1/1 2/2 3/3\nf 1/1 3/3 4/4\n")
    s = load_subject(tmp_path / "plate.obj")
    from pnrelight.avatar.color import srgb_to_linear

    assert np.allclose(s["albedo"][0, 0], srgb_to_linear(np.array([188, 128, 64]) / 255.0), atol=1e-4)
    (tmp_path / "skin.png").unlink()
    with pytest.raises(InputError, match="skin.png"):
        load_subject(tmp_path / "plate.obj")
    (tmp_path / "empty.obj").write_text("# nothing\n")
    with pytest.raises(InputError):
        load_subject(tmp_path / "empty.obj")
    assert trimesh  # the loader's dependency is present here


def test_bad_inputs_raise_input_error():
    pose, K = orbit_pose(np.zeros(3), 3.0, 0, 0), _K(16, 40.0)
    with pytest.raises(InputError, match="empty"):
        prepare_view({"vertices": np.zeros((0, 3)), "triangles": np.zeros((0, 3), int)}, pose, K, 16)
    with pytest.raises(InputError, match="NaN"):
        prepare_view({"vertices": [[0, 0, 0], [1, 0, 0], [np.nan, 1, 0]], "triangles": [[0, 1, 2]]}, pose, K, 16)
    g = prepare_view(_plate(), pose, K, 16)
    for bad in (sun_light([np.nan, 0, 1]), sun_light([0, 0, 1], strength=np.nan), point_light([0, 0, np.inf], 10.0),
                sun_light([0, 0, 0]), {"type": "spot", "direction": [0, 0, 1]}, sun_light([0, 0, 1], colour=(1, -1, 1))):
        with pytest.raises(InputError):
            render_olat(g, bad)
    with pytest.raises(InputError):
        list(render_olat_set(g, [sun_light([0, 0, 1]), sun_light([0, np.nan, 1])]))
    with pytest.raises(InputError):
        load_subject("/nonexistent/avatar")
    with pytest.raises(InputError, match="lat-long"):
        render_environment(g, np.ones((8, 8, 3)))
    with pytest.raises(InputError):
        prepare_view(_plate(), np.eye(3), K, 16)


def test_missing_embreex_warns_once_and_falls_back(monkeypatch):
    monkeypatch.setitem(sys.modules, "embreex", None)  # any import of embreex now fails
    monkeypatch.setattr(R, "_EMBREE", {"tried": False, "module": None, "warned": False})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g = prepare_view(_plate(), orbit_pose(np.zeros(3), 3.0, 0, 0), _K(16, 40.0), 16)
        prepare_view(_plate(), orbit_pose(np.zeros(3), 3.0, 0, 0), _K(16, 40.0), 16)
    assert g.backend == "raster"
    assert sum("embreex unavailable" in str(w.message) for w in caught) == 1
    assert np.allclose(render_olat(g, sun_light([0, 0, 1])), 1 / math.pi, rtol=0.005)


def test_renderer_imports_without_torch():
    code = "import sys; sys.modules['torch'] = None; import pnrelight.lightstage.render; print('ok')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
