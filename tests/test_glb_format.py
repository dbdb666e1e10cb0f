"""The one .glb reader (``pnrelight.formats.glb``) against the project's writer: positions, sparse morph targets, bad files."""
from __future__ import annotations

import numpy as np
import pytest


def _quad_glb(path, morph=None, weights=None):
    from pnrelight.avatar.export import write_glb

    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0.5]], np.float32)
    tris = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    uvs = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    normals = np.tile(np.array([0, 0, 1], np.float32), (4, 1))
    tex = np.full((4, 4, 3), 0.5, np.float32)
    nrm = np.tile(np.array([0, 0, 1], np.float32), (4, 4, 1))
    write_glb(path, v, tris, uvs, normals, tex, nrm, tex, morph_targets=morph, morph_weights=weights)
    return v


def test_read_glb_gives_back_what_write_glb_wrote(tmp_path):
    from pnrelight.formats.glb import read_glb, read_glb_json, read_vec3_accessor

    morph = np.zeros((2, 4, 3), np.float32)
    morph[0, 3] = (0.0, 0.0, 0.25)  # one moving vertex: stored sparse
    morph[1] = 0.01 * np.arange(12, dtype=np.float32).reshape(4, 3)  # every vertex moves: stored dense
    v = _quad_glb(tmp_path / "q.glb", morph, np.array([0.5, 1.0], np.float32))
    gltf, binary = read_glb(tmp_path / "q.glb")
    assert read_glb_json(tmp_path / "q.glb") == gltf
    prim = gltf["meshes"][0]["primitives"][0]
    np.testing.assert_allclose(read_vec3_accessor(gltf, binary, prim["attributes"]["POSITION"]), v, atol=1e-7)
    targets = [read_vec3_accessor(gltf, binary, t["POSITION"]) for t in prim["targets"]]
    np.testing.assert_allclose(targets[0], morph[0], atol=1e-7)
    np.testing.assert_allclose(targets[1], morph[1], atol=1e-7)
    assert "sparse" in gltf["accessors"][prim["targets"][0]["POSITION"]]

    # The light stage's subject loader applies the morph weights through the same reader.
    from pnrelight.lightstage.render import _glb_morph_offset

    np.testing.assert_allclose(_glb_morph_offset(tmp_path / "q.glb", [4]), 0.5 * morph[0] + morph[1], atol=1e-6)


@pytest.mark.parametrize("damage, needle", [(lambda b: b"glTX" + b[4:], "magic"), (lambda b: b[:30], "truncated"),
                                            (lambda b: b[:12], "shorter")])
def test_bad_glb_files_raise_one_value_error(tmp_path, damage, needle):
    from pnrelight.formats.glb import read_glb

    _quad_glb(tmp_path / "q.glb")
    bad = tmp_path / "bad.glb"
    bad.write_bytes(damage((tmp_path / "q.glb").read_bytes()))
    with pytest.raises(ValueError, match=needle):
        read_glb(bad)
