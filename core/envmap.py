"""HDR environment maps in lat-long layout: loading, sampling, SH projection, Phong prefiltering.

Directions are in the core world frame (docs/lightstage.md): glTF's, x right, y up, the
subject faces +z (the camera frame of the avatar code, whose camera looks down -z from +z).

Lat-long convention = Blender's / Cycles' (``direction_to_equirectangular``), so a map means
here what it means as a Blender world texture. A map of shape (H, W, 3), W = 2 H, row 0 at the
top (as stored in the file), holds the radiance arriving *from* direction d = (x, y, z). With
Blender's direction D = (X, Y, Z) = (x, -z, y):

* u = 0.5 - atan2(Y, X) / (2 pi) = 0.5 + atan2(z, x) / (2 pi), in [0, 1) left to right;
* Blender's v = 0.5 + asin(Z) / pi runs bottom to top; our row coordinate t = 1 - v = theta / pi
  (theta = arccos(y), the polar angle from +y): the top row is straight up, the bottom row down.

Inverse: with phi = 2 pi u, d = (-cos(phi) sin(theta), cos(theta), -sin(phi) sin(theta)).
Landmarks: the image centre (u = 0.5) is +x (Blender +X), u = 0.25 is -z (Blender +Y, behind
the subject), u = 0.75 is +z (in front of the subject, where the avatar's camera is), the
left/right edges (u = 0, 1) are -x. Texel (i, j) has its centre at u = (j + 0.5) / W,
t = (i + 0.5) / H. Verified against Cycles renders in tests/test_lightstage_layouts.py.

Rotations about the vertical: :func:`rotation_y` (a) is the right-handed rotation by a about
+y (counter-clockwise seen from above), the same as Blender's rotation by a about +Z.

Spherical harmonics are the real order-2 basis (9 functions, orthonormal on the
sphere) evaluated directly on world-frame (x, y, z); see :func:`sh_basis`.
Everything here is numpy only (no torch).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import InputError
from .paths import ASSETS_DIR

ENVMAP_DIR = ASSETS_DIR / "envmaps"
ENVMAP_SUFFIXES = {".exr", ".hdr"}
PHONG_EXPONENTS = (1, 16, 32, 64)  # PN-Relighting §4.1.4

# Cosine-lobe convolution factors A_l / pi for SH bands 0, 1, 2 (Ramamoorthi & Hanrahan 2001):
# irradiance / pi = sum_lm (A_l / pi) L_lm Y_lm.
SH_COSINE_BAND_FACTORS = np.array([1.0, 2.0 / 3.0, 0.25])
SH_BAND_OF_COEFF = np.array([0, 1, 1, 1, 2, 2, 2, 2, 2])


# ----------------------------------------------------------------------------- loading


def load_envmap(path: str | os.PathLike, *, strict: bool = False) -> np.ndarray:
    """Read a lat-long HDR environment map (OpenEXR or Radiance .hdr).

    Returns (H, W, 3) float32 linear radiance, W = 2 H, negatives clamped to 0,
    non-finite values set to 0. Raises InputError for a missing/unreadable file
    or a map that is not 2:1; with ``strict`` also for negative or non-finite radiance
    (a broken map is refused instead of silently repaired).
    """
    from .imageio import _read_radiance_hdr, read_exr

    path = Path(path)
    if not path.is_file():
        raise InputError(f"environment map not found: {path} (give the path of a lat-long .exr or .hdr file)")
    suffix = path.suffix.lower()
    if suffix not in ENVMAP_SUFFIXES:
        raise InputError(f"environment map {path} is not .exr or .hdr (convert it to a lat-long OpenEXR or Radiance HDR)")
    try:
        env = read_exr(path) if suffix == ".exr" else _read_radiance_hdr(path)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure is bad input
        raise InputError(f"cannot read environment map {path}: {exc} (is it a valid {suffix} file?)") from None
    env = np.asarray(env, dtype=np.float32)
    if env.ndim == 2:
        env = np.repeat(env[..., None], 3, axis=2)
    if env.ndim != 3 or env.shape[2] < 3:
        raise InputError(f"environment map {path} has shape {env.shape}, not an RGB image (give an RGB lat-long map)")
    env = env[..., :3]
    if strict and not np.isfinite(env).all():
        raise InputError(f"environment map {path} contains NaN or infinite radiance (fix or re-export the map)")
    if strict and (env < 0).any():
        raise InputError(f"environment map {path} has negative radiance (clip it to >= 0 or re-export the map)")
    return as_latlong(env, what=str(path))


def as_latlong(env: np.ndarray, *, what: str = "environment map") -> np.ndarray:
    """Validate an in-memory lat-long map: (H, W, 3), W = 2 H; returns a clean float32 copy."""
    env = np.asarray(env, dtype=np.float32)
    if env.ndim != 3 or env.shape[2] != 3 or env.shape[1] != 2 * env.shape[0] or env.shape[0] < 2:
        raise InputError(f"{what} has shape {env.shape}, not a 2:1 lat-long map (width must be twice the height)")
    env = np.nan_to_num(env, nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(env, 0.0, None).astype(np.float32)


def default_envmaps() -> list[Path]:
    """The shipped environment maps (small CC0 studio lights, see assets/envmaps/LICENSE.md), sorted by name."""
    return sorted(p for p in ENVMAP_DIR.glob("*.exr") if p.is_file())


def envmap_path(spec: str | os.PathLike) -> Path:
    """The file of an environment map given as a path, or as the name of a shipped map ("sunset")."""
    path = Path(spec)
    if path.is_file() or path.suffix:
        return path
    shipped = {p.stem: p for p in default_envmaps()}
    if str(spec) in shipped:
        return shipped[str(spec)]
    raise InputError(f"environment map {str(spec)!r} is neither a file nor a shipped map (shipped: {', '.join(sorted(shipped))})")


# ----------------------------------------------------------------------------- geometry


def latlong_directions(height: int, width: int | None = None) -> np.ndarray:
    """Unit direction of each texel centre, (H, W, 3) float64 (see the module docstring)."""
    width = 2 * height if width is None else width
    theta = np.pi * (np.arange(height) + 0.5) / height
    phi = 2.0 * np.pi * (np.arange(width) + 0.5) / width
    st, ct = np.sin(theta)[:, None], np.cos(theta)[:, None]
    sp, cp = np.sin(phi)[None, :], np.cos(phi)[None, :]
    return np.stack(np.broadcast_arrays(-cp * st, ct + 0 * sp, -sp * st), axis=-1)


def directions_to_uv(dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lat-long (u, t) in [0, 1] of unit directions (..., 3): u left to right, t = theta / pi top to bottom
    (Blender's v is 1 - t); inverse of :func:`latlong_directions`."""
    dirs = np.asarray(dirs, dtype=np.float64)
    theta = np.arccos(np.clip(dirs[..., 1], -1.0, 1.0))
    return _azimuth_u(dirs[..., 0], dirs[..., 2]), theta / np.pi


def _azimuth_u(x, z):
    """Column coordinate u in [0, 1) of the world-frame azimuth (x, z): Cycles' 0.5 - atan2(Y, X) / (2 pi), Y = -z."""
    return np.mod(0.5 + np.arctan2(z, x) / (2.0 * np.pi), 1.0)


def solid_angles(height: int, width: int | None = None) -> np.ndarray:
    """Exact solid angle of each lat-long texel, (H, W) float64; sums to 4 pi."""
    width = 2 * height if width is None else width
    edges = np.pi * np.arange(height + 1) / height
    band = np.cos(edges[:-1]) - np.cos(edges[1:])  # integral of sin(theta) over the row
    return np.repeat((band * 2.0 * np.pi / width)[:, None], width, axis=1)


def rotation_y(angle_deg: float) -> np.ndarray:
    """3x3 rotation by ``angle_deg`` counter-clockwise about +y (seen from above), right-handed.

    Blender's rotation by the same angle about its +Z. Applied to directions (``d @ R.T``): at 90
    degrees +x goes to -z and +z to +x. A map turned by a has radiance E(rotation_y(-a) d) at d.
    """
    a = np.radians(angle_deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def sample_latlong(env: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Bilinear lookup of a lat-long map (H, W, C) in directions (..., 3) -> (..., C) float32.

    Wraps around in azimuth, clamps at the poles. Directions need not be unit length.
    """
    env = np.asarray(env, dtype=np.float32)
    return latlong_lookup(dirs, env.shape[0], env.shape[1])(env)


def latlong_lookup(dirs: np.ndarray, height: int, width: int):
    """Precompute bilinear taps for directions (..., 3) on an (height, width) lat-long grid.

    Returns a function env (height, width, C) -> (..., C) float32, so several maps of the
    same size (e.g. Phong lobes) are sampled at the cost of the gathers only.
    """
    dirs = np.asarray(dirs, dtype=np.float32)
    shape = dirs.shape[:-1]
    d = dirs.reshape(-1, 3)
    norm = np.sqrt(np.einsum("ij,ij->i", d, d))
    d = d / np.maximum(norm, 1e-12)[:, None]
    x = _azimuth_u(d[:, 0], d[:, 2]) * width - 0.5
    y = np.clip(np.arccos(np.clip(d[:, 1], -1.0, 1.0)) / np.pi * height - 0.5, 0.0, height - 1.0)
    x0 = np.floor(x).astype(np.int64)
    y0 = np.minimum(np.floor(y).astype(np.int64), max(height - 2, 0))
    fx = (x - x0).astype(np.float32)[:, None]
    fy = (y - y0).astype(np.float32)[:, None]
    x0 %= width
    x1 = (x0 + 1) % width
    y1 = np.minimum(y0 + 1, height - 1)
    taps = (y0 * width + x0, y0 * width + x1, y1 * width + x0, y1 * width + x1)
    weights = ((1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy)

    def sample(env: np.ndarray) -> np.ndarray:
        flat = np.asarray(env, dtype=np.float32).reshape(height * width, -1)
        out = flat[taps[0]] * weights[0]
        for tap, weight in zip(taps[1:], weights[1:]):
            out += flat[tap] * weight
        return out.reshape(shape + (flat.shape[1],))

    return sample


def downsample_latlong(env: np.ndarray, height: int) -> np.ndarray:
    """Area-average a lat-long map to (height, 2 height, 3), conserving the integral of radiance.

    Each output texel is the solid-angle-weighted mean of the source texels it covers;
    ``env.shape[0]`` must be a multiple of ``height``. Upsampling is not done here.
    """
    env = as_latlong(env)
    h = env.shape[0]
    if height >= h:
        return env.copy()
    if h % height:
        # Resample to the next multiple first (nearest rows/cols), rarely needed.
        f = int(np.ceil(h / height))
        rows = np.minimum((np.arange(height * f) + 0.5) * h / (height * f), h - 1).astype(int)
        cols = np.minimum((np.arange(2 * height * f) + 0.5) * h / (height * f), 2 * h - 1).astype(int)
        env = env[rows][:, cols]
        h = env.shape[0]
    f = h // height
    # A texel's solid angle depends on its row only: a weighted sum of each band of f rows (one
    # batched matrix-vector product over the whole map), then plain sums of f columns.
    edges = np.pi * np.arange(h + 1) / h
    band = (np.cos(edges[:-1]) - np.cos(edges[1:])).reshape(height, f)
    rows = np.matmul(band.astype(np.float32)[:, None, :], env.reshape(height, f, -1))  # (height, 1, W * 3)
    num = rows.reshape(height, 2 * height, f, 3).sum(axis=2)
    return (num / (f * band.sum(axis=1))[:, None, None]).astype(np.float32)


# ----------------------------------------------------------------------------- spherical harmonics


def sh_basis(normals: np.ndarray) -> np.ndarray:
    """Real, orthonormal order-2 spherical harmonics of unit vectors (..., 3) -> (..., 9).

    Order: Y00; Y1-1 ~ y, Y10 ~ z, Y11 ~ x; Y2-2 ~ xy, Y2-1 ~ yz, Y20 ~ 3z^2-1, Y21 ~ xz, Y22 ~ x^2-y^2,
    with (x, y, z) in the world frame (the avatar's camera frame).
    """
    n = np.asarray(normals, dtype=np.float64)
    x, y, z = n[..., 0], n[..., 1], n[..., 2]
    c0, c1, c2, c3, c4 = 0.28209479177387814, 0.4886025119029199, 1.0925484305920792, 0.31539156525252005, 0.5462742152960396
    return np.stack(
        [
            np.full_like(x, c0),
            c1 * y,
            c1 * z,
            c1 * x,
            c2 * x * y,
            c2 * y * z,
            c3 * (3.0 * z * z - 1.0),
            c2 * x * z,
            c4 * (x * x - y * y),
        ],
        axis=-1,
    )


def render_sh(normals: np.ndarray, sh_coeffs: np.ndarray) -> np.ndarray:
    """Evaluate an SH function (9, C) at unit normals (..., 3) -> (..., C) float32."""
    return (sh_basis(normals) @ np.asarray(sh_coeffs, dtype=np.float64)).astype(np.float32)


def envmap_to_sh(env: np.ndarray) -> np.ndarray:
    """Project a lat-long radiance map onto order-2 SH: (9, 3) with L(d) ~ sum_k c_k Y_k(d)."""
    env = as_latlong(env)
    # Quadrature on a 128-row grid: area-average larger maps, replicate texels of smaller ones
    # (exact for piecewise-constant radiance), so a constant map has no spurious band-2 terms.
    if env.shape[0] > 128:
        env = downsample_latlong(env, 128)
    elif env.shape[0] < 128:
        f = -(-128 // env.shape[0])
        env = np.repeat(np.repeat(env, f, axis=0), f, axis=1)
    h = env.shape[0]
    basis = sh_basis(latlong_directions(h)).reshape(-1, 9)
    weighted = (env.reshape(-1, 3) * solid_angles(h).reshape(-1, 1)).astype(np.float64)
    return basis.T @ weighted


def sh_radiance_to_shading(sh_radiance: np.ndarray) -> np.ndarray:
    """Convolve SH radiance (9, C) with the clamped cosine lobe / pi.

    The result, evaluated with :func:`render_sh` at a normal, is irradiance / pi: the
    diffuse shading that multiplies albedo (same quantity as Phong exponent 1 prefiltering).
    """
    return np.asarray(sh_radiance, dtype=np.float64) * SH_COSINE_BAND_FACTORS[SH_BAND_OF_COEFF][:, None]


def sh_shading_to_radiance(sh_shading: np.ndarray) -> np.ndarray:
    """Inverse of :func:`sh_radiance_to_shading`: the band-limited radiance behind a shading SH."""
    return np.asarray(sh_shading, dtype=np.float64) / SH_COSINE_BAND_FACTORS[SH_BAND_OF_COEFF][:, None]


# ----------------------------------------------------------------------------- Phong prefiltering


def phong_lobe_weights(out_dirs: np.ndarray, src_dirs: np.ndarray, src_solid_angles: np.ndarray, exponent: float) -> np.ndarray:
    """Normalised Phong lobe quadrature weights (N_out, N_src): (n+1)/(2 pi) max(0, cos)^n dOmega.

    Rows integrate the lobe over the sphere; for a fine enough source grid each row sums to ~1.
    """
    cos = np.clip(out_dirs @ src_dirs.T, 0.0, None)
    if float(exponent).is_integer() and exponent >= 1:
        lobe = _integer_power(cos, int(exponent))  # repeated squaring: much faster than pow()
    else:
        lobe = cos**exponent
    lobe *= ((exponent + 1.0) / (2.0 * np.pi)) * src_solid_angles[None, :]
    return lobe


def _integer_power(x: np.ndarray, k: int) -> np.ndarray:
    result = None
    base = x
    while k:
        if k & 1:
            result = base.copy() if result is None else result * base
        k >>= 1
        if k:
            base = base * base
    return result


def prefilter_phong(env: np.ndarray, exponent: float, out_height: int = 32, *, source_height: int | None = None) -> np.ndarray:
    """Convolve a lat-long radiance map with the normalised Phong lobe (n+1)/(2 pi) max(0, cos)^n.

    env : (H, 2H, 3) radiance. Returns (out_height, 2 out_height, 3) float32: the value at
    direction r is the lobe-weighted mean radiance around r. Exponent 1 is the cosine lobe,
    i.e. irradiance / pi (diffuse shading). The convolution runs on an area-averaged copy of
    the map, 64 x 128 unless ``source_height`` is given; each lobe's discrete weights are
    renormalised to sum to 1, so a constant map stays constant.

    The lobe depends on azimuth only through the azimuth difference, so each (output row,
    source row) pair is a circular correlation along the columns, done with FFTs: ~10 ms
    per lobe. Output widths that divide (or are multiples of) the source width are exact
    quadrature; others are interpolated along azimuth.
    """
    env = as_latlong(env)
    if exponent < 0:
        raise ValueError("Phong exponent must be >= 0")
    if source_height is None:
        source_height = 64
    src = downsample_latlong(env, min(source_height, env.shape[0])).astype(np.float64)
    out_w = 2 * out_height
    if out_w > src.shape[1] and out_w % src.shape[1] == 0:  # replicate columns (exact for texel-constant radiance)
        src = np.repeat(src, out_w // src.shape[1], axis=1)
    sh, sw = src.shape[:2]
    step = sw // out_w if sw % out_w == 0 else 0  # output column j sits at source column step*j + shift
    shift = (step - 1) / 2.0 if step else 0.0
    theta_s = np.pi * (np.arange(sh) + 0.5) / sh
    theta_o = np.pi * (np.arange(out_height) + 0.5) / out_height
    delta = 2.0 * np.pi * (np.arange(sw) - shift) / sw  # azimuth of source column j' + l minus the output's
    cos = (np.cos(theta_o)[:, None, None] * np.cos(theta_s)[None, :, None]
           + np.sin(theta_o)[:, None, None] * np.sin(theta_s)[None, :, None] * np.cos(delta)[None, None, :])
    cos = np.clip(cos, 0.0, None)
    lobe = _integer_power(cos, int(exponent)) if float(exponent).is_integer() and exponent >= 1 else cos**exponent
    lobe *= solid_angles(sh, sw)[None, :, :1]  # (out_h, src_h, src_w); the lobe constant cancels
    norm = lobe.sum(axis=(1, 2))
    # R[o, j'] = sum_s sum_l lobe[o, s, l] src[s, j' + l]: a circular cross-correlation per row pair
    spectrum = np.einsum("osf,sfc->ofc", np.conj(np.fft.rfft(lobe, axis=2)), np.fft.rfft(src, axis=1))
    rows = np.fft.irfft(spectrum, n=sw, axis=1) / np.maximum(norm, 1e-300)[:, None, None]  # (out_h, src_w, 3)
    if step:
        out = rows[:, ::step]
    else:  # widths not commensurate: interpolate along azimuth (periodic)
        x = (np.arange(out_w) + 0.5) * sw / out_w - 0.5
        x0 = np.floor(x).astype(int)
        f = (x - x0)[None, :, None]
        out = rows[:, x0 % sw] * (1 - f) + rows[:, (x0 + 1) % sw] * f
    return np.clip(out, 0.0, None).astype(np.float32)
