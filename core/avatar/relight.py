"""Relighting with HDR environment maps through Phong priors (PN-Relighting §4.1.4), numpy only.

The environment (lat-long radiance, conventions in :mod:`pnrelight.envmap`) is prefiltered
with normalised Phong lobes of exponents 1, 16, 32 and 64. Exponent 1 looked up at the
normal n is the diffuse shading (irradiance / pi); the higher exponents looked up at the
mirror direction r = 2 (n . v) n - v are glossy reflections. Then, in linear light,

    image = albedo * E_1(n) + specular * sum_k w_k E_k(r)

with ``specular`` the per-pixel specular reflectance (``intrinsics.specular_map``) and
w_k the lobe weights (default :data:`DEFAULT_SPECULAR_WEIGHTS`, summing to 1).
Normals (H, W, 3) are unit vectors in the camera frame; zero normals mark background.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from ..envmap import PHONG_EXPONENTS, as_latlong, latlong_lookup, load_envmap, prefilter_phong_set, rotation_y

# Skin: mostly a broad sheen, a little sharp shine (with more weight on 32/64 the lamps of a studio map
# print as mirror images on the forehead and the face reads as metal).
DEFAULT_SPECULAR_WEIGHTS = {1: 0.0, 16: 0.7, 32: 0.2, 64: 0.1}
HIGHLIGHT_KNEE = 0.8  # tone_map_highlights: linear values below this are kept as they are
VIEW_DIR = (0.0, 0.0, 1.0)  # towards the viewer of an orthographic-ish face crop


def reflect(view_dir, normals: np.ndarray) -> np.ndarray:
    """Mirror direction r = 2 (n . v) n - v for unit normals (..., 3) and view direction(s) (3,) or (..., 3)."""
    n = np.asarray(normals, dtype=np.float32)
    v = np.broadcast_to(np.asarray(view_dir, dtype=np.float32), n.shape)
    v = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
    return 2.0 * np.sum(n * v, axis=-1, keepdims=True) * n - v


def _background(normals: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.asarray(normals, dtype=np.float32), axis=-1) < 0.5


def phong_priors(normals: np.ndarray, env, view_dir=VIEW_DIR, *, rotation_deg: float = 0.0) -> dict[int, np.ndarray]:
    """The four Phong prior images {1, 16, 32, 64: (H, W, 3) float32}, as in the paper's figure.

    Exponent 1: diffuse shading E_1(n); exponents 16/32/64: E_k at the mirror direction of
    ``view_dir``. ``env`` is a lat-long map, a path to one, or an already prefiltered dict
    {exponent: lat-long}. ``rotation_deg`` turns the environment about +y. Background
    (zero normals) is 0.
    """
    pre = _prefiltered(env)
    normals = np.asarray(normals, dtype=np.float32)
    rot_inv = rotation_y(-rotation_deg).astype(np.float32)  # look up the un-rotated map
    back = _background(normals)
    n_env = normals @ rot_inv.T
    r_env = reflect(view_dir, normals) @ rot_inv.T
    priors = {}
    lookups = {}  # one set of bilinear taps per (direction set, map size)
    for exponent, latlong in pre.items():
        key = ("n" if exponent == 1 else "r", latlong.shape[:2])
        if key not in lookups:
            lookups[key] = latlong_lookup(n_env if exponent == 1 else r_env, *latlong.shape[:2])
        img = lookups[key](latlong)
        img[back] = 0.0
        priors[int(exponent)] = img
    return priors


def shade_phong(
    albedo: np.ndarray,
    normals: np.ndarray,
    specular: np.ndarray,
    env_prefiltered: dict,
    view_dir=VIEW_DIR,
    specular_exponent_weights: dict | None = None,
    *,
    rotation_deg: float = 0.0,
) -> np.ndarray:
    """Linear radiance (H, W, 3) = albedo * E_1(n) + specular * sum_k w_k E_k(reflect(v, n)).

    albedo : (H, W, 3) linear in [0, 1]; normals : (H, W, 3) unit (zero = background, rendered 0);
    specular : (H, W) or scalar specular reflectance; env_prefiltered : {exponent: lat-long}
    from :func:`pnrelight.envmap.prefilter_phong_set` (must contain 1 and every weighted exponent).
    """
    weights = DEFAULT_SPECULAR_WEIGHTS if specular_exponent_weights is None else specular_exponent_weights
    needed = {1} | {int(k) for k, w in weights.items() if w}
    missing = needed - {int(k) for k in env_prefiltered}
    if missing:
        raise ValueError(f"prefiltered environment lacks exponents {sorted(missing)}")
    priors = phong_priors(normals, {k: env_prefiltered[k] for k in needed}, view_dir, rotation_deg=rotation_deg)
    albedo = np.asarray(albedo, dtype=np.float32)
    spec = np.asarray(specular, dtype=np.float32)
    if spec.ndim == 2:
        spec = spec[..., None]
    glossy = sum(np.float32(w) * priors[int(k)] for k, w in weights.items() if w)
    out = albedo * priors[1] + spec * glossy if np.ndim(glossy) else albedo * priors[1]
    out[_background(normals)] = 0.0
    return out.astype(np.float32)


def relight_with_envmap(
    albedo: np.ndarray,
    normals: np.ndarray,
    specular: np.ndarray,
    env_path_or_array,
    rotation_deg: float = 0.0,
    *,
    view_dir=VIEW_DIR,
    specular_exponent_weights: dict | None = None,
    out_height: int = 32,
) -> np.ndarray:
    """Relight albedo/normals/specular under an environment map (path, (H, 2H, 3) array, or prefiltered dict).

    ``rotation_deg`` turns the environment about the vertical (+y) axis. Returns linear (H, W, 3) float32;
    encode with ``pnrelight.avatar.color.linear_to_srgb`` (after any exposure scaling) for display.
    """
    pre = _prefiltered(env_path_or_array, out_height)
    return shade_phong(albedo, normals, specular, pre, view_dir, specular_exponent_weights, rotation_deg=rotation_deg)


def _prefiltered(env, out_height: int = 32) -> dict[int, np.ndarray]:
    if isinstance(env, dict):
        return {int(k): np.asarray(v, dtype=np.float32) for k, v in env.items()}
    if isinstance(env, (str, os.PathLike)):
        path = Path(env)
        stamp = path.stat().st_mtime_ns if path.is_file() else -1
        return _prefiltered_file(str(path.resolve()), stamp, out_height)
    return prefilter_phong_set(as_latlong(env), PHONG_EXPONENTS, out_height)


@functools.lru_cache(maxsize=16)
def _prefiltered_file(path: str, stamp: int, out_height: int) -> dict[int, np.ndarray]:
    """Prefiltering costs ~0.5 s per map: keep the last few (keyed by path and modification time)."""
    pre = prefilter_phong_set(load_envmap(path), PHONG_EXPONENTS, out_height)
    for latlong in pre.values():
        latlong.setflags(write=False)
    return pre


def tone_map_highlights(linear: np.ndarray, knee: float = HIGHLIGHT_KNEE) -> np.ndarray:
    """Soft shoulder for display: linear (..., 3) -> (..., 3) in [0, 1].

    Below ``knee`` (largest channel) colours are unchanged; above it the largest channel m is
    compressed to knee + (1 - knee) (1 - exp(-(m - knee) / (1 - knee))) (continuous slope 1 at the
    knee, approaching 1) and the other channels are scaled by the same factor, so highlights keep
    their hue instead of clipping to flat white or shifting colour channel by channel.
    """
    x = np.clip(np.asarray(linear, dtype=np.float32), 0.0, None)
    peak = x.max(axis=-1, keepdims=True)
    width = np.float32(1.0 - knee)
    squeezed = knee + width * (1.0 - np.exp(-(peak - knee) / width))
    scale = np.where(peak > knee, squeezed / np.maximum(peak, 1e-12), 1.0)
    return (x * scale).astype(np.float32)
