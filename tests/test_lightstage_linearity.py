"""Issue #14 linearity: a head relit from its OLAT frames equals the direct render under the same sampled
environment (all the layout's suns on at once, each at its cell's weight), and comes close to the direct
render of the full map (the map cut into 512 suns, independent of the layout)."""
from __future__ import annotations

import math

import numpy as np


def _psnr(a, b, mask):
    peak = float(b[mask].max())
    mse = float(((a - b)[mask] ** 2).mean())
    return 10 * math.log10(peak * peak / max(mse, 1e-30))


def test_relit_from_olat_equals_direct_render():
    from pnrelight.avatar.face_model import load_ict_face_model
    from pnrelight.avatar.render import framing, orbit_pose
    from pnrelight.envmap import default_envmaps, load_envmap
    from pnrelight.lightstage.envlight import compose, light_weights
    from pnrelight.lightstage.layouts import load_layout
    from pnrelight.lightstage.render import prepare_view, render_environment, render_lights, render_olat_set, sun_light

    m = load_ict_face_model()
    mesh = {"vertices": m.vertices, "triangles": m.triangles, "albedo": (0.6, 0.45, 0.4), "specular": 0.03, "roughness": 0.45}
    centre, dist = framing(m.vertices, 30.0)
    size = 96
    f = (size / 2) / math.tan(math.radians(15))
    g = prepare_view(mesh, orbit_pose(centre, dist, 20.0, 5.0), np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]]), size)
    env = load_envmap([p for p in default_envmaps() if p.stem == "sunset"][0])
    layout = load_layout("ico:162")
    w = light_weights(env, layout)
    relit = compose(render_olat_set(g, [sun_light(d, 1.0) for d in layout.directions]), w)
    direct = render_lights(g, [sun_light(d, s) for d, s in zip(layout.directions, w)])
    assert _psnr(relit, direct, g.mask) >= 40.0  # linear: the same picture up to float rounding (measured 143 dB)
    full = render_environment(g, env)
    assert _psnr(relit, full, g.mask) >= 35.0  # 162 cells against 512 independent suns: measured 39.9 dB
