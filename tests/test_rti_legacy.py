"""Legacy RTIBuilder/RTIViewer files (.ptm, HSH .rti): round trips, the byte layouts, the CLI, bad files.

No .ptm/.rti written by another tool is readable from the public sources we can search (they are
binary); ``test_*_hand_assembled`` instead build small files byte by byte as RTIViewer's and the
HP PTM specification's readers lay them out and check our reading against values computed here,
with the viewers' formulas written out independently of ``pnrelight.rti.bases``.
"""
import json
import struct

import numpy as np
import pytest

from conftest import REPO, run_cli
from pnrelight.errors import InputError
from pnrelight.formats.legacy_rti import read_hsh_rti, read_legacy, read_ptm, write_hsh_rti, write_legacy, write_ptm
from pnrelight.formats.mlic import load_mlic
from pnrelight.formats.rti_folder import load_model, save_model
from pnrelight.imageio import read_image
from pnrelight.metrics import psnr
from pnrelight.rti.fit import fit_linear
from pnrelight.rti.model import RTIModel, relight

EXAMPLE = REPO / "assets" / "examples" / "rti_synthetic"
LIGHTS = np.array([[0, 0, 1.0], [0.6, 0.2, 0.77], [-0.5, -0.6, 0.62], [0.9, -0.1, 0.42], [-0.2, 0.95, 0.24]])
LIGHTS /= np.linalg.norm(LIGHTS, axis=1, keepdims=True)
FITS = {"ptm": ("ptm", None, "rgb", ".ptm"), "lptm": ("ptm", None, "lrgb", ".ptm"),
        "hsh9": ("hsh", 9, "rgb", ".rti"), "hsh16": ("hsh", 16, "rgb", ".rti")}
MARK = (slice(3, 13), slice(5, 35))  # a bright bar in the top-left corner: any flip or transpose moves it


@pytest.fixture(scope="module")
def example():
    return load_mlic(EXAMPLE)


def _marked(model: RTIModel) -> RTIModel:
    """The model with a bright bar added to its constant term (term 0 of both bases) in the top-left corner."""
    c = model.coefficients.copy()
    gain = 0.6 if model.kind == "ptm" else 0.6 * np.sqrt(2 * np.pi)  # +0.6 in the image (HSH term 0 is 1/sqrt(2π))
    if model.colorspace == "lrgb":
        c[MARK[0], MARK[1], :3] = 1.0  # a white bar: the background's colour is black
        c[MARK[0], MARK[1], 3] += gain
    else:
        c[MARK[0], MARK[1], 0:3] += gain
    return RTIModel(model.kind, model.colorspace, c, model.terms, meta=dict(model.meta))


@pytest.mark.parametrize("name", sorted(FITS))
def test_round_trip_relights_like_the_original_and_is_not_flipped(example, tmp_path, name):
    kind, terms, colorspace, suffix = FITS[name]
    model = _marked(fit_linear(example, kind, terms, colorspace))
    path = write_legacy(model, tmp_path / f"model{suffix}")
    back = read_legacy(path)
    assert (back.kind, back.colorspace, back.terms, back.shape) == (model.kind, model.colorspace, model.terms, model.shape)
    for light in LIGHTS:
        a, b = relight(model, light), relight(back, light)
        assert psnr(b, a) >= 45.0, (name, light, psnr(b, a))
        assert psnr(b, a[::-1]) < 30.0 and psnr(b, a[:, ::-1]) < 30.0  # not flipped either way
    # the bar is where it was: top-left, the mirrored places stay dark
    top = relight(back, LIGHTS[0])
    bar = top[MARK].mean()
    assert bar > top[-13:-3, 5:35].mean() + 0.3 and bar > top[3:13, -35:-5].mean() + 0.3
    # every coefficient within half a code of its term's 8-bit range (PTM ranges include 0; lrgb colour: 1/255)
    planes = model.coefficients.shape[2]
    term = np.arange(planes) // 3 if colorspace == "rgb" else np.arange(planes)  # rgb: one range per term over R, G, B
    flat = model.coefficients.reshape(-1, planes)
    lo = np.array([flat[:, term == i].min() for i in term])
    hi = np.array([flat[:, term == i].max() for i in term])
    if kind == "ptm":
        lo, hi = np.minimum(lo, 0), np.maximum(hi, 0)
    step = (hi - lo) / (254 if kind == "ptm" else 255)
    if colorspace == "lrgb":
        step[:3] = 1 / 255
    err = np.abs(back.coefficients - model.coefficients).reshape(-1, planes).max(axis=0)
    assert np.all(err <= 0.5 * step * 1.01 + 1e-6), (err / step).max()


def test_lrgb_hsh_is_written_as_rgb_exactly(example, tmp_path):
    model = fit_linear(example, "hsh", 9, "lrgb")
    back = read_hsh_rti(write_hsh_rti(model, tmp_path / "l.rti"))
    assert back.colorspace == "rgb" and back.terms == 9
    for light in LIGHTS:
        assert psnr(relight(back, light), relight(model, light)) >= 45.0


# ----------------------------------------------------------------------------- byte layouts, by hand

def _ptm_poly(a, u, v):
    """RTIViewer's / the HP spec's evalPoly: a0·u² + a1·v² + a2·u·v + a3·u + a4·v + a5 (0..255 units)."""
    return a[0] * u * u + a[1] * v * v + a[2] * u * v + a[3] * u + a[4] * v + a[5]


PTM_SCALE = [1.5, 2.0, 0.75, 1.25, 1.0, 0.5]
PTM_BIAS = [128, 100, 90, 120, 127, 0]
W, H = 3, 2  # not square: a transposed reading cannot pass


def _ptm_byte(c, y_file, x, j):
    return (17 + 40 * c + 23 * y_file + 11 * x + 29 * j) % 256


def _ptm_header(version, fmt):
    return (f"{version}\n{fmt}\n{W}\n{H}\n" + " ".join(map(str, PTM_SCALE)) + "\n" + " ".join(map(str, PTM_BIAS)) + "\n").encode()


def test_ptm_rgb_hand_assembled(tmp_path):
    data = bytearray()
    for c in range(3):                 # the red block, then green, then blue
        for y_file in range(H):        # bottom row first
            for x in range(W):
                data += bytes(_ptm_byte(c, y_file, x, j) for j in range(6))  # a0..a5
    path = tmp_path / "hand.ptm"
    path.write_bytes(_ptm_header("PTM_1.2", "PTM_FORMAT_RGB") + bytes(data))
    model = read_ptm(path)
    assert (model.colorspace, model.shape) == ("rgb", (H, W))
    u, v = 0.4, -0.3
    light = np.array([u, v, np.sqrt(1 - u * u - v * v)])
    got = relight(model, light, clip=False)
    for y_file in range(H):
        for x in range(W):
            for c in range(3):
                a = [(_ptm_byte(c, y_file, x, j) - PTM_BIAS[j]) * PTM_SCALE[j] for j in range(6)]
                assert got[H - 1 - y_file, x, c] == pytest.approx(_ptm_poly(a, u, v) / 255.0, abs=1e-5)


@pytest.mark.parametrize("version", ["PTM_1.2", "PTM_1.1"])
def test_ptm_lrgb_hand_assembled(tmp_path, version):
    def rgb(y_file, x, c):
        return (60 + 50 * c + 30 * y_file + 20 * x) % 256

    coeffs, colours = bytearray(), bytearray()
    for y_file in range(H):
        for x in range(W):
            coeffs += bytes(_ptm_byte(0, y_file, x, j) for j in range(6))
            colours += bytes(rgb(y_file, x, c) for c in range(3))
            if version == "PTM_1.1":  # 1.1 interleaves a0..a5 R G B per pixel
                coeffs += colours[-3:]
    data = coeffs + (colours if version == "PTM_1.2" else b"")  # 1.2: all a0..a5, then all R G B
    path = tmp_path / "hand.ptm"
    path.write_bytes(_ptm_header(version, "PTM_FORMAT_LRGB").replace(b"\n", b"\r\n") + bytes(data))  # CRLF too
    model = read_ptm(path)
    assert (model.colorspace, model.shape) == ("lrgb", (H, W))
    u, v = -0.5, 0.2
    got = relight(model, np.array([u, v, np.sqrt(1 - u * u - v * v)]), clip=False)
    for y_file in range(H):
        for x in range(W):
            lum = _ptm_poly([(_ptm_byte(0, y_file, x, j) - PTM_BIAS[j]) * PTM_SCALE[j] for j in range(6)], u, v) / 255.0
            expected = [rgb(y_file, x, c) * lum / 255.0 for c in range(3)]  # RTIViewer: byte · L/255
            assert got[H - 1 - y_file, x] == pytest.approx(expected, abs=1e-5)


def _rtiviewer_hsh(theta, phi):
    """RTIViewer's getHSH for 9 terms (written out here, independently of pnrelight.rti.bases)."""
    ct = np.cos(theta)
    s = np.sqrt(ct - ct * ct)
    return [1 / np.sqrt(2 * np.pi), np.sqrt(6 / np.pi) * np.cos(phi) * s, np.sqrt(3 / (2 * np.pi)) * (-1 + 2 * ct),
            np.sqrt(6 / np.pi) * s * np.sin(phi), np.sqrt(30 / np.pi) * np.cos(2 * phi) * (-ct + ct * ct),
            np.sqrt(30 / np.pi) * np.cos(phi) * (-1 + 2 * ct) * s, np.sqrt(5 / (2 * np.pi)) * (1 - 6 * ct + 6 * ct * ct),
            np.sqrt(30 / np.pi) * (-1 + 2 * ct) * s * np.sin(phi), np.sqrt(30 / np.pi) * (-ct + ct * ct) * np.sin(2 * phi)]


def test_hsh_rti_hand_assembled(tmp_path):
    terms = 9
    scale = [0.8 + 0.1 * t for t in range(terms)]
    bias = [-0.3 + 0.05 * t for t in range(terms)]

    def byte(y, x, c, t):
        return (7 + 31 * y + 13 * x + 57 * c + 19 * t) % 256

    header = f"#HSH1.2\r\n# a comment line\r\n3\r\n{W} {H} 3\r\n{terms} 2 1\r\n".encode()
    header += struct.pack(f"<{terms}f", *scale) + struct.pack(f"<{terms}f", *bias)
    data = bytes(byte(y, x, c, t) for y in range(H) for x in range(W) for c in range(3) for t in range(terms))
    path = tmp_path / "hand.rti"
    path.write_bytes(header + data)
    model = read_hsh_rti(path)
    assert (model.kind, model.terms, model.shape) == ("hsh", 9, (H, W))
    lx, ly = -0.35, 0.45
    light = np.array([lx, ly, np.sqrt(1 - lx * lx - ly * ly)])
    phi = np.arctan2(ly, lx) % (2 * np.pi)
    weights = _rtiviewer_hsh(np.arccos(light[2]), phi)
    got = relight(model, light, clip=False)
    f32 = np.float32
    for y in range(H):          # rows top first
        for x in range(W):
            for c in range(3):
                coeff = [float(f32(byte(y, x, c, t)) / f32(255) * f32(scale[t]) + f32(bias[t])) for t in range(terms)]
                assert got[y, x, c] == pytest.approx(float(np.dot(coeff, weights)), abs=1e-5)


# ----------------------------------------------------------------------------- CLI

def test_cli_folder_to_ptm_to_folder_and_relight_eval_on_files(tmp_path):
    r = run_cli("rti", "fit", EXAMPLE, "--basis", "ptm", "-o", tmp_path / "ptm")
    assert r.returncode == 0, r.stderr
    r = run_cli("rti", "convert", tmp_path / "ptm", "-o", tmp_path / "coin.ptm")
    assert r.returncode == 0 and "ptm-6" in r.stdout, r.stderr
    assert (tmp_path / "coin.ptm").read_bytes().startswith(b"PTM_1.2\nPTM_FORMAT_RGB\n128\n128\n")
    r = run_cli("rti", "convert", tmp_path / "coin.ptm", "-o", tmp_path / "back")
    assert r.returncode == 0, r.stderr
    info = json.loads((tmp_path / "back" / "info.json").read_text())
    assert info["type"] == "ptm" and info["nplanes"] == 18 and (tmp_path / "back" / "preview.png").is_file()
    original, back = load_model(tmp_path / "ptm"), load_model(tmp_path / "back")
    for light in LIGHTS:
        assert psnr(relight(back, light), relight(original, light)) >= 45.0
    # the other commands take the file itself
    r = run_cli("rti", "relight", tmp_path / "coin.ptm", "--light", "0.3", "0.2", "-o", tmp_path / "relit.png")
    assert r.returncode == 0, r.stderr
    assert psnr(read_image(tmp_path / "relit.png"), relight(original, np.array([0.3, 0.2, np.sqrt(0.87)]))) >= 40.0
    r = run_cli("rti", "eval", tmp_path / "coin.ptm", EXAMPLE / "test")
    assert r.returncode == 0 and "ptm-6 on" in r.stdout and "mean" in r.stdout, r.stderr


def test_cli_hsh_folder_to_rti(tmp_path, example):
    save_model(fit_linear(example, "hsh", 16), tmp_path / "hsh16")
    r = run_cli("rti", "convert", tmp_path / "hsh16", "-o", tmp_path / "coin.rti")
    assert r.returncode == 0, r.stderr
    back = load_model(tmp_path / "coin.rti")
    assert back.label == "hsh-16"
    assert psnr(relight(back, LIGHTS[3]), relight(load_model(tmp_path / "hsh16"), LIGHTS[3])) >= 45.0


def _random_neural():
    rng = np.random.default_rng(0)
    widths = [11, 8, 8, 3]
    layers = [(rng.normal(0, 0.3, (o, i)).astype(np.float32), np.zeros(o, np.float32)) for i, o in zip(widths[:-1], widths[1:])]
    return RTIModel("neural", "rgb", rng.normal(size=(8, 8, 9)).astype(np.float32), 9, layers)


def _bad_inputs(root, example):
    ptm = write_ptm(fit_linear(example, "ptm"), root / "good.ptm")
    blob = ptm.read_bytes()
    (root / "truncated.ptm").write_bytes(blob[:-1000])
    (root / "magic.ptm").write_bytes(b"P6\n128 128\n255\n" + blob[40:])
    (root / "jpeg.ptm").write_bytes(blob.replace(b"PTM_FORMAT_RGB", b"PTM_FORMAT_JPEG_LRGB", 1))
    (root / "width.ptm").write_bytes(blob.replace(b"\n128\n", b"\n12x\n", 1))
    (root / "zero.ptm").write_bytes(blob.replace(b"\n128\n", b"\n0\n", 1))
    hsh = write_hsh_rti(fit_linear(example, "hsh", 9), root / "good.rti").read_bytes()
    (root / "hsh25.rti").write_bytes(hsh.replace(b"\r\n9 2 1\r\n", b"\r\n25 2 1\r\n", 1))
    (root / "type1.rti").write_bytes(hsh.replace(b"#HSH1.2\r\n3\r\n", b"#HSH1.2\r\n1\r\n", 1))
    (root / "truncated.rti").write_bytes(hsh[:60])
    save_model(_random_neural(), root / "neural")
    return {
        "truncated": (["relight", root / "truncated.ptm", "--light", "0.1", "0.2", "-o", root / "out.png"], "truncated"),
        "truncated_count": (["relight", root / "truncated.ptm", "--light", "0.1", "0.2", "-o", root / "out.png"],
                            f"{128 * 128 * 18} data bytes"),
        "wrong_magic": (["convert", root / "magic.ptm", "-o", root / "out"], "not a PTM or HSH file"),
        "unsupported_variant": (["convert", root / "jpeg.ptm", "-o", root / "out"], "supported: PTM_FORMAT_RGB, PTM_FORMAT_LRGB"),
        "bad_width": (["eval", root / "width.ptm", EXAMPLE / "test"], "bad header"),
        "zero_width": (["convert", root / "zero.ptm", "-o", root / "out"], "image size 0x128"),
        "hsh_terms": (["convert", root / "hsh25.rti", "-o", root / "out"], "25 HSH terms are not supported"),
        "rti_type": (["convert", root / "type1.rti", "-o", root / "out"], "type 1 (PTM) is not supported"),
        "rti_truncated": (["convert", root / "truncated.rti", "-o", root / "out"], "truncated"),
        "missing": (["convert", root / "nothing.ptm", "-o", root / "out"], "no such file"),
        "neural_to_ptm": (["convert", root / "neural", "-o", root / "out.ptm"], "cannot write a neural 8x8 model as .ptm"),
        "ptm_to_rti": (["convert", root / "good.ptm", "-o", root / "out.rti"], "cannot write a ptm-6 model as .rti"),
        "hsh_to_ptm": (["convert", root / "good.rti", "-o", root / "out.ptm"], ".ptm holds PTM models"),
    }


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, example):
    root = tmp_path_factory.mktemp("bad_legacy")
    return root, _bad_inputs(root, example)


@pytest.mark.parametrize("case", ["truncated", "truncated_count", "wrong_magic", "unsupported_variant", "bad_width",
                                  "zero_width", "hsh_terms", "rti_type", "rti_truncated", "missing", "neural_to_ptm",
                                  "ptm_to_rti", "hsh_to_ptm"])
def test_bad_files_exit_2_with_one_line_and_write_nothing(bad_inputs, case):
    root, cases = bad_inputs
    before = sorted(p.name for p in root.iterdir())
    args, message = cases[case]
    r = run_cli("rti", *args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert sorted(p.name for p in root.iterdir()) == before  # no output, no temporary left behind


def test_reader_errors_name_the_problem(tmp_path, example):
    path = write_ptm(fit_linear(example, "ptm", colorspace="lrgb"), tmp_path / "l.ptm")
    path.write_bytes(path.read_bytes().replace(b"PTM_1.2", b"PTM_2.0", 1))
    with pytest.raises(InputError, match="PTM version 'PTM_2.0' is not supported"):
        read_ptm(path)
    hsh = tmp_path / "h.rti"
    hsh.write_bytes(b"#HSH1.2\n3\n4 4 1\n9 2 1\n")
    with pytest.raises(InputError, match="1 colour bands"):
        read_hsh_rti(hsh)
    with pytest.raises(InputError, match="legacy files end in .ptm"):
        write_legacy(fit_linear(example, "ptm"), tmp_path / "x.png")
