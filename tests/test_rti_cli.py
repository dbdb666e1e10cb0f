"""The `pnrelight rti` command as a user runs it: end to end and every bad input."""
import json
import shutil

import numpy as np
import pytest

from conftest import REPO, run_cli
from pnrelight.formats.lp import write_lp
from pnrelight.imageio import read_image, write_image

EXAMPLE = REPO / "assets" / "examples" / "rti_synthetic"


def test_fit_relight_eval_end_to_end(tmp_path):
    model = tmp_path / "hsh"
    r = run_cli("rti", "fit", EXAMPLE, "--basis", "hsh", "--terms", "9", "--holdout", "5", "-o", model)
    assert r.returncode == 0, r.stderr
    assert "held-out lights (8)" in r.stdout
    info = json.loads((model / "info.json").read_text())
    assert info["type"] == "hsh" and info["nplanes"] == 27 and info["pnrelight"]["holdout"]["mean"]["psnr"] > 25
    assert (model / "preview.png").is_file() and len(list(model.glob("plane_*.jpg"))) == 9

    out = tmp_path / "relit.png"
    r = run_cli("rti", "relight", model, "--light", "0.3", "0.2", "-o", out)
    assert r.returncode == 0, r.stderr
    assert read_image(out).shape == (128, 128, 3)

    r = run_cli("rti", "relight", model, "--lights", EXAMPLE / "test" / "dirs.lp", "-o", tmp_path / "many")
    assert r.returncode == 0, r.stderr
    relit = sorted((tmp_path / "many").glob("*.png"))
    assert len(relit) == 10 and (tmp_path / "many" / "dirs.lp").is_file()

    r = run_cli("rti", "eval", model, EXAMPLE / "test", "--json", tmp_path / "eval.json")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "eval.json").read_text())
    assert len(report["lights"]) == 10 and set(report["lights"][0]) == {"name", "psnr", "ssim"}
    assert report["mean"]["psnr"] > 28 and 0.8 < report["mean"]["ssim"] <= 1
    # the relit PNG of a test light scores like eval says
    from pnrelight.metrics import psnr
    gt = read_image(EXAMPLE / "test" / "light00.jpg")
    mask = read_image(EXAMPLE / "mask.png") > 0.5
    assert abs(psnr(read_image(tmp_path / "many" / "light00.png"), gt, mask) - report["lights"][0]["psnr"]) < 0.3


@pytest.mark.parametrize("basis", ["ptm", "lptm", "lhsh"])
def test_other_bases_fit(tmp_path, basis):
    r = run_cli("rti", "fit", EXAMPLE, "--basis", basis, "-o", tmp_path / basis)
    assert r.returncode == 0, r.stderr
    r = run_cli("rti", "eval", tmp_path / basis, EXAMPLE / "test")
    assert r.returncode == 0 and "mean" in r.stdout


def _copy_example(tmp_path, n=12):
    dst = tmp_path / "mlic"
    dst.mkdir()
    lines = (EXAMPLE / "dirs.lp").read_text().splitlines()[1:n + 1]
    for ln in lines:
        shutil.copy(EXAMPLE / ln.split()[0], dst)
    (dst / "dirs.lp").write_text(f"{n}\n" + "\n".join(lines) + "\n")
    return dst


def _no_lp(d):
    (d / "dirs.lp").unlink()


def _bad_count(d):
    text = (d / "dirs.lp").read_text().splitlines()
    (d / "dirs.lp").write_text("13\n" + "\n".join(text[1:]) + "\n")


def _missing_image(d):
    (d / "light03.jpg").unlink()


def _other_size(d):
    write_image(d / "light05.jpg", np.zeros((64, 80, 3)))


def _zero_light(d):
    text = (d / "dirs.lp").read_text().splitlines()
    text[4] = text[4].split()[0] + " 0 0 0"
    (d / "dirs.lp").write_text("\n".join(text) + "\n")


@pytest.mark.parametrize("damage,basis,message", [
    (_no_lp, "ptm", "no .lp light file"),
    (_bad_count, "ptm", "header says 13 lights but 12 rows"),
    (_missing_image, "ptm", "light03.jpg listed in dirs.lp is missing"),
    (_other_size, "ptm", "all images must have the same size"),
    (_zero_light, "ptm", "zero vector"),
    (None, "hsh16", "fewer than the 16"),
])
def test_bad_input_one_line_exit_2(tmp_path, damage, basis, message):
    mlic = _copy_example(tmp_path)
    if damage:
        damage(mlic)
    args = ["--basis", "hsh", "--terms", "16"] if basis == "hsh16" else ["--basis", basis]
    out = tmp_path / "model"
    r = run_cli("rti", "fit", mlic, *args, "-o", out)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert not out.exists() and not any(p.name.startswith(".model") for p in tmp_path.iterdir())


def test_relight_bad_model_folder(tmp_path):
    r = run_cli("rti", "relight", tmp_path, "--light", "0", "0", "-o", tmp_path / "x.png")
    assert r.returncode == 2 and "no info.json" in r.stderr and not (tmp_path / "x.png").exists()


def test_help_everywhere():
    for args in (["--help"], ["rti", "--help"], ["rti", "fit", "--help"], ["rti", "distill", "--help"], ["rti", "relight", "--help"], ["rti", "eval", "--help"]):
        r = run_cli(*args)
        assert r.returncode == 0 and "usage:" in r.stdout


def test_neural_teacher_and_student_through_the_cli(tmp_path):
    teacher, student = tmp_path / "teacher", tmp_path / "student"
    r = run_cli("rti", "fit", EXAMPLE, "--basis", "neural", "--epochs", "2", "--holdout", "5", "-o", teacher)
    assert r.returncode == 0, r.stderr
    info = json.loads((teacher / "info.json").read_text())
    assert info["type"] == "neural" and info["planes"] == 9 and info["samples"] == 52
    assert (teacher / "encoder.npz").is_file() and (teacher / "info.json").stat().st_size < 200_000
    assert info["pnrelight"]["training"]["encoder_file"] == "encoder.npz" and info["pnrelight"]["seed"] == 0
    r = run_cli("rti", "distill", teacher, EXAMPLE, "--epochs", "2", "-o", student)
    assert r.returncode == 0, r.stderr
    assert "723 parameters vs teacher 3303" in r.stdout and "held-out lights (8)" in r.stdout
    sinfo = json.loads((student / "info.json").read_text())
    assert sinfo["samples"] == 20 and sinfo["pnrelight"]["alpha"] == 0.3 and sinfo["pnrelight"]["role"] == "student"
    r = run_cli("rti", "eval", student, EXAMPLE / "test", "--json", tmp_path / "s.json")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "s.json").read_text())["mean"]["psnr"] > 20
    r = run_cli("rti", "relight", student, "--light", "-0.4", "0.5", "-o", tmp_path / "s.png")
    assert r.returncode == 0 and read_image(tmp_path / "s.png").shape == (128, 128, 3)


def test_distill_needs_a_neural_teacher(tmp_path):
    run_cli("rti", "fit", EXAMPLE, "--basis", "ptm", "-o", tmp_path / "ptm")
    r = run_cli("rti", "distill", tmp_path / "ptm", EXAMPLE, "-o", tmp_path / "s")
    assert r.returncode == 2 and "needs a neural teacher" in r.stderr and not (tmp_path / "s").exists()


def test_neural_folder_whose_weights_do_not_match_its_widths(tmp_path):
    """A hand-edited or truncated neural info.json is one line and exit 2 from relight, not an IndexError."""
    from pnrelight.formats.rti_folder import save_model
    from pnrelight.rti.model import RTIModel

    rng = np.random.default_rng(0)
    layers = [(rng.normal(size=(20, 11)).astype(np.float32), np.zeros(20, np.float32)),
              (rng.normal(size=(20, 20)).astype(np.float32), np.zeros(20, np.float32)),
              (rng.normal(size=(3, 20)).astype(np.float32), np.zeros(3, np.float32))]
    model = RTIModel(kind="neural", colorspace="rgb", coefficients=rng.random((16, 12, 9), dtype=np.float32),
                     terms=9, layers=layers)
    good = save_model(model, tmp_path / "good")
    info = json.loads((good / "info.json").read_text())
    damages = {
        "short": lambda i: i["weights"][1].__delitem__(slice(-20, None)),         # 20x19: a multiple of 20 outputs
        "layers": lambda i: i["biases"].pop(),                                     # 3 weight arrays, 2 bias arrays
        "outputs": lambda i: (i["weights"].__setitem__(2, i["weights"][2][:40]), i["biases"].__setitem__(2, [0, 0])),
        "text": lambda i: i["weights"].__setitem__(0, ["a"] * 240),
    }
    for name, damage in damages.items():
        bad = tmp_path / name
        shutil.copytree(good, bad)
        broken = json.loads(json.dumps(info))
        damage(broken)
        (bad / "info.json").write_text(json.dumps(broken))
        out = tmp_path / f"{name}.png"
        r = run_cli("rti", "relight", bad, "--light", "0.2", "0.3", "-o", out)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and len(lines) == 1 and "info.json" in lines[0], (name, r.stderr)
        assert "Traceback" not in r.stderr and not out.exists()
    assert run_cli("rti", "relight", good, "--light", "0.2", "0.3", "-o", tmp_path / "ok.png").returncode == 0
