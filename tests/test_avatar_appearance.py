"""Appearance stage of the avatar: colour, environment maps, SH lighting, albedo, SfS, specular, display tone mapping.

Everything runs on small synthetic spheres with known ground truth.
"""
from __future__ import annotations

import numpy as np
import pytest

from pnrelight import envmap
from pnrelight.avatar import intrinsics, relight
from pnrelight.avatar.color import linear_to_srgb, srgb_to_linear
from pnrelight.errors import InputError

# A light mostly from the upper left front, slightly warm: realistic band-1 dominated shading.
TRUE_SH = np.array(
    [
        [0.90, 0.80, 0.70],
        [0.30, 0.30, 0.25],
        [0.40, 0.35, 0.30],
        [-0.25, -0.20, -0.20],
        [0.05, 0.04, 0.03],
        [0.02, 0.02, 0.01],
        [-0.08, -0.07, -0.06],
        [0.03, 0.02, 0.02],
        [0.06, 0.05, 0.05],
    ]
)


def sphere(size: int = 128, radius_frac: float = 0.45):
    """Camera-facing unit-sphere normals (size, size, 3) and its mask; pixel v runs down, y up."""
    v, u = np.mgrid[0:size, 0:size] + 0.5
    radius = radius_frac * size
    x = (u - size / 2) / radius
    y = -(v - size / 2) / radius
    r2 = x * x + y * y
    mask = r2 < 1.0
    z = np.sqrt(np.clip(1.0 - r2, 0.0, None))
    normals = np.stack([x, y, z], axis=-1).astype(np.float32)
    normals[~mask] = 0.0
    return normals, mask


def angular_error_deg(a, b, mask):
    dot = np.clip(np.sum(a * b, axis=-1), -1.0, 1.0)
    return float(np.degrees(np.arccos(dot))[mask].mean())


def psnr(a, b, mask):
    return float(10 * np.log10(1.0 / np.mean((a[mask] - b[mask]) ** 2)))


# ----------------------------------------------------------------------------- colour


def test_srgb_round_trip_and_known_values():
    x = np.linspace(0, 1, 257, dtype=np.float32)
    assert np.abs(linear_to_srgb(srgb_to_linear(x)) - x).max() < 1e-5
    assert srgb_to_linear(np.float32(0.5)) == pytest.approx(0.21404, abs=1e-4)
    assert linear_to_srgb(np.float32(0.18)) == pytest.approx(0.46135, abs=1e-4)


# ----------------------------------------------------------------------------- SH basis


def test_sh_basis_is_orthonormal_on_the_sphere():
    h = 256
    dirs = envmap.latlong_directions(h).reshape(-1, 3)
    omega = envmap.solid_angles(h).reshape(-1)
    basis = envmap.sh_basis(dirs)
    gram = basis.T @ (basis * omega[:, None])
    assert np.abs(gram - np.eye(9)).max() < 2e-3
    assert np.allclose(intrinsics.sh_basis(dirs[:5]), basis[:5])  # one basis, re-exported


def test_envmap_to_sh_of_constant_map_and_cosine_convolution():
    env = np.full((16, 32, 3), 2.0, np.float32)
    sh = envmap.envmap_to_sh(env)
    assert sh[0] == pytest.approx(np.full(3, 2.0 * np.sqrt(4 * np.pi)), rel=1e-4)
    assert np.abs(sh[1:]).max() < 1e-3
    # A constant radiance L gives irradiance / pi = L everywhere.
    shading = envmap.render_sh(envmap.latlong_directions(8), envmap.sh_radiance_to_shading(sh))
    assert np.allclose(shading, 2.0, rtol=1e-3)


def test_prefiltered_diffuse_matches_sh_shading_for_a_smooth_environment():
    # Radiance that is exactly order 2: the cosine lobe convolution is exact in SH.
    h = 64
    dirs = envmap.latlong_directions(h)
    env_sh = TRUE_SH.copy()
    env_sh[0] += 1.0
    env = envmap.render_sh(dirs, env_sh)
    assert env.min() > 0  # physically valid radiance
    diffuse = envmap.prefilter_phong(env, 1, out_height=16, source_height=64)
    expected = envmap.render_sh(envmap.latlong_directions(16), envmap.sh_radiance_to_shading(envmap.envmap_to_sh(env)))
    assert np.abs(diffuse - expected).max() / expected.mean() < 0.01


# ----------------------------------------------------------------------------- environment maps


def test_latlong_convention_round_trip_and_landmarks():
    dirs = envmap.latlong_directions(16)
    u, v = envmap.directions_to_uv(dirs)
    assert np.allclose(u * 32 - 0.5, np.arange(32)[None, :], atol=1e-9)
    assert np.allclose(v * 16 - 0.5, np.arange(16)[:, None], atol=1e-9)
    # Blender's convention (docs/lightstage.md): centre +x, u = 0.25 -z (Blender +Y), u = 0.75 +z (front), edges -x.
    named = {(0.5, 0.5): (1, 0, 0), (0.25, 0.5): (0, 0, -1), (0.75, 0.5): (0, 0, 1), (0.0, 0.5): (-1, 0, 0)}
    for (uu, vv), d in named.items():
        got_u, got_v = envmap.directions_to_uv(np.array(d, float))
        assert (got_u % 1.0, got_v) == pytest.approx((uu, vv))
    assert envmap.directions_to_uv(np.array([0.0, 1.0, 0.0]))[1] == pytest.approx(0.0)
    assert envmap.solid_angles(16).sum() == pytest.approx(4 * np.pi)


def test_sample_latlong_bilinear_and_downsample_conserve():
    env = np.random.default_rng(0).random((32, 64, 3)).astype(np.float32)
    centres = envmap.latlong_directions(32)
    assert np.allclose(envmap.sample_latlong(env, centres), env, atol=1e-5)
    small = envmap.downsample_latlong(env, 8)
    total = lambda e: np.sum(e * envmap.solid_angles(e.shape[0])[..., None], axis=(0, 1))  # noqa: E731
    assert np.allclose(total(small), total(env), rtol=1e-5)


@pytest.mark.parametrize("exponent", envmap.PHONG_EXPONENTS)
def test_phong_prefilter_keeps_a_constant_environment(exponent):
    env = np.full((32, 64, 3), 0.7, np.float32)
    out = envmap.prefilter_phong(env, exponent, out_height=16)
    assert out.shape == (16, 32, 3)
    assert np.allclose(out, 0.7, atol=1e-5)


def test_phong_lobes_are_energy_normalised():
    h = 128
    src = envmap.latlong_directions(h).reshape(-1, 3)
    omega = envmap.solid_angles(h).reshape(-1)
    out = envmap.latlong_directions(6).reshape(-1, 3)
    for exponent in envmap.PHONG_EXPONENTS:
        sums = envmap.phong_lobe_weights(out, src, omega, exponent).sum(axis=1)
        assert np.allclose(sums, 1.0, atol=2e-3), exponent


def test_phong_prefilter_of_a_bright_texel_peaks_there_and_narrows_with_exponent():
    env = np.zeros((32, 64, 3), np.float32)
    env[10, 40] = 100.0
    light = envmap.latlong_directions(32)[10, 40]
    widths = []
    for exponent in envmap.PHONG_EXPONENTS:
        out = envmap.prefilter_phong(env, exponent, out_height=32, source_height=32)[..., 0]
        peak = np.unravel_index(np.argmax(out), out.shape)
        peak_dir = envmap.latlong_directions(32)[peak]
        assert np.degrees(np.arccos(np.clip(peak_dir @ light, -1, 1))) < 6.0, exponent
        # lobe width: solid angle where the response exceeds half its peak
        widths.append(float(envmap.solid_angles(32)[out > 0.5 * out.max()].sum()))
    assert all(a > b for a, b in zip(widths, widths[1:])), widths


def test_shipped_envmaps_load_finite_and_positive():
    paths = envmap.default_envmaps()
    assert len(paths) == 8
    assert (envmap.ENVMAP_DIR / "LICENSE.md").is_file()
    assert sum(p.stat().st_size for p in paths) < 2_000_000
    for path in paths:
        env = envmap.load_envmap(path)
        assert env.shape[1] == 2 * env.shape[0] and env.shape[2] == 3
        assert np.isfinite(env).all() and env.min() >= 0 and env.mean() > 0


def test_load_envmap_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="not found"):
        envmap.load_envmap(tmp_path / "missing.exr")
    junk = tmp_path / "junk.exr"
    junk.write_bytes(b"not an exr at all")
    with pytest.raises(InputError, match="cannot read"):
        envmap.load_envmap(junk)
    png = tmp_path / "sky.png"
    png.write_bytes(b"\x89PNG")
    with pytest.raises(InputError, match=r"\.exr or \.hdr"):
        envmap.load_envmap(png)
    from pnrelight.imageio import write_exr

    square = tmp_path / "square.exr"
    write_exr(square, np.ones((16, 16, 3), np.float32))
    with pytest.raises(InputError, match="2:1"):
        envmap.load_envmap(square)


# ----------------------------------------------------------------------------- Eq. 1: SH lighting


def _lit_sphere(size=128, noise=0.003, seed=1):
    normals, mask = sphere(size)
    albedo = np.array([0.6, 0.45, 0.35], np.float32)
    img = albedo * envmap.render_sh(normals, TRUE_SH)
    img = img + np.random.default_rng(seed).normal(0, noise, img.shape)
    img = np.clip(img, 0, None).astype(np.float32)
    img[~mask] = 0
    return img, normals, mask, albedo


def test_estimate_sh_lighting_recovers_known_coefficients():
    img, normals, mask, albedo = _lit_sphere()
    est = intrinsics.estimate_sh_lighting(img, normals, mask, iterations=300, albedo=albedo, seed=0)
    assert est.shape == (9, 3)
    assert np.linalg.norm(est - TRUE_SH) / np.linalg.norm(TRUE_SH) < 0.05
    again = intrinsics.estimate_sh_lighting(img, normals, mask, iterations=300, albedo=albedo, seed=0)
    assert np.array_equal(est, again)  # deterministic


def test_estimate_sh_lighting_ignores_highlights_and_cast_shadows():
    img, normals, mask, albedo = _lit_sphere()
    v, u = np.mgrid[0:128, 0:128]
    img = img + (0.6 * np.exp(-((u - 75) ** 2 + (v - 45) ** 2) / (2 * 3.0**2)))[..., None].astype(np.float32)
    img[(u > 30) & (u < 50) & (v > 75) & (v < 100)] *= 0.2
    robust = intrinsics.estimate_sh_lighting(img, normals, mask, albedo=albedo)
    robust_err = np.linalg.norm(robust - TRUE_SH) / np.linalg.norm(TRUE_SH)
    assert robust_err < 0.05
    # plain least squares on the same pixels is pulled off by the outliers
    basis = envmap.sh_basis(normals[mask])
    plain = np.linalg.lstsq(basis, img[mask] / albedo, rcond=None)[0]
    plain_err = np.linalg.norm(plain - TRUE_SH) / np.linalg.norm(TRUE_SH)
    assert plain_err > 2 * robust_err, (plain_err, robust_err)


def test_estimate_sh_lighting_on_an_overexposed_face_is_bad_input():
    img, normals, mask, _ = _lit_sphere(32)
    with pytest.raises(InputError, match="too few"):
        intrinsics.estimate_sh_lighting(np.ones_like(img), normals, mask, iterations=5)


def test_estimate_sh_lighting_without_albedo_fixes_the_gauge():
    img, normals, mask, albedo = _lit_sphere()
    sh = intrinsics.estimate_sh_lighting(img, normals, mask)
    shading = envmap.render_sh(normals[mask], sh)
    assert np.allclose(shading.mean(axis=0), shading.mean(), rtol=1e-3)  # achromatic on average
    assert np.percentile(intrinsics.luminance(shading), 90) == pytest.approx(1.0, rel=0.02)
    # the product albedo * shading still reproduces the image: the recovered albedo is constant
    est_albedo = img[mask] / np.maximum(shading, 1e-3)
    bright = intrinsics.luminance(shading) > 0.3
    spread = est_albedo[bright].std(axis=0) / est_albedo[bright].mean(axis=0)
    assert spread.max() < 0.05
    # with an achromatic light the albedo carries skin tone x the light's mean colour
    light_colour = envmap.render_sh(normals[mask], TRUE_SH).mean(axis=0)
    ratio = est_albedo[bright].mean(axis=0) / (albedo * light_colour)
    assert np.allclose(ratio / ratio.mean(), 1.0, atol=0.02)


# ----------------------------------------------------------------------------- Eq. 3: albedo, specular


def _textured_sphere(size=128):
    normals, mask = sphere(size)
    v, u = np.mgrid[0:size, 0:size] + 0.5
    s = size / 256.0
    albedo = np.stack(
        [0.55 + 0.1 * np.sin(u / (23 * s)) * np.cos(v / (31 * s)), 0.42 + 0.08 * np.cos(u / (19 * s) + 1), 0.33 + 0.06 * np.sin(v / (17 * s))],
        axis=-1,
    )
    spots = np.zeros((size, size))
    rng = np.random.default_rng(5)
    for _ in range(12):
        cu, cv = rng.uniform(0.15 * size, 0.85 * size, 2)
        spots += np.exp(-((u - cu) ** 2 + (v - cv) ** 2) / (2 * (4 * s) ** 2))
    albedo = (albedo * (1 - 0.3 * np.clip(spots, 0, 1))[..., None]).astype(np.float32)
    # strong light from the left: the right side falls into attached shadow (shading <= 0)
    sh = np.zeros((9, 3))
    sh[0], sh[1], sh[2], sh[3], sh[6] = [1.0, 0.95, 0.9], 0.3, 0.35, -0.75, -0.05
    shading = envmap.render_sh(normals, sh)
    shading[~mask] = 0
    return normals, mask, albedo, shading, (u, v)


def test_albedo_by_division_handles_shadows_and_highlights():
    size = 128
    normals, mask, albedo, shading, (u, v) = _textured_sphere(size)
    assert shading[mask].min() < 0.02  # there is an attached shadow
    img = albedo * np.clip(shading, 0, None) + np.random.default_rng(0).normal(0, 0.004, albedo.shape)
    highlight = 0.5 * np.exp(-((u - 50) ** 2 + (v - 45) ** 2) / (2 * 2.5**2))
    img = np.clip(img + highlight[..., None], 0, None).astype(np.float32)
    img[~mask] = 0
    naive = np.clip(img / np.maximum(shading, 1e-4), 0, 1)
    robust = intrinsics.albedo_by_division(img, shading, mask)
    assert robust.dtype == np.float32 and robust.min() >= 0 and robust.max() <= 1
    assert psnr(robust, albedo, mask) > 30.0
    assert psnr(naive, albedo, mask) < psnr(robust, albedo, mask) - 8.0
    spot = highlight > 0.25
    # the highlight is (mostly) gone from the albedo
    assert np.abs(robust - albedo)[spot].mean() < 0.2 * np.abs(naive - albedo)[spot].mean()
    spec = intrinsics.specular_map(img, robust, shading, mask)
    assert spec.shape == mask.shape and spec.min() >= 0 and spec.max() <= 1
    assert spec[spot].mean() > 0.4 and np.median(spec[mask & (highlight < 1e-3)]) < 0.02


def test_specular_map_recovers_the_specular_reflectance_of_a_glossy_patch():
    size = 128
    normals, mask, albedo, shading, (u, v) = _textured_sphere(size)
    sh = np.zeros((9, 3))
    sh[0], sh[1], sh[2], sh[3] = 0.9, 0.2, 0.5, -0.2  # mostly frontal light
    shading = envmap.render_sh(normals, sh)
    mirror = 2.0 * normals[..., 2:3] * normals - np.array([0.0, 0.0, 1.0], np.float32)  # reflect the view (+z)
    incoming = np.clip(envmap.render_sh(mirror, envmap.sh_shading_to_radiance(sh)), 0, None)
    patch = mask & ((u - 70) ** 2 + (v - 55) ** 2 < 8**2)
    ks = np.where(patch, 0.3, 0.0).astype(np.float32)
    img = (albedo * shading + ks[..., None] * incoming).astype(np.float32)
    img[~mask] = 0
    est_albedo = intrinsics.albedo_by_division(img, shading, mask)
    est = intrinsics.specular_map(img, est_albedo, shading, mask, normals=normals, sh=sh)
    core = mask & ((u - 70) ** 2 + (v - 55) ** 2 < 5**2)
    assert np.median(est[core]) == pytest.approx(0.3, abs=0.06)
    assert np.median(est[mask & ~patch]) < 0.01
    assert np.abs(est_albedo - albedo)[core].mean() < 0.05


def test_albedo_by_division_is_exact_on_clean_well_lit_data():
    normals, mask, albedo, shading, _ = _textured_sphere(96)
    lit = mask & (shading.mean(axis=-1) > 0.3)
    img = (albedo * np.clip(shading, 0, None)).astype(np.float32)
    robust = intrinsics.albedo_by_division(img, shading, mask)
    assert np.abs(robust - albedo)[lit].max() < 0.02


# ----------------------------------------------------------------------------- shape from shading


def _bumpy_sphere(size=128):
    normals, mask = sphere(size)
    v, u = np.mgrid[0:size, 0:size] + 0.5
    radius = 0.45 * size
    depth = np.sqrt(np.clip(radius**2 - (u - size / 2) ** 2 - (v - size / 2) ** 2, 1e-6, None))
    bump = np.zeros((size, size))
    rng = np.random.default_rng(3)
    for _ in range(25):
        cu, cv = rng.uniform(0.2 * size, 0.8 * size, 2)
        s = rng.uniform(0.025, 0.045) * size
        bump += rng.uniform(-1, 1) * s * 0.6 * np.exp(-((u - cu) ** 2 + (v - cv) ** 2) / (2 * s * s))
    zx = -(u - size / 2) / depth + np.gradient(bump, axis=1)
    zy = (v - size / 2) / depth - np.gradient(bump, axis=0)
    truth = np.stack([-zx, -zy, np.ones_like(zx)], axis=-1)
    truth /= np.linalg.norm(truth, axis=-1, keepdims=True)
    mask = mask & (normals[..., 2] > 0.2)
    truth[~mask] = 0
    return truth.astype(np.float32), normals, mask


def test_sfs_refinement_recovers_detail_normals():
    truth, smooth, mask = _bumpy_sphere()
    sh = np.zeros((9, 3))
    sh[0], sh[1], sh[2], sh[3], sh[6] = 0.9, 0.35, 0.45, -0.4, -0.05
    albedo = np.array([0.6, 0.45, 0.35], np.float32)
    img = albedo * envmap.render_sh(truth, sh) + np.random.default_rng(0).normal(0, 0.003, truth.shape)
    img = np.clip(img, 0, None).astype(np.float32)
    before = angular_error_deg(smooth, truth, mask)
    refined = intrinsics.refine_normals_sfs(img, albedo, sh, smooth, mask)
    after = angular_error_deg(refined, truth, mask)
    assert np.allclose(np.linalg.norm(refined[mask], axis=-1), 1.0, atol=1e-4)
    assert np.array_equal(refined[~mask], smooth[~mask])
    assert after < 0.8 * before, (before, after)
    # a perturbed start (noise on the normals) is also pulled towards the truth
    noisy = smooth + np.random.default_rng(1).normal(0, 0.05, smooth.shape).astype(np.float32)
    noisy /= np.maximum(np.linalg.norm(noisy, axis=-1, keepdims=True), 1e-6)
    noisy[~mask] = 0
    refined_noisy = intrinsics.refine_normals_sfs(img, albedo, sh, noisy, mask, smoothness=0.2)
    assert angular_error_deg(refined_noisy, truth, mask) < angular_error_deg(noisy, truth, mask)


def test_decompose_chain_on_a_lit_sphere():
    img, normals, mask, albedo = _lit_sphere(96)
    result = intrinsics.decompose(img, normals, mask, sh_iterations=200, sfs_iterations=40)
    assert result.albedo.shape == img.shape and result.specular.shape == mask.shape
    # re-rendering reproduces the input
    rerender = result.albedo * result.shading
    assert psnr(np.clip(rerender, 0, 1), img, mask) > 35.0
    assert angular_error_deg(result.normals, normals, mask) < 2.0


# ----------------------------------------------------------------------------- face-specific robustness and display


def _shading_pattern_error(sh, normals, mask):
    """Relative error of the luminance shading pattern (scale-free: the albedo/light gauge is arbitrary)."""
    est = intrinsics.luminance(envmap.render_sh(normals[mask], sh))
    true = intrinsics.luminance(envmap.render_sh(normals[mask], TRUE_SH))
    est, true = est / est.mean(), true / true.mean()
    return float(np.sqrt(np.mean((est - true) ** 2)))


def test_sh_lighting_without_albedo_ignores_regions_of_another_colour(monkeypatch):
    # skin-coloured sphere whose top 30 % is brown "hair": too many pixels for the residual reweighting alone
    img, normals, mask, albedo = _lit_sphere()
    v, u = np.mgrid[0:128, 0:128]
    img[v < 45] *= np.array([0.3, 0.2, 0.1], np.float32) / albedo
    robust = _shading_pattern_error(intrinsics.estimate_sh_lighting(img, normals, mask), normals, mask)
    monkeypatch.setattr(intrinsics, "CHROMA_SIGMAS", 0.0)
    plain = _shading_pattern_error(intrinsics.estimate_sh_lighting(img, normals, mask), normals, mask)
    assert robust < 0.01 and plain > 10 * robust, (robust, plain)


def test_decompose_keeps_protected_features_out_of_the_light_fit_and_dark():
    img, normals, mask, albedo = _lit_sphere()
    v, u = np.mgrid[0:128, 0:128]
    eye = ((u - 64) ** 2 + (v - 45) ** 2) < 18**2
    img[eye] *= 0.5  # a darker feature with the skin's chromaticity
    result = intrinsics.decompose(img, normals, mask, protect=eye, sfs_iterations=0)
    assert _shading_pattern_error(result.sh, normals, mask) < 0.01
    ratio = result.albedo[eye].mean(0) / result.albedo[mask & ~eye].mean(0)
    assert np.allclose(ratio, 0.5, atol=0.03)  # kept as albedo, not blended towards the skin around it


def test_specular_map_is_consistent_with_its_phong_yardstick():
    # a glossy patch under the SH light: albedo * shading + k_s * the weighted Phong lobes of the SH radiance
    # (intrinsics.SPECULAR_LOBE_WEIGHTS, PN-Relighting's glossy priors) gives the image back
    normals, mask = sphere(96)
    albedo = np.array([0.55, 0.4, 0.3], np.float32)
    grey_sh = TRUE_SH[:, 1:2].repeat(3, 1) * 0.6  # white light: the highlight is white
    shading = envmap.render_sh(normals, grey_sh).astype(np.float32)
    ks_true = np.where(mask, 0.15, 0.0).astype(np.float32)
    radiance = np.clip(envmap.render_sh(envmap.latlong_directions(16), envmap.sh_shading_to_radiance(grey_sh)), 0, None)
    mirror = 2.0 * normals[..., 2:3] * normals - np.array([0.0, 0.0, 1.0], np.float32)
    glossy = sum(w * envmap.sample_latlong(envmap.prefilter_phong(radiance, k, 32, source_height=16), mirror)
                 for k, w in intrinsics.SPECULAR_LOBE_WEIGHTS.items())
    img = albedo * shading + ks_true[..., None] * glossy
    front = mask & (normals[..., 2] > 0.5)
    ks = intrinsics.specular_map(img, albedo, shading, mask, normals=normals, sh=grey_sh)
    assert np.abs(ks[front] - 0.15).mean() < 0.02, np.percentile(ks[front], [5, 50, 95])


def test_tone_map_highlights_keeps_mid_tones_and_hue():
    x = np.array([[0.2, 0.5, 0.79], [0.4, 0.9, 1.2], [1.0, 2.0, 1.6], [2.4, 2.0, 0.4]], np.float32)
    y = relight.tone_map_highlights(x)
    assert np.array_equal(y[0], x[0])  # below the knee: unchanged
    assert y.max() < 1.0 and np.all(np.diff(y.max(-1)[1:]) > 0)  # compressed below 1, still ordered
    assert relight.tone_map_highlights(np.full((1, 3), 1e4, np.float32)).max() <= 1.0
    for k in (1, 2, 3):
        assert np.allclose(y[k] / y[k].max(), x[k] / x[k].max(), atol=1e-6)  # hue (channel ratios) kept
    ramp = relight.tone_map_highlights(np.linspace(0, 2, 201, dtype=np.float32)[:, None].repeat(3, 1))[:, 0]
    assert np.all(np.diff(ramp) > 0) and np.abs(np.diff(ramp, 2)).max() < 2e-3  # monotonic and smooth at the knee


def test_facial_feature_mask_covers_eyes_brows_and_lips_only():
    from mediapipe.python.solutions import face_mesh_connections as fmc

    from pnrelight.avatar.pipeline import facial_feature_mask

    rng = np.random.default_rng(0)
    points = np.column_stack([rng.uniform(100, 300, 478), rng.uniform(100, 300, 478)])  # a 200 px "face"
    centres = {}
    for name, edges, centre in (("lips", fmc.FACEMESH_LIPS, (200, 260)), ("left eye", fmc.FACEMESH_LEFT_EYE, (240, 170)),
                                ("right eye", fmc.FACEMESH_RIGHT_EYE, (160, 170)), ("left brow", fmc.FACEMESH_LEFT_EYEBROW, (240, 140)),
                                ("right brow", fmc.FACEMESH_RIGHT_EYEBROW, (160, 140))):
        idx = sorted({i for e in edges for i in e})
        angle = np.linspace(0, 2 * np.pi, len(idx), endpoint=False)
        points[idx] = np.column_stack([centre[0] + 20 * np.cos(angle), centre[1] + 6 * np.sin(angle)])
        centres[name] = centre
    feature = {i for edges in (fmc.FACEMESH_LIPS, fmc.FACEMESH_LEFT_EYE, fmc.FACEMESH_RIGHT_EYE, fmc.FACEMESH_LEFT_EYEBROW,
                               fmc.FACEMESH_RIGHT_EYEBROW) for e in edges for i in e}
    others = np.array(sorted(set(range(478)) - feature))
    points[others] = np.column_stack([np.r_[100, 300, 300, 100], np.r_[100, 100, 300, 300]]).repeat(len(others), 0)[: len(others)]
    m = facial_feature_mask(points, (400, 400))
    assert all(m[cy, cx] for cx, cy in centres.values())
    assert m[230, 200] == 0 and m[200, 120] == 0  # nose and cheek are skin
    assert 0.02 < m.mean() < 0.08
    assert facial_feature_mask(points[:68], (400, 400)) is None  # other landmark layouts: no mask


def test_contact_sheet_labels_are_drawn_in_the_label_strip():
    from pnrelight.avatar.preview import contact_sheet

    grey = np.full((64, 64, 3), 0.5, np.float32)
    sheet = contact_sheet([("relit: studio", grey), ("", grey)], columns=2, tile=128, label_height=22)
    assert sheet.shape == (150, 256, 3)
    label = sheet[:22, :128]
    assert label.min() < 0.2 and 0.01 < (label < 0.5).mean() < 0.4  # dark anti-aliased text on white
    assert np.all(sheet[:22, 128:] == 1.0)  # an empty label draws nothing
    assert np.allclose(sheet[22 + 32 : 22 + 96, 32:96], 0.5)  # the tile itself is untouched
