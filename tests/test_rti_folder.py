"""Model folders: round trips through the 8-bit planes, OpenLIME layout, foreign folders."""
import json

import numpy as np
import pytest

from pnrelight.errors import InputError
from pnrelight.formats.rti_folder import load_model, save_model
from pnrelight.imageio import write_image
from pnrelight.lights import hemisphere_directions
from pnrelight.metrics import psnr
from pnrelight.rti import mlp
from pnrelight.rti.fit import fit_linear
from pnrelight.rti.model import RTIModel, relight
from pnrelight.rti.synthetic import relief_coin, render
from pnrelight.formats.mlic import MLIC

LIGHTS = np.array([[0, 0, 1.0], [0.7, 0.1, 0.707], [-0.3, -0.9, 0.316], [0.97, 0.0, 0.24]])
LIGHTS /= np.linalg.norm(LIGHTS, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def coin_mlic():
    normals, albedo, mask = relief_coin(64)
    dirs = hemisphere_directions(36, min_elevation_deg=15)
    return MLIC(images=render(normals, albedo, dirs), directions=dirs, names=[f"{i}.png" for i in range(36)], mask=mask, folder=None)


def smooth_field(rng, h, w, c, cell=8):
    """Spatially smooth random coefficients, like real latent/coefficient planes."""
    coarse = rng.normal(0, 1, (h // cell + 2, w // cell + 2, c))
    from scipy.ndimage import zoom
    return zoom(coarse, (cell, cell, 1), order=3)[:h, :w].astype(np.float32)


def random_neural(h=40, w=48, hidden=(50, 50), seed=0):
    rng = np.random.default_rng(seed)
    widths = [11, *hidden, 3]
    layers = [(rng.normal(0, 1 / np.sqrt(i), (o, i)).astype(np.float32), rng.normal(0, 0.1, o).astype(np.float32))
              for i, o in zip(widths[:-1], widths[1:])]
    layers[-1] = (layers[-1][0] * 0.3, layers[-1][1] + 0.5)
    return RTIModel(kind="neural", colorspace="rgb", coefficients=smooth_field(rng, h, w, 9), terms=9, layers=layers)


def _models(coin_mlic):
    yield "ptm", fit_linear(coin_mlic, "ptm")
    yield "lptm", fit_linear(coin_mlic, "ptm", colorspace="lrgb")
    for t in (4, 9, 16):
        yield f"hsh{t}", fit_linear(coin_mlic, "hsh", t)
    yield "neural-teacher", random_neural()
    yield "neural-student", random_neural(hidden=(20, 20), seed=3)


def test_round_trip_every_basis(coin_mlic, tmp_path):
    for name, model in _models(coin_mlic):
        folder = save_model(model, tmp_path / name)
        planes = load_model(folder, source="planes")
        exact = load_model(folder, source="exact")
        for light in LIGHTS:
            ref = relight(model, light)
            assert psnr(relight(planes, light), ref) >= 40.0, (name, light, psnr(relight(planes, light), ref))
            np.testing.assert_array_equal(relight(exact, light), ref)
        assert planes.kind == model.kind and planes.terms == model.terms


def test_neural_folder_has_openlime_layout(tmp_path):
    model = random_neural(hidden=(50, 50))
    folder = save_model(model, tmp_path / "teacher")
    info = json.loads((folder / "info.json").read_text())
    assert info["type"] == "neural" and info["planes"] == 9 and info["samples"] == 52
    assert [len(w) for w in info["weights"]] == [52 * 12, 52 * 52, 3 * 52]
    assert [len(b) for b in info["biases"]] == [52, 52, 3]
    assert np.asarray(info["min"]).shape == (3, 3) and np.asarray(info["max"]).shape == (3, 3)
    assert sorted(p.name for p in folder.glob("plane_*.jpg")) == ["plane_1.jpg", "plane_2.jpg", "plane_3.jpg"]
    # the padded network computes the same function as the unpadded one
    w = [np.asarray(x).reshape(len(b), -1) for x, b in zip(info["weights"], info["biases"])]
    layers = [(w[0][:, :11], np.asarray(info["biases"][0])), (w[1], np.asarray(info["biases"][1])), (w[2], np.asarray(info["biases"][2]))]
    latent = model.coefficients.reshape(-1, 9)[:50]
    np.testing.assert_allclose(mlp.decode(latent, [0.2, 0.3], layers), mlp.decode(latent, [0.2, 0.3], model.layers), atol=1e-5)
    student = save_model(random_neural(hidden=(20, 20)), tmp_path / "student")
    assert json.loads((student / "info.json").read_text())["samples"] == 20


def test_reads_relight_style_folder(tmp_path):
    """A folder as cnr-isti-vclab/relight writes it: planes quantised with scale/bias, no extras."""
    rng = np.random.default_rng(5)
    coeffs = 0.3 * smooth_field(rng, 16, 20, 27, cell=4).astype(np.float64)
    lo, hi = coeffs.min(axis=(0, 1)), coeffs.max(axis=(0, 1))
    scale = hi - lo
    bias = -lo / scale
    q = np.clip(np.rint(255 * (coeffs / scale + bias)), 0, 255).astype(np.uint8)
    for j in range(9):
        from PIL import Image
        Image.fromarray(q[..., 3 * j:3 * j + 3]).save(tmp_path / f"plane_{j}.jpg", quality=100, subsampling=0)
    info = {"width": 20, "height": 16, "format": "jpg", "type": "hsh", "colorspace": "rgb", "nplanes": 27,
            "materials": [{"scale": scale.tolist(), "bias": bias.tolist(), "range": scale.tolist()}]}
    (tmp_path / "info.json").write_text(json.dumps(info))
    model = load_model(tmp_path)
    assert model.kind == "hsh" and model.terms == 9
    err = np.abs(model.coefficients - coeffs) / scale  # in units of the plane range
    assert err.max() < 6 / 255 and err.mean() < 1 / 255


def test_reads_bgr_neural_export(tmp_path):
    """NeuralRTI exporters write OpenCV (BGR) planes and a BGR-output network with colorspace 'bgr'."""
    model = random_neural(h=24, w=32, hidden=(20, 20), seed=9)
    folder = save_model(model, tmp_path / "rgb")
    info = json.loads((folder / "info.json").read_text())
    bgr = tmp_path / "bgr"
    bgr.mkdir()
    for j in (1, 2, 3):
        from PIL import Image
        arr = np.asarray(Image.open(folder / f"plane_{j}.jpg"))
        Image.fromarray(arr[..., ::-1].copy()).save(bgr / f"plane_{j}.jpg", quality=100, subsampling=0)
    w3 = np.asarray(info["weights"][2]).reshape(3, -1)[::-1]
    info["weights"][2] = w3.ravel().tolist()
    info["biases"][2] = info["biases"][2][::-1]
    info["colorspace"] = "bgr"
    info.pop("pnrelight")
    (bgr / "info.json").write_text(json.dumps(info))
    loaded = load_model(bgr)
    for light in LIGHTS:
        assert psnr(relight(loaded, light), relight(model, light)) >= 40.0


@pytest.mark.parametrize("damage,pattern", [
    (lambda d: (d / "info.json").unlink(), "no info.json"),
    (lambda d: (d / "plane_2.jpg").unlink(), "plane_2.jpg is missing"),
    (lambda d: _edit(d, type="rbf3d"), "unsupported model type"),
    (lambda d: _edit(d, nplanes=60), "not supported"),
])
def test_bad_folders(coin_mlic, tmp_path, damage, pattern):
    folder = save_model(fit_linear(coin_mlic, "hsh", 9), tmp_path / "m")
    (folder / "coefficients.npy").unlink()
    damage(folder)
    with pytest.raises(InputError, match=pattern):
        load_model(folder)


def _edit(folder, **changes):
    info = json.loads((folder / "info.json").read_text())
    info.update(changes)
    (folder / "info.json").write_text(json.dumps(info))


def test_save_is_atomic(coin_mlic, tmp_path):
    model = fit_linear(coin_mlic, "ptm")
    def boom(path):
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        save_model(model, tmp_path / "out", extra_files={"preview.png": boom})
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []
