"""Light stage dataset: writer/reader round trip, resume, shards, workers, Ray, subjects, bad input.

Rendering uses the analytic stand-in of tests/lightstage_standin.py (a Lambertian sphere), so
nothing here waits for the real renderer; sizes are tiny (16 px, 12 lights).
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO

from pnrelight.errors import InputError
from pnrelight.lightstage import dataset as ds
from pnrelight.lightstage.olat import build_dataset, renderer_backend, stage_cameras

STANDIN = "lightstage_standin:StandInRenderer"
TESTS = Path(__file__).resolve().parent
# 2 synthetic subjects x 2 views = 4 tasks; 12 lights, 2 shipped maps: 18 frames per camera
CONFIG = dict(subjects=2, lights="ico:12", views=2, envs=2, size=16, texture_size=32, renderer=STANDIN, seed=3)
CLI_ARGS = ["--subjects", "2", "--lights", "ico:12", "--views", "2", "--envs", "2", "--size", "16", "--texture-size", "32",
            "--renderer", STANDIN, "--seed", "3"]


def build(root, **kw):
    return build_dataset(root, **{**CONFIG, "show_progress": False, **kw})


def tree(root) -> dict[str, bytes]:
    """Every file's bytes except the manifests (their rows carry timings), by relative path."""
    root = Path(root)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith("manifest")}


def manifest_rows(root) -> list[tuple]:
    rows = [json.loads(line) for line in (Path(root) / ds.MANIFEST).read_text().splitlines()]
    return [(r["path"], r["sha256"], r["kind"], r["subject"], r["cam_idx"], r["light_idx"]) for r in rows]


def assert_same_dataset(a, b):
    ta, tb = tree(a), tree(b)
    assert sorted(ta) == sorted(tb)
    different = [p for p in ta if ta[p] != tb[p]]
    assert not different, different[:5]
    assert manifest_rows(a) == manifest_rows(b)
    assert not list(Path(b).glob("manifest.shard-*"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted single-process run: what every other way of running must reproduce."""
    root = tmp_path_factory.mktemp("ls_ref") / "ds"
    summary = build(root)
    return root, summary


def cli_env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / ".pyshim"), str(TESTS), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def run_main(*args):
    from pnrelight_cli.main import main

    code = main(["--no-progress", *map(str, args)])
    return code


# ----------------------------------------------------------------------------- round trip


def test_round_trip_files_json_and_values(reference):
    from pnrelight.imageio import exr_info
    from pnrelight.lightstage.envlight import compose, light_weights
    from pnrelight.lightstage.layouts import load_layout

    root, summary = reference
    assert summary["rendered"] == 2 * 2 * 12 and summary["skipped"] == 0 and summary["merged"]
    d = ds.read_dataset(root)
    meta = d.metadata
    assert meta["schema_version"] == 1 and meta["generator"]["name"] == "pnrelight"
    assert meta["units"]["length"] == "metres" and meta["colour_space"] == "linear Rec.709"
    assert meta["layout"] == {"name": "ico-12", "count": 12, "hemisphere": False, "notes": "icosphere level 0"}
    assert meta["renderer"]["name"] == "standin-lambert-sphere" and "1 W/m^2" in meta["calibration"]
    assert meta["envs"] == ["studio", "sunset"] and meta["image_size"] == [16, 16] and meta["cameras_per_subject"] == 2
    assert d.subjects == ["synth-0000", "synth-0001"]
    info = meta["subject_info"]["synth-0001"]
    assert info["kind"] == "synthetic" and len(info["identity"]) == 50 and info["seed"] == [3, 1]
    assert {"expression", "skin", "specular", "iris_linear"} <= info.keys()
    assert len(d.lights) == 12 and d.lights[0]["intensity"] == {"strength": 1.0, "unit": "W/m^2", "colour": [1.0, 1.0, 1.0]}
    assert abs(sum(l["solid_angle_sr"] for l in d.lights) - 4 * math.pi) < 1e-9
    assert (root / "preview.png").is_file()

    # Frames: half-float RGBA, ZIP; alpha = mask; values = the stand-in's render to half precision.
    info_exr = exr_info(root / ds.olat_relpath("synth-0000", 1, 5, 12))
    assert info_exr["channels"] == {c: "float16" for c in "RGBA"} and info_exr["compression"] == "ZIP_COMPRESSION"
    assert exr_info(root / ds.pass_relpath("synth-0000", 1, "depth"))["channels"] == {"R": "float32"}
    olat = ds.read_olat(root, "synth-0000", 1)
    assert olat.shape == (12, 16, 16, 3) and olat.dtype == np.float32
    r = renderer_backend(STANDIN)
    cam = d.cameras("synth-0000")[1]
    mesh = r.load_subject(str(root / "subjects" / "synth-0000" / "mesh"))
    gbuf = r.prepare_view(mesh, np.array(cam["transform_matrix"]), np.array(cam["K"]), (16, 16))
    light = {"type": "sun", "direction": np.array(d.lights[5]["direction"]), "strength": 1.0, "colour": (1, 1, 1)}
    expect = r.render_olat(gbuf, light)
    assert np.abs(olat[5] - expect).max() <= 1e-3 * max(1.0, expect.max())
    assert olat[5].max() > 0.01
    passes = ds.read_passes(root, "synth-0000", 1)
    assert passes["mask"].dtype == bool and passes["mask"].sum() > 20
    assert np.array_equal(passes["mask"], gbuf["mask"])
    assert np.allclose(passes["normal"][passes["mask"]], gbuf["normal_cam"][gbuf["mask"]], atol=2e-3)
    assert np.allclose(passes["depth"], gbuf["depth"], atol=1e-6)
    assert np.allclose(passes["albedo"], gbuf["albedo"], atol=2e-3)

    # Env images = compose(the OLAT frames as stored, light_weights(map, layout, yaw)), rounded to half.
    layout = load_layout("ico:12")
    for name, yaws in cam["env_yaws_deg"].items():
        env = ds.read_env(root, "synth-0000", 1, name, yaws[0])
        want = compose(olat, light_weights(ds.load_env(ds.resolve_envs(0, [REPO / "assets" / "envmaps" / f"{name}.exr"])[0]),
                                           layout, yaws[0]))
        assert np.array_equal(env, ds.half_round(want))

    # transforms.json: one frame per camera x light, NeRF intrinsics, camera poses, light positions.
    t = ds.read_transforms(root, "synth-0000")
    assert len(t["frames"]) == 2 * 12 and (t["w"], t["h"]) == (16, 16)
    assert t["fl_x"] == cam["K"][0][0] and t["cx"] == 8.0
    assert math.isclose(t["camera_angle_x"], 2 * math.atan(8 / t["fl_x"]))
    f = next(x for x in t["frames"] if x["cam_idx"] == 1 and x["light_idx"] == 5)
    assert f["file_path"] == "cam_01/olat/005.exr" and (root / "subjects" / "synth-0000" / f["file_path"]).is_file()
    assert f["transform_matrix"] == cam["transform_matrix"] and f["pl_intensity"] == [1.0, 1.0, 1.0]
    centre = np.array(meta["subject_info"]["synth-0000"]["centre"])
    assert np.allclose(f["pl_pos"], centre + np.array(d.lights[5]["position"]), atol=1e-8)

    # Manifest: one row per frame, checksums of the files, canonical order.
    rows = [json.loads(x) for x in (root / ds.MANIFEST).read_text().splitlines()]
    assert len(rows) == summary["frames"] == 2 * 2 * (4 + 12 + 2) and [r["path"] for r in rows] == sorted(r["path"] for r in rows)
    row = next(r for r in rows if r["path"].endswith("cam_01/olat/005.exr"))
    assert row["sha256"] == ds.sha256_file(root / row["path"]) and row["kind"] == "olat" and row["light_idx"] == 5
    assert row["status"] == "done" and row["shard"] is None and row["seconds"] >= 0
    assert len(ds.finished_frames(root)) == len(rows)


def test_subject_yaw_turns_cameras_and_lights_in_the_mesh_frame():
    from pnrelight.envmap import rotation_y

    cams = stage_cameras([0.1, 0.2, 0.0], 0.2, (16, 16), views=1, yaws=(0.0, 90.0))
    assert [c["cam_idx"] for c in cams] == [0, 1]
    front, turned = (np.asarray(c["pose"]) for c in cams)
    # yaw 0: the camera is in front (+z) of the centre, looking at it
    assert np.allclose(front[:3, 3], [0.1, 0.2, 1.6]) and np.allclose(front[:3, 2], [0, 0, 1])
    # the subject turned by +90 deg (its face towards the stage's +x) = in the mesh frame the camera turned by
    # -90 deg about the centre: it stands at the mesh's -x side
    assert np.allclose(turned[:3, 3] - [0.1, 0.2, 0.0], rotation_y(-90.0) @ [0, 0, 1.6])
    assert np.allclose(turned[:3, 3], [-1.5, 0.2, 0.0])
    assert np.allclose(np.asarray(cams[1]["stage_to_mesh"])[:3, :3], rotation_y(-90.0))


def test_synthetic_subjects_are_distinct_seeded_and_textured():
    from pnrelight.lightstage.subjects import generate_subjects, synthetic_textures, head_model

    a = generate_subjects(3, seed=7)
    assert generate_subjects(2, seed=7) == a[:2]  # more subjects keep the first ones
    assert generate_subjects(3, seed=8) != a
    assert len({tuple(s["identity"]) for s in a}) == 3 and len({s["id"] for s in a}) == 3
    model = head_model()
    albedo, spec = synthetic_textures(a[0], 128, model)
    assert albedo.shape == (128, 128, 3) and spec.shape == (128, 128) and np.isfinite(albedo).all()
    # skin varies (low-frequency field) around the subject's tone; sclera is plain
    from pnrelight.avatar.build_ict_face_model import ATLAS_CELLS

    u0, v0, size = ATLAS_CELLS["face"]
    face = albedo[int((1 - v0 - size) * 128) + 8: int((1 - v0) * 128) - 8, int(u0 * 128) + 8: int((u0 + size) * 128) - 8]
    assert 0.005 < face[..., 1].std() < 0.2
    tone = np.array(a[0]["skin"]["albedo_linear"])
    assert np.allclose(np.median(face.reshape(-1, 3), axis=0), tone, rtol=0.25)


# ----------------------------------------------------------------------------- resume


def test_resume_after_simulated_kill_renders_only_missing_frames(reference, tmp_path):
    import shutil

    ref, _ = reference
    root = tmp_path / "ds"
    shutil.copytree(ref, root)
    rows = (root / ds.MANIFEST).read_text().splitlines()
    olat_rows = [r for r in rows if '"kind": "olat"' in r]
    lost = [json.loads(r)["path"] for r in olat_rows[-3:]]
    (root / lost[0]).unlink()  # frame gone, row kept
    (root / lost[1]).write_bytes(b"corrupt")  # frame corrupted, row kept
    keep = [r for r in rows if json.loads(r)["path"] != lost[2]]  # row dropped, frame kept
    env_path = next(json.loads(r)["path"] for r in rows if '"kind": "env"' in r)
    (root / env_path).unlink()  # an env image gone: composed again from the frames on disk
    (root / ds.MANIFEST).write_text("\n".join(keep) + '\n{"path": "torn', encoding="utf-8")  # a row torn by the kill
    (root / "subjects" / "synth-0000" / "cam_00" / "olat" / ".003.abcd.exr").write_bytes(b"temporary")
    (root / "preview.png").unlink()
    summary = build(root)
    assert summary["rendered"] == 3 and summary["written"] == 4
    assert summary["skipped"] == summary["frames"] - 4
    assert_same_dataset(ref, root)


def test_resume_after_killing_the_command(reference, tmp_path):
    ref, _ = reference
    root = tmp_path / "ds"
    cmd = [sys.executable, "-m", "pnrelight_cli", "--no-progress", "olat", *CLI_ARGS, "-o", str(root)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=cli_env(LS_STANDIN_DELAY="0.03"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            m = root / ds.MANIFEST
            if m.is_file() and m.read_text().count("\n") >= 25:
                break
            if proc.poll() is not None:
                pytest.fail(f"the run ended before it could be killed: {proc.stderr.read().decode()[-500:]}")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert not (root / "preview.png").exists()
    done_before = len(ds.finished_frames(root))
    assert 25 <= done_before < 72
    r = subprocess.run(cmd, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"{done_before} finished frames skipped" in r.stdout
    assert_same_dataset(ref, root)


# ----------------------------------------------------------------------------- scale-out


def test_shards_then_merge_equal_single_process(reference, tmp_path):
    ref, _ = reference
    root = tmp_path / "ds"
    s0 = build(root, shard="0/2")
    assert s0["tasks"] == 2 and not s0["merged"] and (root / "manifest.shard-0-of-2.jsonl").is_file()
    assert not (root / ds.MANIFEST).exists() and not (root / "preview.png").exists()
    s1 = build(root, shard="1/2")
    rows = [json.loads(x) for x in (root / "manifest.shard-1-of-2.jsonl").read_text().splitlines()]
    assert {r["shard"] for r in rows} == {"1/2"} and {r["subject"] for r in rows} == {"synth-0000", "synth-0001"}
    assert s0["rendered"] + s1["rendered"] == 48
    final = build(root)  # the merge run: nothing left to render
    assert final["rendered"] == 0 and final["skipped"] == final["frames"]
    assert_same_dataset(ref, root)


def test_merge_manifests_keeps_verified_rows(reference, tmp_path):
    import shutil

    ref, _ = reference
    root = tmp_path / "ds"
    shutil.copytree(ref, root)
    rows = (root / ds.MANIFEST).read_text().splitlines()
    (root / ds.MANIFEST).write_text("\n".join(rows[:10]) + "\n")
    (root / "manifest.shard-0-of-2.jsonl").write_text("\n".join(rows[10:40]) + "\n")
    bad = json.loads(rows[41])
    (root / "manifest.shard-1-of-2.jsonl").write_text("\n".join(rows[40:]) + "\n" + json.dumps({**bad, "sha256": "0" * 64}) + "\n")
    assert ds.merge_manifests(root) == len(rows)
    assert manifest_rows(root) == manifest_rows(ref) and not list(root.glob("manifest.shard-*"))


def test_workers_equal_single_process(reference, tmp_path):
    ref, _ = reference
    root = tmp_path / "ds"
    s = build(root, workers=2)
    assert s["rendered"] == 48
    assert_same_dataset(ref, root)


def test_ray_local_runtime_equals_single_process(reference, tmp_path):
    pytest.importorskip("ray", reason="ray is not installed (pip install pnrelight[scale])")
    ref, _ = reference
    root = tmp_path / "ds"
    s = build(root, ray="local", workers=2)
    assert s["rendered"] == 48 and s["merged"]
    assert_same_dataset(ref, root)


def test_missing_ray_is_one_line(monkeypatch, tmp_path, capsys):
    import builtins

    real = builtins.__import__

    def no_ray(name, *a, **k):
        if name == "ray":
            raise ImportError("no ray")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    code = run_main("olat", *CLI_ARGS, "--ray", "-o", tmp_path / "ds")
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == "pnrelight: error: ray is not installed (pip install pnrelight[scale])"
    assert not (tmp_path / "ds").exists()


# ----------------------------------------------------------------------------- bad input


def _tetra_glb(path):
    from pnrelight.avatar.export import write_glb

    v = np.array([[0, 0, 0], [0.1, 0, 0], [0, 0.1, 0], [0, 0, 0.1]], np.float32)
    t = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int32)
    uv = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], np.float32)
    tex = np.full((4, 4, 3), 0.5, np.float32)
    n = v - v.mean(0)
    write_glb(path, v, t, uv, n, tex, np.dstack([np.zeros((4, 4, 2)), np.ones((4, 4))]), tex)
    return path


def _bad_inputs(tmp: Path) -> dict:
    from pnrelight.imageio import write_exr

    cases = {}
    (tmp / "empty").mkdir()
    (tmp / "empty" / "m.mtl").write_text("newmtl a\nmap_Kd tex.png\n")
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp / "empty" / "tex.png")
    (tmp / "empty" / "e.obj").write_text("mtllib m.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\n")
    cases["empty mesh"] = ([tmp / "empty" / "e.obj"], "empty mesh")
    (tmp / "notex").mkdir()
    (tmp / "notex" / "m.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    cases["obj without textures"] = ([tmp / "notex" / "m.obj"], "missing textures")
    (tmp / "avatar").mkdir()
    _tetra_glb(tmp / "avatar" / "avatar.glb")
    cases["avatar folder without textures"] = ([tmp / "avatar"], "missing textures")
    write_exr(tmp / "square.exr", np.ones((8, 8, 3), np.float32))
    cases["env not 2:1"] = (["--subjects", "1", "--env", tmp / "square.exr"], "not a 2:1 lat-long map")
    nan = np.ones((8, 16, 3), np.float32)
    nan[3, 4, 1] = np.nan
    write_exr(tmp / "nan.exr", nan)
    cases["NaN in env"] = (["--subjects", "1", "--env", tmp / "nan.exr"], "non-finite texels")
    cases["bad shard"] = (["--subjects", "1", "--shard", "2/2"], "--shard")
    cases["bad shard text"] = (["--subjects", "1", "--shard", "one/2"], "--shard")
    cases["unknown layout"] = (["--subjects", "1", "--lights", "moonlight"], "unknown light layout")
    cases["no subjects"] = ([], "no subjects")
    cases["missing source"] = ([tmp / "nothere"], "not found")
    return cases


def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    base = ["--lights", "ico:12", "--envs", "1", "--size", "16", "--renderer", STANDIN]
    for name, (args, needle) in _bad_inputs(tmp_path).items():
        out = tmp_path / f"ds_{name.replace(' ', '_')}"
        code = run_main("olat", *base, *args, "-o", out)
        err = capsys.readouterr().err
        assert code == 2, name
        assert err.count("\n") == 1 and err.startswith("pnrelight: error: ") and needle in err, (name, err)
        assert not out.exists(), name


def test_bad_input_from_the_command_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pnrelight_cli", "--no-progress", "olat", "--subjects", "1", "--shard", "3/2",
                        "-o", str(tmp_path / "ds")], cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--shard '3/2'" in r.stderr
    assert not (tmp_path / "ds").exists()


def test_other_settings_on_an_existing_dataset_are_refused(reference, tmp_path, capsys):
    import shutil

    ref, _ = reference
    root = tmp_path / "ds"
    shutil.copytree(ref, root)
    before = tree(root)
    code = run_main("olat", *CLI_ARGS[:-2], "--seed", "4", "-o", root)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "other settings" in err
    assert tree(root) == before


def test_resolve_envs_and_shard_parsing():
    assert [e.name for e in ds.resolve_envs(3)] == ["studio", "sunset", "forest"]
    with pytest.raises(InputError, match="shipped"):
        ds.resolve_envs(9)
    assert ds.parse_shard("1/4") == (1, 4) and ds.parse_shard(None) is None
    for bad in ("4/4", "-1/2", "1/0", "1", "a/b"):
        with pytest.raises(InputError):
            ds.parse_shard(bad)


def test_the_renderer_protocol_size_is_width_then_height():
    """The dataset writer passes (W, H); the core renderer's adapter must give an H x W view."""
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.5)
    mesh = {"vertices": np.asarray(sphere.vertices), "triangles": np.asarray(sphere.faces)}
    pose = np.eye(4)
    pose[2, 3] = 3.0
    K = np.array([[40.0, 0, 24.0], [0, 40.0, 16.0], [0, 0, 1]])
    renderer = renderer_backend("pnrelight")
    g = renderer.prepare_view(mesh, pose, K, (48, 32))
    assert g.mask.shape == (32, 48)
    assert renderer.passes(g)["albedo"].shape == (32, 48, 3)
    ys, xs = np.nonzero(g.mask)
    assert abs(xs.mean() + 0.5 - 24.0) < 1.0 and abs(ys.mean() + 0.5 - 16.0) < 1.0  # centred on the principal point
