"""Animatable avatars: glTF morph targets (dense and sparse), the pipeline's neutral head + expression
targets, and Blender's importer turning them into named shape keys that move the right vertices."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from avatar_synthetic import blender_shape_keys, dome_mesh, ellipsoid_head, glb_accessor, head_blendshapes, read_glb, smooth_texture


def _textures(T=32):
    from pnrelight.avatar.export import roughness_metallic_from_specular

    flat = np.zeros((T, T, 3), np.float32)
    flat[..., 2] = 1.0
    return smooth_texture(T), flat, roughness_metallic_from_specular(np.full((T, T), 0.2))


def _write(path, verts, tris, uvs, **morph):
    from pnrelight.avatar.export import write_glb
    from pnrelight.avatar.face_model import vertex_normals

    base, n_tan, rm = _textures()
    return write_glb(path, verts, tris, uvs, vertex_normals(verts, tris), base, n_tan, rm, **morph)


def _targets(gltf, binary):
    """(E, V, 3) decoded POSITION targets of the only primitive, and their accessors."""
    prim = gltf["meshes"][0]["primitives"][0]
    accs = [t["POSITION"] for t in prim["targets"]]
    return np.stack([glb_accessor(gltf, binary, a) for a in accs]), [gltf["accessors"][a] for a in accs]


def test_morph_targets_round_trip(tmp_path):
    verts, tris, uvs, _ = dome_mesh(n=21)
    rng = np.random.default_rng(0)
    V = len(verts)
    local = np.zeros((V, 3), np.float32)
    chin = np.flatnonzero(verts[:, 1] < -0.06)  # a lower band: the "jaw"
    local[chin] = rng.normal(0, 0.003, (len(chin), 3))
    local[chin[::7], 0] = 0.0  # a zero component inside a moving vertex stays exact
    everywhere = rng.normal(0, 0.002, (V, 3)).astype(np.float32)
    noisy = np.where(rng.random((V, 3)) < 0.5, 3e-7, -4e-7).astype(np.float32)  # below morph_epsilon: dropped
    noisy[5] = (0.01, -0.02, 0.005)
    targets = np.stack([local, everywhere, np.zeros((V, 3), np.float32), noisy])
    names = ["jawOpen", "cheekPuff", "unused", "browInnerUp_L"]
    weights = [0.25, 0.0, 1.0, -0.5]
    path = _write(tmp_path / "m.glb", verts, tris, uvs, morph_targets=targets, morph_target_names=names, morph_weights=weights)

    gltf, binary = read_glb(path)
    mesh = gltf["meshes"][0]
    assert mesh["extras"]["targetNames"] == names and mesh["weights"] == weights
    got, accs = _targets(gltf, binary)
    expected = targets.copy()
    expected[3] = 0.0
    expected[3, 5] = noisy[5]
    np.testing.assert_array_equal(got, expected)
    # The base mesh is untouched.
    np.testing.assert_array_equal(glb_accessor(gltf, binary, mesh["primitives"][0]["attributes"]["POSITION"]), verts)
    # Storage: the local and the one-vertex targets are sparse, the global one dense, the empty one has no data.
    assert accs[0]["sparse"]["count"] == len(chin) and "bufferView" not in accs[0]
    assert "bufferView" in accs[1] and "sparse" not in accs[1]
    assert "bufferView" not in accs[2] and "sparse" not in accs[2]
    assert accs[3]["sparse"]["count"] == 1
    for acc, d in zip(accs, expected):
        assert acc["min"] == [float(x) for x in d.min(0)] and acc["max"] == [float(x) for x in d.max(0)]
        if "sparse" in acc:
            assert acc["sparse"]["indices"]["componentType"] == 5123  # uint16 for V < 65536
            for part in ("indices", "values"):
                assert "target" not in gltf["bufferViews"][acc["sparse"][part]["bufferView"]]
    # Sparse storage keeps the file small: far less than four dense targets.
    plain = _write(tmp_path / "plain.glb", verts, tris, uvs)
    assert path.stat().st_size - plain.stat().st_size < 2.2 * 12 * V


def test_morph_targets_are_checked(tmp_path):
    verts, tris, uvs, _ = dome_mesh(n=5)
    d = np.zeros((2, len(verts), 3), np.float32)
    with pytest.raises(ValueError, match="names"):
        _write(tmp_path / "a.glb", verts, tris, uvs, morph_targets=d, morph_target_names=["a"])
    with pytest.raises(ValueError, match="weights"):
        _write(tmp_path / "a.glb", verts, tris, uvs, morph_targets=d, morph_weights=[1.0])
    with pytest.raises(ValueError, match=r"\(E, 25, 3\)"):
        _write(tmp_path / "a.glb", verts, tris, uvs, morph_targets=d[:, :-1])
    assert not (tmp_path / "a.glb").exists()


def test_glb_with_sparse_targets_loads_in_trimesh(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    verts, tris, uvs, mouth = ellipsoid_head(12, 20)
    deltas, names = head_blendshapes(verts, mouth)
    path = _write(tmp_path / "h.glb", verts, tris, uvs, morph_targets=deltas, morph_target_names=names)
    (mesh,) = trimesh.load(path).geometry.values()
    assert len(mesh.vertices) == len(verts)


def _expression_model(names=("jawOpen", "browInnerUp", "cheekPuff")):
    from pnrelight.avatar.face_model import FaceModel

    verts, tris, uvs, mouth = ellipsoid_head(16, 28)
    deltas, _ = head_blendshapes(verts, mouth)
    rng = np.random.default_rng(1)
    shape_basis = (1e-3 * rng.normal(size=(len(verts), 3, 4))).astype(np.float32)
    return FaceModel(name="synthetic head", vertices=verts, triangles=tris, uvs=uvs,
                     landmark_faces=np.zeros(0, np.int32), landmark_bary=np.zeros((0, 3), np.float32),
                     shape_basis=shape_basis, expression_basis=np.moveaxis(deltas, 0, 2).copy(),
                     expression_names=None if names is None else list(names), expression_range=(0.0, 1.0))


def _fit_and_textures(model, expression, T=64):
    from types import SimpleNamespace

    from pnrelight.avatar.raster import rasterize_uv
    from pnrelight.envmap import rotation_y

    shape = np.array([0.5, -1.0, 0.2, 0.0])
    R = rotation_y(20.0) @ np.array([[1, 0, 0], [0, np.cos(0.1), -np.sin(0.1)], [0, np.sin(0.1), np.cos(0.1)]])
    t = np.array([0.01, -0.02, -0.6])
    verts_cam = model.shaped_vertices(shape, expression).astype(np.float64) @ R.T + t
    fit = SimpleNamespace(vertices=verts_cam.astype(np.float32), rotation=R, translation=t, shape=shape,
                          expression=np.asarray(expression, dtype=np.float64))
    normal = np.zeros((T, T, 3), np.float32)
    normal[..., 2] = 1.0
    tex = {"albedo": smooth_texture(T), "normal": normal, "specular": np.full((T, T), 0.1, np.float32),
           "filled_confidence": np.ones((T, T), np.float32), "uv_raster": rasterize_uv(model.uvs, model.triangles, T)}
    return fit, tex, shape


def test_pipeline_exports_neutral_head_with_expression_targets(tmp_path):
    from pnrelight.avatar.pipeline import _export, expression_names

    model = _expression_model()
    expression = np.array([0.6, 0.0, 0.3])
    fit, tex, shape = _fit_and_textures(model, expression)
    info = _export(tmp_path, model, fit, tex)
    assert info["morph_targets"] == 3 and info["base_mesh"] == "neutral expression"
    assert info["bytes"] == (tmp_path / "avatar.glb").stat().st_size
    gltf, binary = read_glb(tmp_path / "avatar.glb")
    mesh = gltf["meshes"][0]
    assert mesh["extras"]["targetNames"] == ["jawOpen", "browInnerUp", "cheekPuff"]
    np.testing.assert_allclose(mesh["weights"], expression, atol=1e-12)
    base = glb_accessor(gltf, binary, mesh["primitives"][0]["attributes"]["POSITION"])
    np.testing.assert_allclose(base, model.shaped_vertices(shape, None), atol=2e-6)  # identity applied, no expression
    got, _ = _targets(gltf, binary)
    basis = np.moveaxis(model.expression_basis, 2, 0)
    np.testing.assert_array_equal(got, np.where(np.abs(basis) > 1e-6, basis, 0))  # write_glb's morph_epsilon
    # Normals of the glb are those of the neutral mesh (what the tangent-space normal map was made with).
    from pnrelight.avatar.face_model import vertex_normals

    normals = glb_accessor(gltf, binary, mesh["primitives"][0]["attributes"]["NORMAL"])
    np.testing.assert_allclose(normals, vertex_normals(base, model.triangles), atol=1e-5)
    # Names fall back to expr_NNN; a shorter fitted expression is padded with zero weights.
    unnamed = _expression_model(names=None)
    fit, tex, _ = _fit_and_textures(unnamed, [0.4])
    (tmp_path / "b").mkdir()
    _export(tmp_path / "b", unnamed, fit, tex)
    gltf, _ = read_glb(tmp_path / "b" / "avatar.glb")
    assert gltf["meshes"][0]["extras"]["targetNames"] == ["expr_000", "expr_001", "expr_002"] == expression_names(unnamed)
    assert gltf["meshes"][0]["weights"] == [0.4, 0.0, 0.0]


def test_pipeline_exports_the_fitted_mesh_without_expressions(tmp_path):
    from dataclasses import replace

    from pnrelight.avatar.pipeline import _export, expression_names, model_frame_mesh

    model = replace(_expression_model(), expression_basis=None, expression_names=None)
    fit, tex, _ = _fit_and_textures(model, [])
    info = _export(tmp_path, model, fit, tex)
    assert info["morph_targets"] == 0 and info["base_mesh"] == "fitted" and expression_names(model) == []
    gltf, binary = read_glb(tmp_path / "avatar.glb")
    mesh = gltf["meshes"][0]
    assert "targets" not in mesh["primitives"][0] and "weights" not in mesh and "extras" not in mesh
    base = glb_accessor(gltf, binary, mesh["primitives"][0]["attributes"]["POSITION"])
    np.testing.assert_allclose(base, model_frame_mesh(model, fit), atol=2e-6)


def _default_model_case():
    """The default face model's own mesh with its own jawOpen (ICT-FaceKit), or synthetic targets placed by its
    landmarks (the mediapipe model has no expressions); mouth height = mediapipe inner-lip landmarks 13 and 14."""
    from pnrelight.avatar import face_model

    # load_face_model(None) is the CLI's default model where it exists (the ICT-FaceKit head).
    model = face_model.load_face_model(None) if hasattr(face_model, "load_face_model") else face_model.load_default_face_model()
    mouth = float(np.nanmean(model.landmark_points()[[13, 14], 1]))
    names = list(model.expression_names or [])
    if model.num_expression and "jawOpen" in names:
        return model.vertices, model.triangles, model.uvs, np.moveaxis(model.expression_basis, 2, 0), names, mouth, True
    deltas, names = head_blendshapes(model.vertices, mouth)
    return model.vertices, model.triangles, model.uvs, deltas, names, mouth, False


@pytest.mark.blender
@pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy (pip install bpy==5.0.1, Python 3.11) is not installed")
def test_blender_imports_morph_targets_as_shape_keys(tmp_path):
    from scipy.spatial import cKDTree

    head = ellipsoid_head()
    cases = {"ellipsoid": (*head[:3], *head_blendshapes(head[0], head[3]), head[3], False), "default model": _default_model_case()}
    jobs = []
    for i, (key, (verts, tris, uvs, deltas, names, mouth, real)) in enumerate(cases.items()):
        weights = np.round(np.linspace(0.1, 0.9, len(names)), 3)
        jobs.append({"glb": _write(tmp_path / f"{i}.glb", verts, tris, uvs, morph_targets=deltas, morph_target_names=names,
                                   morph_weights=weights)})
    results = blender_shape_keys(jobs, tmp_path)
    for res, (key, (verts, tris, uvs, deltas, names, mouth, real)), job in zip(results, cases.items(), jobs):
        gltf, binary = read_glb(job["glb"])
        written, _ = _targets(gltf, binary)  # what the file holds (tiny components dropped)
        assert res["status"] == ["FINISHED"], key
        assert res["names"] == ["Basis", *names], key
        np.testing.assert_allclose(res["values"][1:], np.round(np.linspace(0.1, 0.9, len(names)), 3), atol=1e-6)
        # glTF (x, y, z) is Blender (x, -z, y); the importer may reorder vertices, so match them by position
        # (UV-seam copies share a position and, as the same point of the surface, their deltas).
        to_blender = lambda p: np.stack([p[..., 0], -p[..., 2], p[..., 1]], -1)  # noqa: E731
        dist, index = cKDTree(to_blender(verts.astype(np.float64))).query(res["rest"])
        assert len(res["rest"]) >= len(verts) and dist.max() < 1e-6, key
        assert len(set(index)) == len(np.unique(verts, axis=0)), key
        for k, name in enumerate(names):
            moved = res["moved"][k] - res["rest"]
            np.testing.assert_allclose(moved, to_blender(written[k][index]), atol=2e-6, err_msg=f"{key}: {name}")
        jaw = names.index("jawOpen")
        moving = np.linalg.norm(res["moved"][jaw] - res["rest"], axis=1) > 1e-6
        assert moving.any() and not moving.all(), key
        below = res["rest"][:, 2] < mouth  # Blender z = glTF y
        if real:  # a sculpted jawOpen also pulls the lip corners and cheeks a little: most of the motion is below the mouth
            amount = np.linalg.norm(res["moved"][jaw] - res["rest"], axis=1)
            assert amount[res["rest"][:, 2] < mouth + 0.005].sum() > 0.9 * amount.sum(), key
        else:  # exactly the vertices the target moves, all of them below the mouth
            np.testing.assert_array_equal(moving, np.linalg.norm(written[jaw][index], axis=1) > 0)
            assert below[moving].all(), key
