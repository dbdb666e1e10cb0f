import numpy as np
import pytest

from pnrelight.errors import InputError
from pnrelight.formats.mlic import MLIC
from pnrelight.lights import hemisphere_directions, theta_phi
from pnrelight.rti.bases import hsh_basis, ptm_basis
from pnrelight.rti.fit import fit_linear, split_luminance
from pnrelight.rti.model import relight


def _mlic_from(images, dirs):
    return MLIC(images=images.astype(np.float32), directions=dirs, names=[f"{i}.png" for i in range(len(dirs))], mask=None, folder=None)


@pytest.mark.parametrize("kind,terms", [("ptm", None), ("hsh", 4), ("hsh", 9), ("hsh", 16)])
def test_fit_recovers_known_coefficients(kind, terms):
    rng = np.random.default_rng(1)
    dirs = hemisphere_directions(40, min_elevation_deg=12)
    basis = ptm_basis(dirs) if kind == "ptm" else hsh_basis(dirs, terms)
    t = basis.shape[1]
    true = rng.normal(0, 0.2, size=(5, 7, t, 3))
    images = np.einsum("nt,hwtc->nhwc", basis, true)
    model = fit_linear(_mlic_from(images, dirs), kind, terms)
    got = model.coefficients.reshape(5, 7, t, 3)
    np.testing.assert_allclose(got, true, atol=2e-4)
    # and relighting reproduces an unseen light exactly
    light = np.array([0.3, -0.2, 0.93]); light /= np.linalg.norm(light)
    b = (ptm_basis(light[None]) if kind == "ptm" else hsh_basis(light[None], terms))[0]
    np.testing.assert_allclose(relight(model, light, clip=False), np.einsum("t,hwtc->hwc", b, true), atol=2e-4)


def test_hsh_is_orthonormal_on_the_hemisphere():
    # midpoint quadrature over the whole hemisphere; the clamp only alters the last 0.01 rad
    nt, nph = 400, 400
    theta = (np.arange(nt) + 0.5) / nt * (np.pi / 2)
    phi = (np.arange(nph) + 0.5) / nph * 2 * np.pi
    tt, pp = np.meshgrid(theta, phi, indexing="ij")
    dirs = np.stack([np.sin(tt) * np.cos(pp), np.sin(tt) * np.sin(pp), np.cos(tt)], -1).reshape(-1, 3)
    w = (np.sin(tt) * (np.pi / 2 / nt) * (2 * np.pi / nph)).ravel()
    h = hsh_basis(dirs, 16)
    gram = (h * w[:, None]).T @ h
    np.testing.assert_allclose(gram, np.eye(16), atol=0.01)


def test_hsh_matches_relight_reference_values():
    # values of relight's lightWeightsHsh for light (0.3, 0.4, ~0.866), computed by hand from its formulas
    l = np.array([[0.3, 0.4, np.sqrt(1 - 0.25)]])
    theta, phi = theta_phi(l)
    c = np.cos(theta[0]); p = phi[0]
    expected = [1 / np.sqrt(2 * np.pi), np.sqrt(6 / np.pi) * np.cos(p) * np.sqrt(c - c * c),
                np.sqrt(3 / (2 * np.pi)) * (2 * c - 1), np.sqrt(6 / np.pi) * np.sqrt(c - c * c) * np.sin(p),
                np.sqrt(30 / np.pi) * np.cos(2 * p) * (-c + c * c)]
    np.testing.assert_allclose(hsh_basis(l, 9)[0, :5], expected, rtol=1e-12)


def test_ptm_basis_order():
    np.testing.assert_allclose(ptm_basis(np.array([[0.2, -0.5, 0.84]]))[0], [1, 0.2, -0.5, 0.04, -0.1, 0.25])


def test_lrgb_fit_reproduces_grey_lambertian():
    dirs = hemisphere_directions(30, min_elevation_deg=20)
    basis = ptm_basis(dirs)
    lum = np.einsum("nt,hwt->nhw", basis, np.random.default_rng(0).uniform(0, 0.3, (4, 4, 6)))
    colour = np.array([0.9, 0.5, 0.2])
    images = lum[..., None] * colour
    model = fit_linear(_mlic_from(images, dirs), "ptm", colorspace="lrgb")
    assert model.coefficients.shape == (4, 4, 9)
    np.testing.assert_allclose(model.coefficients[..., :3], np.broadcast_to(colour / colour.max(), (4, 4, 3)), atol=1e-5)
    np.testing.assert_allclose(relight(model, dirs[3], clip=False), images[3], atol=1e-5)
    c, l = split_luminance(images.astype(np.float32))
    assert c.max() <= 1.0 + 1e-6


def test_too_few_lights_for_basis():
    dirs = hemisphere_directions(8)
    with pytest.raises(InputError, match="fewer than the 9 terms"):
        fit_linear(_mlic_from(np.zeros((8, 2, 2, 3)), dirs), "hsh", 9)


def test_dome_ptm_hsh_match_plain_least_squares(dome_dir):
    from pnrelight.formats.mlic import load_mlic
    from pnrelight.rti.evaluate import evaluate

    train, test = load_mlic(dome_dir / "train"), load_mlic(dome_dir / "test")
    ptm = evaluate(fit_linear(train, "ptm"), test)["mean"]["psnr"]
    hsh = evaluate(fit_linear(train, "hsh", 9), test)["mean"]["psnr"]
    assert abs(ptm - 19.96) < 0.3, ptm
    assert abs(hsh - 22.06) < 0.3, hsh
