"""Evaluate exported folders the way OpenLIME's shaders read them (ShaderNeural / ShaderRTI).

The viewer is JavaScript + GLSL and cannot run here; these functions follow its data
access pattern literally (uniform arrays of vec4/vec3, texture swizzles, index arithmetic),
independently of pnrelight's reader, and must agree with `pnrelight rti relight`.
"""
import json

import numpy as np

from pnrelight.formats.rti_folder import save_model
from pnrelight.imageio import read_image
from pnrelight.lights import hemisphere_directions
from pnrelight.metrics import psnr
from pnrelight.rti.bases import hsh_basis, ptm_basis
from pnrelight.rti.fit import fit_linear
from pnrelight.rti.model import relight
from pnrelight.rti.synthetic import relief_coin, render
from pnrelight.formats.mlic import MLIC
from test_rti_folder import random_neural

LIGHT = np.array([0.45, -0.3, np.sqrt(1 - 0.45**2 - 0.3**2)])


def openlime_neural(folder, light_xy):
    info = json.loads((folder / "info.json").read_text())
    tex = [read_image(folder / f"plane_{i}.jpg") for i in (1, 2, 3)]        # texture(u_texture_i, v).rgb
    sw = ["rgb".index(ch) for ch in info["colorspace"]]
    tex = [t[..., sw] for t in tex]
    mn = np.asarray(info["min"]).reshape(-1, 3); mx = np.asarray(info["max"]).reshape(-1, 3)
    n = info["samples"]
    while n % 4: n += 1
    c = info["planes"] + 2
    while c % 4: c += 1
    w1 = np.asarray(info["weights"][0]).reshape(-1, 4); b1 = np.asarray(info["biases"][0]).reshape(-1, 4)
    w2 = np.asarray(info["weights"][1]).reshape(-1, 4); b2 = np.asarray(info["biases"][1]).reshape(-1, 4)
    w3 = np.asarray(info["weights"][2]).reshape(-1, 4); b3 = np.asarray(info["biases"][2])
    h, w, _ = tex[0].shape
    col = [tex[k] * (mx[k] - mn[k]) + mn[k] for k in range(3)]
    inputs = [np.concatenate([col[0], col[1][..., :1]], -1), np.concatenate([col[1][..., 1:], col[2][..., :2]], -1),
              np.concatenate([col[2][..., 2:], np.broadcast_to(np.array(light_xy), (h, w, 2)), np.zeros((h, w, 1))], -1)]
    elu = lambda a: np.where(a > 0, a, np.exp(np.minimum(a, 0)) - 1)
    out1 = np.zeros((h, w, n))
    for i in range(n):
        s = sum(inputs[j] @ w1[c // 4 * i + j] for j in range(c // 4))
        out1[..., i] = elu(s + b1[i // 4][i % 4])
    out2 = np.zeros((h, w, n))
    for i in range(n):
        s = sum(out1[..., 4 * j:4 * j + 4] @ w2[n // 4 * i + j] for j in range(n // 4))
        out2[..., i] = elu(s + b2[i // 4][i % 4])
    out3 = np.stack([sum(out2[..., 4 * j:4 * j + 4] @ w3[n // 4 * i + j] for j in range(n // 4)) + b3[i] for i in range(3)], -1)
    return np.clip(out3[..., sw], 0, 1)


def openlime_rti(folder, light):
    info = json.loads((folder / "info.json").read_text())
    nplanes = info["nplanes"]
    njpegs = (nplanes + 2) // 3
    scale = np.asarray(info["materials"][0]["scale"]); bias = np.asarray(info["materials"][0]["bias"])
    b = ptm_basis(light[None])[0] if info["type"] == "ptm" else hsh_basis(light[None], nplanes // 3 if info["colorspace"] == "rgb" else nplanes - 3)[0]
    base = np.repeat(np.concatenate([b, np.zeros(16)]), 3).reshape(-1, 3)   # base[k].xyz
    planes = [read_image(folder / f"plane_{j}.jpg") for j in range(njpegs)]
    if info["colorspace"] == "rgb":
        rgb = sum(base[j] * (planes[j] - bias[3 * j:3 * j + 3]) * scale[3 * j:3 * j + 3] for j in range(njpegs))
    else:  # LRGB.render
        l = 0.0
        for j, k in zip(range(1, njpegs), range(0, 99, 3)):
            for ch in range(3):
                if 3 * j + ch < nplanes:
                    l = l + base[k + ch][0] * (planes[j][..., ch] - bias[3 * j + ch]) * scale[3 * j + ch]
        rgb = l[..., None] * (planes[0] - bias[:3]) * scale[:3]
    return np.clip(rgb, 0, 1)


def test_neural_export_evaluates_in_openlime_layout(tmp_path):
    for hidden in ((50, 50), (20, 20)):
        model = random_neural(h=24, w=28, hidden=hidden)
        folder = save_model(model, tmp_path / f"n{hidden[0]}")
        assert psnr(openlime_neural(folder, LIGHT[:2]), relight(model, LIGHT)) > 40


def test_ptm_hsh_exports_evaluate_in_openlime_layout(tmp_path):
    normals, albedo, mask = relief_coin(48)
    dirs = hemisphere_directions(30, min_elevation_deg=15)
    mlic = MLIC(images=render(normals, albedo, dirs), directions=dirs, names=[str(i) for i in range(30)], mask=mask, folder=None)
    for kind, terms, cs in [("ptm", None, "rgb"), ("ptm", None, "lrgb"), ("hsh", 9, "rgb"), ("hsh", 16, "rgb")]:
        model = fit_linear(mlic, kind, terms, cs)
        folder = save_model(model, tmp_path / f"{kind}{terms}{cs}")
        assert psnr(openlime_rti(folder, LIGHT), relight(model, LIGHT)) > 40, (kind, terms, cs)
