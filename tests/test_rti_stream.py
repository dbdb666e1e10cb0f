"""Out-of-core RTI (issue #12 §3): tiled fit, chunked relight, streamed export and evaluation
give the numbers of the in-memory paths, on the bundled JPEG example (40 lights, 128 x 128)."""
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, run_cli
from pnrelight import metrics
from pnrelight.errors import InputError
from pnrelight.formats import rti_folder
from pnrelight.formats.mlic import load_mlic, open_mlic
from pnrelight.formats.rti_folder import load_model, quantize_min_max, save_model
from pnrelight.rti import mlp
from pnrelight.rti.bases import basis_matrix
from pnrelight.rti.evaluate import evaluate
from pnrelight.rti.fit import fit_linear, split_luminance
from pnrelight.rti.model import RTIModel, relight

EXAMPLE = REPO / "assets" / "examples" / "rti_synthetic"
LIGHT = np.array([0.35, -0.4, 0.85])


@pytest.fixture(scope="module")
def mlic():
    return load_mlic(EXAMPLE)


def in_memory_fit(mlic, kind, terms, colorspace):
    """The fit as it was before tiling: one tensordot over the whole float32 collection."""
    t = 6 if kind == "ptm" else terms
    solve = np.linalg.pinv(basis_matrix(kind, mlic.directions, t)).astype(np.float32)
    images = mlic.float_images()
    h, w = mlic.shape
    if colorspace == "rgb":
        return np.moveaxis(np.tensordot(solve, images, axes=(1, 0)), 0, 2).reshape(h, w, 3 * t)
    colour, lum = split_luminance(images)
    return np.concatenate([colour, np.moveaxis(np.tensordot(solve, lum, axes=(1, 0)), 0, 2)], axis=2)


def in_memory_relight(model, light):
    """relight as it was before chunking (float64 basis weights on whole arrays)."""
    h, w = model.shape
    c = model.coefficients.reshape(h * w, -1).astype(np.float64)
    wts = basis_matrix(model.kind, (light / np.linalg.norm(light))[None], model.terms)[0]
    if model.colorspace == "lrgb":
        out = c[:, :3] * (c[:, 3:] @ wts)[:, None]
    else:
        out = c.reshape(-1, model.terms, 3).transpose(0, 2, 1) @ wts
    return np.clip(out.reshape(h, w, 3), 0, 1)


def test_loader_keeps_uint8_and_decodes_like_pillow(mlic):
    assert mlic.images.dtype == np.uint8 and mlic.images.shape == (40, 128, 128, 3)
    direct = np.asarray(Image.open(EXAMPLE / mlic.names[5]).convert("RGB"))
    np.testing.assert_array_equal(mlic.images[5], direct)


@pytest.mark.parametrize("kind,terms", [("ptm", None), ("hsh", 9), ("hsh", 16)])
@pytest.mark.parametrize("colorspace", ["rgb", "lrgb"])
def test_tiled_fit_equals_in_memory_fit(mlic, kind, terms, colorspace):
    row_bytes = mlic.count * mlic.shape[1] * 3 * 4
    reference = in_memory_fit(mlic, kind, terms, colorspace)
    for rows in (1, 7):  # single rows, and tiles that do not divide the height (128 = 18 * 7 + 2)
        model = fit_linear(mlic, kind, terms, colorspace, tile_bytes=rows * row_bytes)
        assert model.coefficients.dtype == np.float32 and model.coefficients.shape == reference.shape
        np.testing.assert_allclose(model.coefficients, reference, rtol=0, atol=2e-6)


def test_float16_coefficients_relight_and_round_trip(mlic, tmp_path):
    exact = fit_linear(mlic, "hsh", 9)
    half = fit_linear(mlic, "hsh", 9, dtype=np.float16)
    assert half.coefficients.dtype == np.float16
    # float16 keeps 11 significant bits: far below an 8-bit level once relit
    assert np.abs(relight(half, LIGHT) - relight(exact, LIGHT)).max() < 1.0 / 255
    save_model(half, tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert back.coefficients.dtype == np.float16
    np.testing.assert_array_equal(back.coefficients, half.coefficients)
    planes = load_model(tmp_path / "m", source="planes")
    assert np.abs(relight(planes, LIGHT) - relight(exact, LIGHT)).mean() < 2.0 / 255


@pytest.mark.parametrize("kind,terms,colorspace", [("ptm", None, "rgb"), ("hsh", 9, "rgb"), ("hsh", 9, "lrgb")])
def test_chunked_relight_equals_whole_image(mlic, kind, terms, colorspace):
    model = fit_linear(mlic, kind, terms, colorspace)
    reference = in_memory_relight(model, LIGHT)
    for chunk in (1000, 1 << 16):  # 1000 does not divide 128 x 128
        out = relight(model, LIGHT, chunk_pixels=chunk)
        assert out.dtype == np.float32 and out.shape == (128, 128, 3)
        np.testing.assert_allclose(out, reference, atol=2e-6)


def test_neural_relight_with_float16_latents_matches_float32():
    rng = np.random.default_rng(3)
    layers = [(rng.normal(0, 0.5, (20, 11)).astype(np.float32), rng.normal(0, 0.1, 20).astype(np.float32)),
              (rng.normal(0, 0.5, (20, 20)).astype(np.float32), rng.normal(0, 0.1, 20).astype(np.float32)),
              (rng.normal(0, 0.5, (3, 20)).astype(np.float32), np.full(3, 0.5, np.float32))]
    latent = rng.normal(0, 1, (37, 53, 9)).astype(np.float16)
    as16 = RTIModel(kind="neural", colorspace="rgb", coefficients=latent, terms=9, layers=layers)
    as32 = RTIModel(kind="neural", colorspace="rgb", coefficients=latent.astype(np.float32), terms=9, layers=layers)
    direct = mlp.decode(latent.reshape(-1, 9).astype(np.float32), LIGHT[:2] / np.linalg.norm(LIGHT), layers, clip=True)
    np.testing.assert_allclose(relight(as16, LIGHT, chunk_pixels=500), relight(as32, LIGHT), atol=1e-6)
    np.testing.assert_allclose(relight(as32, LIGHT).reshape(-1, 3), direct, atol=1e-6)


def test_streamed_export_equals_whole_array_quantisation(mlic, tmp_path, monkeypatch):
    model = fit_linear(mlic, "hsh", 16, "lrgb")  # 19 planes: the 7th JPEG holds one plane and two empty ones
    monkeypatch.setattr(rti_folder, "ROW_CHUNK_VALUES", 128 * 19 * 5)  # 5-row chunks
    save_model(model, tmp_path / "m")
    c = model.coefficients.astype(np.float64)
    lo, hi = c.reshape(-1, 19).min(0), c.reshape(-1, 19).max(0)
    scale = np.maximum(hi - lo, 1e-8)
    bias = -lo / scale
    scale[:3], bias[:3] = 1.0, 0.0
    info = rti_folder.read_info(tmp_path / "m")[1]
    np.testing.assert_allclose(info["materials"][0]["scale"], scale)
    np.testing.assert_allclose(info["materials"][0]["bias"], bias)
    np.testing.assert_array_equal(np.load(tmp_path / "m" / "coefficients.npy"), model.coefficients)
    # the planes decode to the whole-array quantisation within JPEG error (q 98)
    codes = np.clip(np.rint((c / scale + bias) * 255), 0, 255)
    planes = np.concatenate([np.asarray(Image.open(tmp_path / "m" / f"plane_{j}.jpg")) for j in range(7)], axis=2)
    assert np.abs(planes[..., :19].astype(float) - codes).mean() < 1.0
    assert planes[..., 19:].mean() < 1.5  # the padding planes are zero (JPEG ringing aside), not a stale plane
    # and the codes of quantize_min_max are exactly the whole-array ones
    got, qlo, span = quantize_min_max(model.coefficients)
    np.testing.assert_array_equal(got, np.clip(np.rint(((c - lo) / np.maximum(hi - lo, 1e-8)).astype(np.float32) * 255), 0, 255))
    np.testing.assert_allclose(qlo, lo)


def test_streamed_eval_equals_in_memory_eval(mlic, tmp_path, monkeypatch):
    model = fit_linear(mlic, "hsh", 9)
    test_dir = EXAMPLE / "test"
    full = evaluate(model, load_mlic(test_dir))
    lazy = open_mlic(test_dir)
    assert lazy.count == 10 and lazy.shape == (128, 128) and lazy.mask is not None
    assert evaluate(model, lazy) == full
    # banded metrics (8-row bands here) equal whole-image skimage SSIM and PSNR
    monkeypatch.setattr(metrics, "BAND_PIXELS", 128 * 8)
    banded = evaluate(model, lazy)
    for a, b in zip(banded["lights"], full["lights"]):
        assert a["psnr"] == pytest.approx(b["psnr"], abs=1e-9) and a["ssim"] == pytest.approx(b["ssim"], abs=1e-9)
    pred, ref, mask = relight(model, lazy.directions[0]), lazy.image(0), lazy.mask
    from skimage.metrics import structural_similarity

    _, smap = structural_similarity(pred.astype(np.float64), ref.astype(np.float64), channel_axis=2, data_range=1.0,
                                    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, full=True)
    assert metrics.ssim(pred, ref, mask) == pytest.approx(smap.mean(axis=2)[mask].mean(), abs=1e-12)


def test_lazy_mlic_reports_bad_folders(tmp_path):
    folder = tmp_path / "t"
    shutil.copytree(EXAMPLE / "test", folder)
    (folder / "light03.jpg").unlink()
    with pytest.raises(InputError, match="light03.jpg .*missing"):
        open_mlic(folder)
    Image.new("RGB", (64, 64)).save(folder / "light03.jpg")
    lazy = open_mlic(folder)
    with pytest.raises(InputError, match="light03.jpg is 64x64"):
        lazy.image(3)


def test_split_returns_views_equal_to_subsets(mlic):
    copy = load_mlic(EXAMPLE)
    held = np.arange(copy.count) % 4 == 3
    want_train, want_held = copy.subset(~held), copy.subset(held)
    train, heldout = copy.split(held)
    assert np.shares_memory(train.images, copy.images) and np.shares_memory(heldout.images, copy.images)
    for got, want in ((train, want_train), (heldout, want_held)):
        assert got.names == want.names
        np.testing.assert_array_equal(got.directions, want.directions)
        np.testing.assert_array_equal(got.images, want.images)


def test_cli_fit_float16_then_eval(tmp_path):
    out = tmp_path / "hsh16"
    res = run_cli("rti", "fit", EXAMPLE, "--basis", "hsh", "--precision", "float16", "--holdout", "5", "-o", out)
    assert res.returncode == 0, res.stderr
    assert np.load(out / "coefficients.npy").dtype == np.float16
    res = run_cli("rti", "eval", out, EXAMPLE / "test", "--json", tmp_path / "e.json")
    assert res.returncode == 0, res.stderr
    import json

    report = json.loads((tmp_path / "e.json").read_text())
    reference = evaluate(fit_linear(load_mlic(EXAMPLE).split(np.arange(40) % 5 == 4)[0], "hsh", 9), open_mlic(EXAMPLE / "test"))
    assert report["mean"]["psnr"] == pytest.approx(reference["mean"]["psnr"], abs=0.02)
