"""Environment relighting from OLAT (one-light-at-a-time) images of a light stage.

A lat-long environment map (Blender's convention, :mod:`pnrelight.envmap`) is split into the
lights' spherical Voronoi cells (each texel belongs to its nearest light, which is exactly the
cell of :func:`pnrelight.lightstage.layouts.solid_angles`) and each light gets the map's
radiance integrated over its cell:

    w_i = sum over texels t in cell i of  L(t) * dOmega_t,   dOmega_t = sin(theta) dtheta dphi
    (exact per-texel solid angles, :func:`pnrelight.envmap.solid_angles`), in W/m^2 per channel.

Calibration (docs/lightstage.md): a sun of strength S W/m^2 gives an irradiance S cos(theta) on a
surface. A light of the stage standing for cell i with strength w_i gives w_i cos(theta_i), and
the cell itself gives integral over the cell of L cos(theta) dOmega ~ w_i cos(theta_i): the two
agree up to the variation of cos(theta) across the cell. So with OLAT frames rendered (or
captured) with a sun of strength 1 W/m^2 per light,

    relit = sum_i w_i * OLAT_i                       (:func:`compose`)

is the subject under the environment (light transport is linear). OLAT frames made with another
light (a sun of strength S, or a near-field point light of power P at distance r, irradiance
P / (4 pi r^2) at the subject centre) are converted by :func:`olat_multipliers`.

A uniform environment of radiance L gives weights summing to 4 pi L (2 pi L for a hemisphere
layout). Hemisphere layouts (a dome, no light below the horizon): the texels below the horizon
(texel centre y < 0) belong to no light and their radiance is dropped; the stage cannot
reproduce light from below (a ground bounce would need lights there), and folding it onto the
lowest lights would light the subject from the wrong side.

``yaw_deg`` turns the environment about +y, counter-clockwise seen from above (right-handed):
light that came from direction d then comes from ``rotation_y(yaw_deg) @ d``, i.e. the turned map
is E(rotation_y(-yaw) d) (at +90 degrees, light from +x comes from -z). In Blender that is a
Mapping node (type Point) with Z rotation -yaw in front of the Environment Texture (checked
against Cycles in tests/test_lightstage_layouts.py); it is the same sense as the avatar's
``rotation_deg``.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Iterable

import numpy as np

from ..envmap import as_latlong, downsample_latlong, latlong_directions, load_envmap, rotation_y
from ..envmap import solid_angles as texel_solid_angles
from ..errors import InputError
from .layouts import LightLayout, load_layout

# Maps are area-averaged to 128 x 256 (texels 1.4 deg; a 331-light cell, ~11 deg across, spans ~60 texels).
# With small bright lamps, 64 rows move ~17 % of the energy into neighbouring cells, 128 rows ~4-6 %
# (benchmarks/olat_env_bench.py); a cached map of 128 rows costs ~2 ms.
WORKING_HEIGHT = 128
_CACHE_SIZE = 32
_ASSIGNMENTS: OrderedDict = OrderedDict()  # (layout key, H, W, yaw) -> (texel -> light index or -1, texel solid angles)


def light_weights(env, layout, yaw_deg: float = 0.0, *, working_height: int | None = WORKING_HEIGHT) -> np.ndarray:
    """Per-light RGB weights (N, 3) float64: the map's radiance integrated over each light's Voronoi cell.

    env : (H, 2H, 3) linear radiance (lat-long, Blender's convention) or the path of an .exr/.hdr.
    layout : a :class:`~pnrelight.lightstage.layouts.LightLayout` or a :func:`load_layout` spec.
    yaw_deg : turns the environment about +y (see the module docstring for the sense).
    working_height : maps taller than this are first area-averaged to (working_height, 2 working_height),
    which keeps the integral of radiance; ``None`` keeps the full resolution.

    Weights are in W/m^2 (radiance x steradian): the strength of a sun standing for the cell
    (module docstring). The texel -> light assignment is cached per (layout, map size, yaw).
    """
    layout = load_layout(layout)
    if isinstance(env, (str, os.PathLike)):
        env = load_envmap(env)
    if working_height is not None and int(working_height) < 2:
        raise InputError(f"working_height {working_height} is too small (use at least 2 rows, e.g. 128)")
    env = np.asarray(env)
    if working_height is not None and env.ndim == 3 and env.shape[0] > working_height:
        env = downsample_latlong(env, int(working_height))  # validates and cleans the map too
    else:
        env = as_latlong(env)
    yaw = float(yaw_deg)
    if not np.isfinite(yaw):
        raise InputError(f"yaw_deg {yaw_deg} is not a finite angle (give degrees)")
    owner, omega = _assignment(layout, env.shape[0], env.shape[1], yaw % 360.0)
    n = len(layout)
    flux = env.reshape(-1, 3).astype(np.float64) * omega[:, None]
    if layout.hemisphere:  # texels below the horizon belong to no light
        keep = owner >= 0
        flux, owner = flux[keep], owner[keep]
    return np.stack([np.bincount(owner, weights=flux[:, c], minlength=n) for c in range(3)], axis=1)


def texel_owners(layout, height: int, width: int | None = None, yaw_deg: float = 0.0) -> np.ndarray:
    """(H, W) int: the light each texel of an (H, W) lat-long map belongs to (its nearest light after
    turning the map by ``yaw_deg``), -1 for texels below the horizon of a hemisphere layout."""
    layout = load_layout(layout)
    width = 2 * height if width is None else width
    owner, _ = _assignment(layout, int(height), int(width), float(yaw_deg) % 360.0)
    return owner.reshape(height, width)


def _assignment(layout: LightLayout, height: int, width: int, yaw: float) -> tuple[np.ndarray, np.ndarray]:
    from scipy.spatial import cKDTree

    key = (layout.directions.tobytes(), layout.hemisphere, height, width, yaw)
    hit = _ASSIGNMENTS.get(key)
    if hit is not None:
        _ASSIGNMENTS.move_to_end(key)
        return hit
    texels = latlong_directions(height, width).reshape(-1, 3)
    # Turning the map by +yaw is the same as turning the lights by -yaw over the fixed map.
    lights = layout.directions @ rotation_y(-yaw).T
    _, owner = cKDTree(lights).query(texels)  # nearest chord = nearest angle: the spherical Voronoi cell
    owner = owner.astype(np.int64)
    if layout.hemisphere:
        owner[texels[:, 1] < 0.0] = -1
    omega = texel_solid_angles(height, width).reshape(-1)
    owner.setflags(write=False)
    omega.setflags(write=False)
    _ASSIGNMENTS[key] = (owner, omega)
    while len(_ASSIGNMENTS) > _CACHE_SIZE:
        _ASSIGNMENTS.popitem(last=False)
    return owner, omega


def olat_multipliers(weights: np.ndarray, layout, *, olat_light: str = "sun", strength: float = 1.0) -> np.ndarray:
    """Per-frame multipliers (N, 3) for OLAT frames lit by something other than a sun of 1 W/m^2.

    olat_light ``"sun"``: each frame was lit by a sun of ``strength`` W/m^2 -> weights / strength.
    ``"point"``: by a point light of ``strength`` watts at the light's ``distance_m`` r_i, whose
    irradiance at the subject centre is strength / (4 pi r_i^2) -> weights * 4 pi r_i^2 / strength.
    """
    layout = load_layout(layout)
    w = _weights_array(weights, len(layout))
    if not (np.isfinite(strength) and strength > 0):
        raise InputError(f"OLAT light strength {strength} must be finite and > 0")
    if olat_light == "sun":
        return w / strength
    if olat_light == "point":
        return w * (4.0 * np.pi * layout.distance_m**2 / strength)[:, None]
    raise InputError(f"unknown OLAT light {olat_light!r} (use 'sun' or 'point')")


def compose(olat, weights) -> np.ndarray:
    """Weighted sum of OLAT frames: relit (H, W, C) float32 = sum_i weights[i] * olat[i].

    olat : (N, H, W, C) array (a ``np.load(..., mmap_mode="r")`` memmap works) or an iterable of
    N (H, W, C) / (H, W) frames, linear float radiance (each made with a sun of 1 W/m^2, see the
    module docstring). weights : (N, 3) per-channel (C = 3) or (N,) scalar weights. Frames are
    accumulated one at a time in float32, so memory stays at two frames whatever N is.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim not in (1, 2) or (w.ndim == 2 and w.shape[1] not in (1, 3)) or not np.all(np.isfinite(w)):
        raise InputError(f"weights have shape {w.shape} (or are not finite); give (N, 3) or (N,) finite numbers, one row per OLAT frame")
    n = len(w)
    total = None
    count = 0
    for frame in _frames(olat):
        if count >= n:
            raise InputError(f"more OLAT frames than the {n} weights (give one weight row per frame)")
        f = np.asarray(frame)
        if not np.issubdtype(f.dtype, np.floating):
            raise InputError(f"OLAT frame {count + 1} is {f.dtype}, not linear float radiance (convert, e.g. with imageio.read_image)")
        if total is None:
            if f.ndim not in (2, 3):
                raise InputError(f"OLAT frame 1 has shape {f.shape}, not (H, W) or (H, W, C)")
            shape = f.shape
            channels = shape[2] if f.ndim == 3 else 1
            if w.ndim == 2 and w.shape[1] == 3 and channels != 3:
                raise InputError(f"RGB weights (N, 3) need RGB frames, got frames of shape {shape} (give (N,) weights)")
            total = np.zeros(shape, dtype=np.float32)
            scratch = np.empty(shape, dtype=np.float32)
        elif f.shape != shape:
            raise InputError(f"OLAT frame {count + 1} has shape {f.shape}, frame 1 {shape} (all frames must match)")
        wi = w[count].astype(np.float32)
        np.multiply(f, wi if wi.ndim == 0 or f.ndim == 3 else wi[0], out=scratch, casting="unsafe")
        total += scratch
        count += 1
    if count != n:
        raise InputError(f"{count} OLAT frames for {n} weights (give one frame per light)")
    return total


def relight(olat, env, layout, yaw_deg: float = 0.0, **olat_light) -> np.ndarray:
    """OLAT frames relit by an environment map: compose(olat, olat_multipliers(light_weights(env, layout, yaw))).

    ``olat_light``: ``olat_light="sun"|"point"`` and ``strength`` of the OLAT frames' light (default a sun of 1 W/m^2).
    """
    layout = load_layout(layout)
    w = light_weights(env, layout, yaw_deg)
    if olat_light:
        w = olat_multipliers(w, layout, **olat_light)
    return compose(olat, w)


def _frames(olat) -> Iterable:
    if isinstance(olat, np.ndarray):
        if olat.ndim not in (3, 4):
            raise InputError(f"OLAT stack has shape {olat.shape}, not (N, H, W, C) or (N, H, W)")
        return (olat[i] for i in range(olat.shape[0]))
    try:
        return iter(olat)
    except TypeError:
        raise InputError(f"OLAT frames must be an (N, H, W, C) array or an iterable of frames, not {type(olat).__name__}") from None


def _weights_array(weights, n: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.shape not in ((n, 3), (n,)):
        raise InputError(f"weights have shape {w.shape}, not ({n}, 3) for {n} lights")
    return w if w.ndim == 2 else w[:, None]
