"""A layout's lights placed around a subject, with calibrated strengths (docs/lightstage.md).

The rig is the layout scaled to a radius R: light i sits at ``direction_i * distance_i * k`` from
the stage centre with an emitter ``size_i * k`` wide, k = R / median(distance). Every light is set
so that the stage centre gets the same irradiance, ``strength`` W/m^2, from it: a frame of any
light type is then calibrated like one lit by a sun of that strength (frames of suns of 1 W/m^2
compose with :func:`pnrelight.lightstage.envlight.compose` as they are):

* sun: strength S W/m^2 (irradiance S on a surface facing it);
* point: power P = S * 4 pi r^2 W (radiant intensity P / (4 pi) W/sr, irradiance P / (4 pi r^2));
* area (a disk facing the centre, one-sided Lambertian): P = S * pi r^2 W (radiant intensity along
  its axis P / pi W/sr); exact in the far field, the disk's size changes it by ~(size / 2r)^2.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .layouts import LightLayout, load_layout

FIT_FACTOR = 3.0  # an automatic radius puts the lights at 3 bounding-sphere radii from the centre
LIGHT_TYPES = ("sun", "point", "area")

CALIBRATION = {
    "sun": "sun of strength S W/m^2: irradiance S on a surface facing it (a white Lambertian surface renders S/pi); "
           "frames are linear radiance W/(m^2 sr)",
    "point": "point light of power P W at distance r: radiant intensity P/(4 pi) W/sr, irradiance P/(4 pi r^2) at the "
             "stage centre; P = S * 4 pi r^2 gives the centre S W/m^2, like a sun of strength S",
    "area": "disk area light of power P W facing the centre at distance r (one-sided Lambertian): radiant intensity "
            "P/pi W/sr along its axis, irradiance P/(pi r^2) at the centre; P = S * pi r^2 gives the centre S W/m^2",
}


@dataclass(frozen=True, eq=False)
class Rig:
    """Lights placed at a radius (core world frame, metres, relative to the stage centre).

    positions (N, 3); distance_m (N,); size_m (N,) emitter diameters; energy (N,) the light's
    strength in ``unit`` (W/m^2 for suns, W for point and area lights); angle_rad (N,) the
    emitter's angular diameter seen from the centre (a sun's angle).
    """

    layout: LightLayout
    light_type: str
    strength: float
    radius_m: float
    positions: np.ndarray
    distance_m: np.ndarray
    size_m: np.ndarray
    energy: np.ndarray
    angle_rad: np.ndarray

    @property
    def unit(self) -> str:
        return "W/m^2" if self.light_type == "sun" else "W"

    @property
    def calibration(self) -> str:
        return CALIBRATION[self.light_type]


def rig_radius(layout, bounding_radius: float = 0.0, radius: float = 0.0) -> float:
    """The rig's radius: ``radius`` if > 0; else FIT_FACTOR times the subject's bounding-sphere
    radius if > 0; else the layout's own (median) light distance."""
    layout = load_layout(layout)
    for value, what in ((radius, "radius"), (bounding_radius, "bounding radius")):
        if not (math.isfinite(value) and value >= 0):
            raise InputError(f"light stage {what} {value!r} must be finite and >= 0 metres")
    if radius > 0:
        return float(radius)
    if bounding_radius > 0:
        return FIT_FACTOR * float(bounding_radius)
    return float(np.median(layout.distance_m))


def calibrated_strength(light_type: str, distance_m: float, irradiance: float = 1.0) -> tuple[float, str]:
    """(strength, unit) of a ``light_type`` light at ``distance_m`` that gives the stage centre ``irradiance``
    W/m^2 (the module docstring): a sun's strength is the irradiance; a point light's power is
    irradiance x 4 pi r^2 W; an area light's (a Lambertian disk facing the centre) irradiance x pi r^2 W."""
    if light_type == "sun":
        return float(irradiance), "W/m^2"
    if light_type == "point":
        return float(irradiance) * 4.0 * math.pi * float(distance_m) ** 2, "W"
    if light_type == "area":
        return float(irradiance) * math.pi * float(distance_m) ** 2, "W"
    raise InputError(f"unknown light type {light_type!r} (use one of {', '.join(LIGHT_TYPES)})")


def place_lights(layout, radius: float, light_type: str = "sun", strength: float = 1.0) -> Rig:
    """The layout's lights at ``radius`` (see the module docstring), each giving the centre
    ``strength`` W/m^2."""
    layout = load_layout(layout)
    if light_type not in LIGHT_TYPES:
        raise InputError(f"unknown light type {light_type!r} (use one of {', '.join(LIGHT_TYPES)})")
    if not (math.isfinite(radius) and radius > 0):
        raise InputError(f"light stage radius {radius!r} must be finite and > 0 metres")
    if not (math.isfinite(strength) and strength > 0):
        raise InputError(f"light strength {strength!r} must be finite and > 0 W/m^2")
    k = radius / float(np.median(layout.distance_m))
    distance = layout.distance_m * k
    size = layout.size_m * k
    energy = np.array([calibrated_strength(light_type, r, strength)[0] for r in distance], dtype=np.float64)
    return Rig(layout=layout, light_type=light_type, strength=float(strength), radius_m=float(radius),
               positions=layout.directions * distance[:, None], distance_m=distance, size_m=size, energy=energy,
               angle_rad=2.0 * np.arctan(size / (2.0 * distance)))
