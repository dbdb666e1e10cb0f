"""The HSH-9 light prior: virtual lights in the gaps of a capture, their targets, the auto check."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import REPO, run_cli  # noqa: E402
from pnrelight.formats.mlic import MLIC  # noqa: E402
from pnrelight.lights import hemisphere_directions  # noqa: E402
from pnrelight.rti import neural  # noqa: E402
from pnrelight.rti.bases import basis_matrix  # noqa: E402
from test_rti_neural import FAST, synthetic_mlic  # noqa: E402

EXAMPLE = REPO / "assets" / "examples" / "rti_synthetic"


def _angles_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle from each direction of a (M, 3) to the nearest of b (N, 3)."""
    return np.degrees(np.arccos(np.clip(np.max(a @ b.T, axis=1), -1, 1)))


def test_virtual_lights_lie_in_the_gaps_only():
    dirs = hemisphere_directions(40, min_elevation_deg=20.0, seed=1)
    half = dirs[dirs[:, 0] > 0.1]                                   # a capture lit from one side only
    virtual = neural.gap_light_directions(half)
    assert len(virtual) > 20
    assert np.all(_angles_deg(virtual, half) >= neural.PRIOR_MIN_SEPARATION_DEG - 1e-3)
    assert np.all(virtual[:, 2] >= half[:, 2].min() - 1e-6)
    assert np.allclose(np.linalg.norm(virtual, axis=1), 1, atol=1e-5)
    assert np.mean(virtual[:, 0] < 0) > 0.6                         # mostly on the unlit side
    dense = neural.gap_light_directions(np.concatenate([half, virtual]))
    assert len(dense) == 0                                           # nothing is left to fill


def test_hsh9_relight_is_exact_on_hsh9_reflectance():
    rng = np.random.default_rng(0)
    dirs = hemisphere_directions(25, min_elevation_deg=15.0, seed=2)
    new = hemisphere_directions(7, min_elevation_deg=30.0, seed=9)
    coef = rng.normal(size=(50, 9, 3))
    obs = np.einsum("nk,pkc->pnc", basis_matrix("hsh", dirs, 9), coef)
    truth = np.einsum("mk,pkc->pmc", basis_matrix("hsh", new, 9), coef)
    out = neural.hsh9_relight(obs.astype(np.float32), dirs, new, chunk=16)
    assert out.shape == (50, 7, 3) and out.dtype == np.float32
    assert np.max(np.abs(out - truth)) < 1e-4 * max(1.0, np.max(np.abs(truth)))


def test_teacher_with_the_prior_learns_it_and_the_student_follows():
    full = synthetic_mlic(size=20, n_lights=36, seed=5)
    one_side = full.directions[:, 0] > 0
    mlic = MLIC(images=full.images[one_side], directions=full.directions[one_side],
                names=[n for n, k in zip(full.names, one_side) if k], mask=None, folder=full.folder)
    virtual = neural.gap_light_directions(mlic.directions)
    obs = mlic.pixels(np.arange(20 * 20))
    prior = neural.hsh9_relight(obs, mlic.directions, virtual)      # (P, M, 3)

    def distance_to_prior(model):
        z = model.coefficients.reshape(-1, 9)
        pred = np.stack([neural.torch_decode(z, v[:2], model.layers) for v in virtual], axis=1)
        return float(np.mean((pred - prior) ** 2))

    with_prior, rec = neural.train_teacher(mlic, light_prior="hsh9", seed=0, **FAST)
    without, rec0 = neural.train_teacher(mlic, light_prior="none", seed=0, **FAST)
    assert rec["light_prior"] == {"requested": "hsh9", "used": True, "virtual_lights": len(virtual),
                                  "decided_by": "setting", "check": None}
    assert rec0["light_prior"]["used"] is False and rec0["light_prior"]["virtual_lights"] == 0
    assert distance_to_prior(with_prior) < 0.5 * distance_to_prior(without)
    with_prior.meta["training"] = rec
    student, srec = neural.distill_student(with_prior, mlic, seed=0, **{**FAST, "epochs": 3})
    assert srec["light_prior"]["used"] and srec["light_prior"]["decided_by"] == "teacher"
    assert srec["light_prior"]["check"] is None                      # inherited: no check was run


def test_auto_runs_the_held_light_check_and_follows_it():
    mlic = synthetic_mlic(size=16, n_lights=30, seed=4)
    model, rec = neural.train_teacher(mlic, seed=0, **{**FAST, "epochs": 8})
    prior = rec["light_prior"]
    check = prior["check"]
    assert prior["requested"] == "auto" and prior["decided_by"] == "check"
    assert check["held_lights"] == 5 and 10 <= check["steps"] <= neural.CHECK_STEPS
    assert all(np.isfinite(check[k]) and check[k] > 0 for k in ("mse_none", "mse_prior", "mse_hsh9"))
    assert check["use_prior"] == (check["mse_prior"] < neural.PRIOR_MARGIN * check["mse_none"]) == prior["used"]
    again = neural.light_prior_check(mlic, seed=0, steps=check["steps"], threads=1)
    assert again["mse_none"] == pytest.approx(check["mse_none"], rel=1e-5)  # deterministic for a seed
    with pytest.raises(neural.InputError, match="unknown light prior"):
        neural.train_teacher(mlic, light_prior="sh", **FAST)


def test_light_prior_through_the_cli(tmp_path):
    teacher, student = tmp_path / "teacher", tmp_path / "student"
    r = run_cli("rti", "fit", EXAMPLE, "--basis", "neural", "--epochs", "2", "--light-prior", "hsh9", "-o", teacher)
    assert r.returncode == 0, r.stderr
    info = json.loads((teacher / "info.json").read_text())["pnrelight"]["training"]["light_prior"]
    assert info["used"] and info["virtual_lights"] > 0 and f"HSH-9 at {info['virtual_lights']} virtual lights" in r.stderr
    r = run_cli("rti", "distill", teacher, EXAMPLE, "--epochs", "1", "-o", student)
    assert r.returncode == 0, r.stderr
    assert "(as the teacher)" in r.stderr
    sinfo = json.loads((student / "info.json").read_text())["pnrelight"]["training"]["light_prior"]
    assert sinfo["used"] and sinfo["decided_by"] == "teacher"
    r = run_cli("rti", "fit", EXAMPLE, "--basis", "neural", "--light-prior", "sh", "-o", tmp_path / "x")
    assert r.returncode == 2 and "invalid choice: 'sh'" in r.stderr and not (tmp_path / "x").exists()


def test_planned_steps_count_the_pixels_split_pixels_draws():
    mlic = synthetic_mlic(size=20, n_lights=12, seed=1)
    for cap in (50, 1 << 18):
        assert neural._train_count(mlic, cap) == len(neural.split_pixels(mlic, max_pixels=cap)[0])
    mlic.mask = np.zeros(mlic.shape, bool)
    mlic.mask[2:15, 4:18] = True
    assert neural._train_count(mlic, 1 << 18) == len(neural.split_pixels(mlic)[0])
    assert neural._planned_steps(mlic, 1 << 18, epochs=3, batch_pixels=64, max_steps=None) == 3 * (len(neural.split_pixels(mlic)[0]) // 64)
