"""Light-stage ground truth for portrait relighting: synthetic heads photographed under known light.

A held-out synthetic person (``lightstage.subjects.generate_subjects``: identity, expression, skin
tone and specular level the fit never saw) is traced by the project's renderer from a frontal
camera (camera frame = world frame, so a map lights the head as it lights the relit photo) and
shaded under an environment map or a sun with shadows. Exposure: each light is scaled so the
face's camera-facing pixels get a mean diffuse shading of ``pipeline.RELIGHT_MEAN_SHADING``, the
rule ``portrait_relight`` follows too (a photo's absolute exposure is unknown), so the renders
under A and B compare pixel for pixel. Used by tests/test_portrait_relight.py and
benchmarks/relight_synthetic.py.
"""
from __future__ import annotations

import numpy as np

BACKGROUND_SRGB = 0.35  # a plain grey behind the head
SIDE_LIGHT = (0.8, 0.2, 0.55)  # camera frame: a hard sun from the photo's right, a little above and in front


def synthetic_portrait(params: dict, size: int = 256, texture_size: int = 512) -> dict:
    """The subject as a checked mesh and its frontal view: {"mesh", "gbuf", "pose", "K", "vertices"}."""
    from pnrelight.lightstage.subjects import portrait_view

    return portrait_view(params, size, texture_size=texture_size)


def exposed(gbuf, lights: list[dict]) -> list[dict]:
    """``lights`` scaled to the relighting exposure rule (mean diffuse shading RELIGHT_MEAN_SHADING)."""
    from pnrelight.avatar.pipeline import relight_exposure

    s = relight_exposure(gbuf, lights)
    return [dict(lt, strength=np.asarray(lt.get("strength", 1.0), dtype=np.float64) * s) for lt in lights]


def env_suns(env: np.ndarray, rotate_deg: float = 0.0, rows: int = 16) -> list[dict]:
    from pnrelight.avatar.portrait_relight import environment_lights

    return environment_lights(env, rotate_deg, rows)


def render(gbuf, lights: list[dict], shadows: bool = True) -> np.ndarray:
    """(H, W, 3) linear radiance of the exposed lights (0 off the head)."""
    from pnrelight.lightstage.render import render_lights

    return render_lights(gbuf, exposed(gbuf, lights), shadows=shadows, threads=2)


def photo(gbuf, linear: np.ndarray) -> np.ndarray:
    """The render as an sRGB photo (clipped at 1) over the grey background."""
    from pnrelight.avatar.color import linear_to_srgb

    img = linear_to_srgb(np.clip(linear, 0.0, 1.0))
    return np.where(gbuf.mask[..., None], img, np.float32(BACKGROUND_SRGB)).astype(np.float32)


def shadow_case(light, size: int = 384, seed: int = 4242, params: dict | None = None):
    """A held-out synthetic head (``params``, or subject 0 of ``seed``) photographed under a soft map (interior,
    turned 30 degrees), its fitted head, and the light stage's renders under one hard sun ``light`` (camera frame)
    with and without shadows (exposed like the relit photo)."""
    from pnrelight.avatar import portrait_relight as pr
    from pnrelight.envmap import ENVMAP_DIR, load_envmap
    from pnrelight.lightstage.render import render_lights
    from pnrelight.lightstage.subjects import generate_subjects, head_model, synthetic_mesh

    params = generate_subjects(1, seed=seed)[0] if params is None else params
    g = synthetic_portrait(params, size)["gbuf"]
    image = photo(g, render(g, env_suns(load_envmap(ENVMAP_DIR / "interior.exr"), 30.0)))
    sun = pr.directional_light(light)
    lit = exposed(g, sun)
    truth = render_lights(g, lit, shadows=True)
    flat = render_lights(g, lit, shadows=False)
    head = pr.fit_photo_head(image)
    model = head_model()
    tip = model.landmark_points(synthetic_mesh(params, model)[0])[1]  # mediapipe landmark 1: the nose tip
    return {"gbuf": g, "photo": image, "truth": truth, "flat": flat, "head": head, "sun": sun, "tip": tip}


def _cast_shadow(image, unshadowed, region):
    """Pixels of ``region`` that ``image`` renders below 0.4 x the same render without shadow rays: cast shadows."""
    from pnrelight.avatar.intrinsics import luminance

    return region & (luminance(image) < 0.4 * luminance(unshadowed))


def nose_shadows(case):
    """(truth, ours, region) cast-shadow masks around the nose: the light stage's render against the relit photo."""
    from pnrelight.avatar import portrait_relight as pr

    g = case["gbuf"]
    ours = pr.relight_photo(case["head"], case["sun"], keep_background=True)["linear"]
    ours_flat = pr.relight_photo(case["head"], case["sun"], keep_background=True, shadows=False)["linear"]
    pos = g.image(g.position)
    tip = case["tip"]
    # Around the nose: within 4 cm of its tip across the face, on the front, lit (facing the sun) in both renders.
    region = g.mask & (np.hypot(pos[..., 0] - tip[0], pos[..., 1] - tip[1] + 0.01) < 0.04) & (pos[..., 2] > tip[2] - 0.06)
    lit = lambda img: img.mean(-1) > 0.05 * np.percentile(img[g.mask].mean(-1), 95)  # noqa: E731 - not the highlights' peak
    region &= lit(case["flat"]) & lit(ours_flat)
    return _cast_shadow(case["truth"], case["flat"], region), _cast_shadow(ours, ours_flat, region), region


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))
