"""Rasterizer, UV baking (visibility, confidence, mirror fill, inpainting) and glb export."""
from __future__ import annotations

import numpy as np
import pytest

from avatar_synthetic import blender_import_glb, dome_mesh, place, sample_texture, smooth_texture
from pnrelight.avatar.raster import interpolate, rasterize, rasterize_uv, texel_uvs
from pnrelight.avatar.face_model import vertex_normals
from pnrelight.avatar.uv import bake_textures, rasterize_camera, texel_mirror_map

F, H, W = 700.0, 256, 256
PP = (W / 2, H / 2)


def _brute_force(verts, tris, h, w):
    """Per-pixel loop over all triangles: the reference for coverage, depth test and barycentrics."""
    face = -np.ones((h, w), int)
    depth = np.full((h, w), -np.inf)
    bary = np.zeros((h, w, 3))
    for i in range(h):
        for j in range(w):
            p = np.array([j + 0.5, i + 0.5])
            for f, (a, b, c) in enumerate(tris):
                A, B, C = verts[a, :2], verts[b, :2], verts[c, :2]
                m = np.array([B - A, C - A]).T
                if abs(np.linalg.det(m)) < 1e-12:
                    continue
                l1, l2 = np.linalg.solve(m, p - A)
                l0 = 1 - l1 - l2
                if min(l0, l1, l2) < -1e-9:
                    continue
                z = l0 * verts[a, 2] + l1 * verts[b, 2] + l2 * verts[c, 2]
                if z > depth[i, j]:
                    depth[i, j], face[i, j], bary[i, j] = z, f, (l0, l1, l2)
    return face, depth, bary


def test_rasterize_matches_brute_force():
    rng = np.random.default_rng(0)
    verts = np.concatenate([rng.uniform(-4, 28, (30, 2)), rng.uniform(-1, 1, (30, 1))], 1)
    tris = rng.integers(0, 30, (25, 3))
    tris = tris[(tris[:, 0] != tris[:, 1]) & (tris[:, 1] != tris[:, 2]) & (tris[:, 0] != tris[:, 2])]
    r = rasterize(verts, tris, 24, 24)
    face, depth, bary = _brute_force(verts, tris, 24, 24)
    # Away from exact depth ties the same triangle must win.
    covered = face >= 0
    assert np.array_equal(r.mask, covered)
    assert covered.mean() > 0.3
    assert np.mean(r.face_id[covered] == face[covered]) > 0.99
    np.testing.assert_allclose(r.depth[covered], depth[covered], atol=1e-5)
    same = covered & (r.face_id == face)
    np.testing.assert_allclose(r.bary[same], bary[same], atol=1e-5)
    np.testing.assert_allclose(r.bary[covered].sum(-1), 1.0, atol=1e-6)
    assert np.all(r.face_id[~covered] == -1) and np.all(np.isneginf(r.depth[~covered]))


def test_depth_test_front_triangle_wins_and_backface_culling():
    # Two overlapping triangles; the closer (larger depth) one must be visible in the overlap.
    verts = np.array([[2, 2, 0.0], [30, 2, 0.0], [2, 30, 0.0], [4, 4, 1.0], [30, 4, 1.0], [4, 30, 1.0]])
    tris = np.array([[0, 1, 2], [3, 4, 5]])
    r = rasterize(verts, tris, 32, 32)
    assert r.face_id[10, 10] == 1 and r.face_id[2, 2] == 0
    assert r.depth[10, 10] == pytest.approx(1.0)
    # In (u, v-down) pixels, (0, 1, 2) above is clockwise on screen when y is up -> back-facing.
    culled = rasterize(verts, tris, 32, 32, cull_backfaces=True)
    assert not culled.mask.any()
    flipped = rasterize(verts, tris[:, ::-1], 32, 32, cull_backfaces=True)
    assert flipped.mask.sum() == r.mask.sum()


def test_perspective_correct_interpolation_is_exact_on_a_tilted_plane():
    verts_m, tris, uvs, _ = dome_mesh(n=5, height=0.0)
    vc, _, _ = place(verts_m, yaw_deg=50.0)
    r = rasterize_camera(vc, tris, F, PP, H, W)
    pts = interpolate(vc, tris, r)
    m = r.mask
    # Re-projecting the interpolated 3D point must land on the pixel centre.
    with np.errstate(invalid="ignore", divide="ignore"):
        u = PP[0] + F * pts[..., 0] / -pts[..., 2]
        v = PP[1] - F * pts[..., 1] / -pts[..., 2]
    jj, ii = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    assert m.sum() > 2000
    assert np.abs(u - jj)[m].max() < 1e-3 and np.abs(v - ii)[m].max() < 1e-3


def test_rasterize_uv_covers_layout_and_recovers_uv():
    verts, tris, uvs, _ = dome_mesh(n=9)
    r = rasterize_uv(uvs, tris, 64)
    assert r.mask.all()  # the layout fills the unit square
    uv = interpolate(uvs, tris, r)
    np.testing.assert_allclose(uv, texel_uvs(64), atol=1e-5)


def _render(texture, yaw, n=41, height=0.8):
    verts_m, tris, uvs, mirror = dome_mesh(n=n, height=height)
    vc, R, _ = place(verts_m, yaw_deg=yaw)
    r = rasterize_camera(vc, tris, F, PP, H, W)
    image = sample_texture(texture, interpolate(uvs, tris, r))
    normals = interpolate(vertex_normals(vc, tris), tris, r)
    normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-9)
    return image, normals, vc, tris, uvs, R, r


def _psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((a - b) ** 2))


def test_bake_recovers_texture_in_visible_texels():
    T = 256  # > 32767 covered texels: exercises the row layout of the cv2.remap sample maps
    gt = smooth_texture(T)
    image, normals, vc, tris, uvs, R, r = _render(gt, yaw=0.0)
    out = bake_textures({"albedo": image, "normal": normals}, vc, tris, uvs, F, PP, T, rotation=R, mirror=False, image_raster=r)
    good = out["confidence"] > 0.5
    assert good.mean() > 0.5
    assert _psnr(out["albedo"][good], gt[good]) > 30.0
    # Normals come back in the model frame: the dome's centre faces +z.
    assert out["normal"][T // 2, T // 2, 2] > 0.99


def test_mirror_fill_and_inpaint_leave_no_holes_and_no_seam():
    T = 128
    gt = smooth_texture(T, symmetric=True)
    image, normals, vc, tris, uvs, R, r = _render(gt, yaw=60.0)
    out = bake_textures({"albedo": image, "normal": normals}, vc, tris, uvs, F, PP, T, rotation=R, image_raster=r)
    conf, alb, nrm = out["confidence"], out["albedo"], out["normal"]
    hidden = out["coverage"] & (conf < 0.02)
    mirrored_seen = hidden & (conf[:, ::-1] > 0.3)
    # Yawed by 60 degrees, one side of the dome is unseen and must come from its mirror.
    assert hidden.mean() > 0.1 and mirrored_seen.sum() > 200
    assert _psnr(alb[mirrored_seen], gt[mirrored_seen]) > 28.0
    # Mirrored normals: x flipped in the model frame, so the map stays left/right antisymmetric in x.
    np.testing.assert_allclose(nrm[mirrored_seen][:, 0], -nrm[:, ::-1][mirrored_seen][:, 0], atol=0.05)
    # No holes anywhere (padding included) and values stay in the data range.
    assert np.isfinite(alb).all() and alb.min() > 0.05 and alb.max() < 0.95
    np.testing.assert_allclose(np.linalg.norm(nrm, axis=-1), 1.0, atol=1e-4)
    # Continuity across u = 0.5: the jump between the two middle columns is no larger than elsewhere.
    step = np.abs(np.diff(alb, axis=1)).max(-1)
    assert step[:, T // 2 - 1].max() < 3 * np.percentile(step, 99) + 1e-3


def test_inpaint_fills_texels_seen_on_neither_side():
    T = 96
    gt = smooth_texture(T)
    verts_m, tris, uvs, _ = dome_mesh(n=31)
    vc, R, _ = place(verts_m, yaw_deg=0.0)
    pp = (W / 2, H / 2 - 70)  # the top of the dome falls outside the photo
    r = rasterize_camera(vc, tris, F, pp, H, W)
    image = sample_texture(gt, interpolate(uvs, tris, r))
    out = bake_textures({"albedo": image}, vc, tris, uvs, F, pp, T, rotation=R, image_raster=r)
    unseen = out["coverage"] & ~out["visible"]
    assert unseen[: T // 8].all() and unseen.mean() > 0.05
    alb = out["albedo"]
    assert np.isfinite(alb).all() and alb[unseen].min() > 0.05
    # Inpainting continues the seen rows smoothly into the unseen ones.
    edge = np.flatnonzero(unseen.all(1))[-1]
    assert np.abs(alb[edge] - alb[edge + 1]).max() < 0.05


def test_mirror_map_of_the_symmetric_default_model_bakes_exactly_like_the_u_flip():
    from pnrelight.avatar.face_model import load_default_face_model

    # The default (mediapipe) model, yawed so one side is hidden and comes from its mirror.
    T = 128
    model = load_default_face_model(1)
    verts_m = model.vertices * 0.8
    tris, uvs = model.triangles, model.uvs
    gt = smooth_texture(T, symmetric=True)
    vc, R, _ = place(verts_m, yaw_deg=40.0)
    r = rasterize_camera(vc, tris, F, PP, H, W)
    image = sample_texture(gt, interpolate(uvs, tris, r))
    normals = interpolate(vertex_normals(vc, tris), tris, r)
    normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-9)
    maps = {"albedo": image, "normal": normals, "specular": image[..., 0]}
    uv_r = rasterize_uv(uvs, tris, T)
    mirror = texel_mirror_map(uvs, tris, model.uv_mirror, uv_r, model.vertices)
    assert np.array_equal(mirror, np.arange(T * T).reshape(T, T)[:, ::-1])  # the (1 - u, v) flip
    flip = bake_textures(maps, vc, tris, uvs, F, PP, T, rotation=R, mirror=True, image_raster=r, uv_raster=uv_r)
    mapped = bake_textures(maps, vc, tris, uvs, F, PP, T, rotation=R, mirror=mirror, image_raster=r, uv_raster=uv_r)
    assert flip.keys() == mapped.keys()
    for key in flip:
        assert np.array_equal(flip[key], mapped[key]), key
    # The mirror fill did something: hidden texels whose mirror is seen.
    hidden = flip["coverage"] & (flip["confidence"] < 0.02) & (flip["confidence"][:, ::-1] > 0.3)
    assert hidden.sum() > 100 and np.all(flip["filled_confidence"][hidden] > 0.2)


def test_texel_mirror_map_on_the_head_atlas_reflects_the_surface_point():
    from pnrelight.avatar.face_model import load_ict_face_model

    model = load_ict_face_model()
    T = 256
    r = rasterize_uv(model.uvs, model.triangles, T)
    mirror = texel_mirror_map(model.uvs, model.triangles, model.uv_mirror, r, model.vertices).reshape(-1)
    pts = interpolate(model.vertices, model.triangles, r).reshape(-1, 3).astype(np.float64)
    part = model.vertex_part[model.triangles].max(1)[r.face_id.reshape(-1)]
    cov = r.mask.reshape(-1)
    texel_mm = 1000 * 0.2 / (0.625 * T)  # the face cell maps ~20 cm of head onto 0.625 of the atlas
    for name in ("face", "head"):
        sel = cov & (part == model.part_names.index(name))
        has = sel & (mirror >= 0)
        assert has.sum() > 0.95 * sel.sum(), name  # nearly every texel has a mirror texel
        ok = has & cov[np.maximum(mirror, 0)]
        err_mm = 1000 * np.linalg.norm(pts[mirror[ok]] - pts[ok] * (-1.0, 1.0, 1.0), axis=1)
        # The mirror texel holds the reflected surface point, to about a texel.
        assert np.percentile(err_mm, 99) < 1.5 * texel_mm, (name, np.percentile(err_mm, 99))


def _glb_inputs(T=64):
    from pnrelight.avatar.export import roughness_metallic_from_specular, tangent_space_normal_map, vertex_tangents

    verts, tris, uvs, _ = dome_mesh(n=21)
    n = vertex_normals(verts, tris)
    tg = vertex_tangents(verts, n, uvs, tris)
    r = rasterize_uv(uvs, tris, T)
    # A bumpy object-space normal map: the smooth normal tilted by a known pattern.
    n_obj = interpolate(n, tris, r)
    n_obj[..., 0] += 0.2 * np.sin(texel_uvs(T)[..., 1] * 12)
    n_obj /= np.linalg.norm(n_obj, axis=-1, keepdims=True)
    n_tan = tangent_space_normal_map(n_obj, verts, n, tg, uvs, tris)
    base = smooth_texture(T)
    rm = roughness_metallic_from_specular(np.linspace(0, 1, T * T).reshape(T, T))
    return verts, tris, uvs, n, tg, r, n_obj, n_tan, base, rm


def test_tangent_space_normal_map_round_trip():
    verts, tris, uvs, n, tg, r, n_obj, n_tan, _, _ = _glb_inputs()
    # Rebuild object-space normals the way a glTF viewer does: B = cross(N, T) * w.
    N = interpolate(n, tris, r)
    N /= np.linalg.norm(N, axis=-1, keepdims=True)
    Tw = interpolate(tg, tris, r)
    Tt = Tw[..., :3] - N * (N * Tw[..., :3]).sum(-1, keepdims=True)
    Tt /= np.linalg.norm(Tt, axis=-1, keepdims=True)
    B = np.cross(N, Tt) * np.sign(Tw[..., 3:])
    back = n_tan[..., :1] * Tt + n_tan[..., 1:2] * B + n_tan[..., 2:] * N
    np.testing.assert_allclose(back[r.mask], n_obj[r.mask], atol=1e-4)
    # The bump tilts along +x = +u = the tangent, so it shows in the red channel only.
    assert np.abs(n_tan[..., 0]).max() > 0.15 and np.abs(n_tan[..., 1]).max() < 0.05
    # Tangents follow +u, bitangents +v on the dome's centre.
    assert tg[len(tg) // 2, 0] > 0.99 and tg[len(tg) // 2, 3] == 1.0


def test_glb_round_trip_through_trimesh(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    from pnrelight.avatar.export import write_glb

    verts, tris, uvs, n, tg, r, n_obj, n_tan, base, rm = _glb_inputs()
    path = write_glb(tmp_path / "a.glb", verts, tris, uvs, n, base, n_tan, rm, tangents=tg)
    scene = trimesh.load(path)
    (mesh,) = scene.geometry.values()
    assert mesh.vertices.shape == verts.shape and len(mesh.faces) == len(tris)
    np.testing.assert_allclose(np.sort(mesh.vertices, 0), np.sort(verts, 0), atol=1e-6)
    # glTF stores v down; trimesh flips back to v up.
    np.testing.assert_allclose(np.sort(mesh.visual.uv, 0), np.sort(uvs, 0), atol=1e-6)
    mat = mesh.visual.material
    got = np.asarray(mat.baseColorTexture.convert("RGB"), dtype=np.float32) / 255
    assert np.abs(got - base).max() < 1 / 255 + 1e-6
    nrm = np.asarray(mat.normalTexture.convert("RGB"), dtype=np.float32) / 255 * 2 - 1
    assert np.abs(nrm - n_tan).max() < 2.5 / 255
    mr = np.asarray(mat.metallicRoughnessTexture.convert("RGB"), dtype=np.float32) / 255
    assert np.abs(mr[..., 1] - rm[..., 1]).max() < 1 / 255 + 1e-6 and mr[..., 2].max() == 0


@pytest.mark.blender
def test_glb_imports_in_blender(tmp_path):
    pytest.importorskip("bpy")
    from pnrelight.avatar.export import write_glb

    verts, tris, uvs, n, tg, r, n_obj, n_tan, base, rm = _glb_inputs()
    path = write_glb(tmp_path / "a.glb", verts, tris, uvs, n, base, n_tan, rm, tangents=tg)
    res = blender_import_glb(path)
    assert res["status"] == ["FINISHED"] and len(res["meshes"]) == 1
    mesh = res["meshes"][0]
    assert mesh["vertices"] == len(verts) and mesh["polygons"] == len(tris)
    assert {"BSDF_PRINCIPLED", "NORMAL_MAP", "TEX_IMAGE"} <= set(mesh["nodes"])
    img = res["images"]["base_color"]
    assert img["size"] == [base.shape[1], base.shape[0]]
    np.testing.assert_allclose(img["mean"], base.reshape(-1, 3).mean(0), atol=1.5 / 255)
    np.testing.assert_allclose(img["top_left"], base[0, 0], atol=1.5 / 255)  # rows not flipped
