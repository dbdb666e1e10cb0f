"""RTI models evaluated in a GLSL fragment shader (the web viewer's way) agree with numpy relight."""
import numpy as np
import pytest

from pnrelight.rti.fit import fit_linear
from pnrelight.rti.model import relight
from test_rti_folder import coin_mlic, random_neural  # noqa: F401 - fixture

glsl = pytest.importorskip("pnrelight.rti.glsl")
pytest.importorskip("pyrender")

LIGHTS = [np.array([0.45, -0.3, np.sqrt(1 - 0.45**2 - 0.3**2)]), np.array([-0.7, 0.2, np.sqrt(1 - 0.53)])]


@pytest.fixture(scope="module")
def gl_ok():
    try:
        with glsl.ShaderRelighter(random_neural(h=4, w=4, hidden=(4,))):
            pass
    except Exception as exc:  # noqa: BLE001 - any EGL failure: no offscreen GL on this machine
        pytest.skip(f"no offscreen OpenGL (EGL): {exc}")


def _models(coin_mlic):
    yield "ptm", fit_linear(coin_mlic, "ptm")
    yield "lptm", fit_linear(coin_mlic, "ptm", colorspace="lrgb")
    yield "hsh9", fit_linear(coin_mlic, "hsh", 9)
    yield "hsh16", fit_linear(coin_mlic, "hsh", 16)
    yield "neural-teacher", random_neural()
    yield "neural-student", random_neural(hidden=(20, 20), seed=3)


def test_quantize_is_within_half_a_step():
    c = np.random.default_rng(0).normal(size=(5, 7, 9)).astype(np.float32)
    codes, lo, span = glsl.quantize(c)
    assert codes.shape == (5, 7, 12) and codes.dtype == np.uint8 and not codes[..., 9:].any()
    back = lo + span * codes[..., :9] / 255.0
    assert np.all(np.abs(back - c) <= span / 255.0 * 0.5 + 1e-6)


def test_shader_matches_numpy_relight(gl_ok, coin_mlic):
    for name, model in _models(coin_mlic):
        reference = glsl.dequantized(model)
        with glsl.ShaderRelighter(model) as gl:
            for light in LIGHTS:
                image = gl.render(light)
                expected = relight(reference, light)
                assert image.shape == expected.shape, name
                err = np.abs(image - expected).max()
                assert err < 2e-4, f"{name}: shader differs from numpy by {err}"
        # and the quantised planes are a faithful copy of the model (not an identical mistake in both)
        assert np.abs(relight(reference, LIGHTS[0]) - relight(model, LIGHTS[0])).max() < 0.05, name


def test_shader_orientation_and_light_dependence(gl_ok):
    model = random_neural(h=24, w=40, hidden=(20, 20), seed=5)
    with glsl.ShaderRelighter(model) as gl:
        a, b = gl.render(LIGHTS[0]), gl.render(LIGHTS[1])
    assert a.shape == (24, 40, 3)
    assert np.abs(a - b).mean() > 0.01  # the light uniform reaches the decoder
    flipped = relight(glsl.dequantized(model), LIGHTS[0])[::-1]
    assert np.abs(a - flipped).max() > 10 * np.abs(a - relight(glsl.dequantized(model), LIGHTS[0])).max()
