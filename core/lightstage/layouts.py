"""Light layouts of a virtual light stage: where the lights are and how much of the sphere each one stands for.

Frame and units (docs/lightstage.md): the core world frame (glTF's: +y up, the subject at the
origin faces +z), metres. A light's *direction* is the unit vector from the subject towards the
light; its *solid angle* is the area (steradians) of its spherical Voronoi cell, the part of the
sky it is nearest to, which is what the light stands in for when an environment is re-created by
the stage (:mod:`pnrelight.lightstage.envlight`). Cells cover the sphere (sum 4 pi) or, for a
*hemisphere* layout (all lights at y >= 0), the upper hemisphere only (sum 2 pi).

Near-field lights also have a distance from the subject (default :data:`DEFAULT_DISTANCE_M`,
1.5 m) and a size (diameter of the emitter, default :data:`DEFAULT_SIZE_M`, 0.1 m).

Presets (the exact light positions of these stages are not public here; each preset is a stated,
reproducible approximation with the right light count):

* ``"lightstage-x-331"``, ``"humanolat-331"``, ``"faceolat-331"``: 331 lights on the full sphere,
  a Fibonacci spiral (area-uniform, no two lights on a common latitude), the light count of
  stages used for the OLAT portrait and full-body datasets of those names.
* ``"156"``: after Light Stage 3 (156 lights on a geodesic sphere, Debevec et al. 2002): the
  162 vertices of a level-2 icosphere with a vertex straight up, less the 6 lowest (the nadir
  vertex and its ring, 74 degrees below the horizon, where the subject stands).
* ``"114"``: a hemispherical dome (a face-scanning / RTI dome shape) of 114 lights: a Fibonacci
  spiral on the upper hemisphere (area-uniform), a hemisphere layout.

Custom layouts: ``.lp`` files (RTI light positions, see :func:`layout_from_lp` for the frame
mapping) and JSON files (:func:`layout_from_json`). :func:`load_layout` takes any of these specs.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError

DEFAULT_DISTANCE_M = 1.5  # light to subject centre; a typical light stage radius (LS3: 1 m, larger domes 1.5-2 m)
DEFAULT_SIZE_M = 0.1  # emitter diameter: an LED cluster with its diffuser
DUPLICATE_TOL_RAD = 1e-6  # two lights closer than this are the same light (SphericalVoronoi's own tolerance)
EQUATOR_TOL = 1e-9  # |y| below this counts as on the horizon (a hemisphere layout may have lights there)
ICO_COUNTS = {10 * 4**level + 2: level for level in range(6)}  # 12, 42, 162, 642, 2562, 10242 vertices
MAX_ICO_LEVEL = 5

# name -> (description, builder); builders are defined at the end of the module
PRESET_NOTES = {
    "lightstage-x-331": "331 lights, full sphere: Fibonacci spiral (approximation; real positions not public)",
    "humanolat-331": "331 lights, full sphere: Fibonacci spiral (approximation; real positions not public)",
    "faceolat-331": "331 lights, full sphere: Fibonacci spiral (approximation; real positions not public)",
    "156": "156 lights after Light Stage 3: level-2 icosphere (162) less the 6 lowest vertices",
    "114": "114 lights, upper-hemisphere dome: Fibonacci spiral on y >= 0",
}


@dataclass(frozen=True, eq=False)
class LightLayout:
    """A light stage layout (world frame, metres).

    name : str; directions : (N, 3) float64 unit vectors subject -> light; solid_angles : (N,)
    float64 steradians (Voronoi cells; sum 4 pi, or 2 pi if ``hemisphere``); distance_m : (N,)
    float64 metres; size_m : (N,) float64 emitter diameters; hemisphere : bool, the cells are
    clipped to the upper hemisphere (y >= 0) and the stage has no light from below the horizon.
    """

    name: str
    directions: np.ndarray
    solid_angles: np.ndarray
    distance_m: np.ndarray
    size_m: np.ndarray
    hemisphere: bool = False
    notes: str = field(default="")

    def __len__(self) -> int:
        return len(self.directions)

    @property
    def positions(self) -> np.ndarray:
        """(N, 3) light positions in metres (direction x distance)."""
        return self.directions * self.distance_m[:, None]

    def to_dict(self) -> dict:
        """JSON-ready description (the format :func:`layout_from_json` reads, plus the solid angles)."""
        return {
            "name": self.name, "hemisphere": bool(self.hemisphere), "notes": self.notes, "frame": "world (y up, subject faces +z)",
            "lights": [{"direction": [round(float(v), 9) for v in d], "solid_angle_sr": float(w), "distance_m": float(r), "size_m": float(s)}
                       for d, w, r, s in zip(self.directions, self.solid_angles, self.distance_m, self.size_m)],
        }


def make_layout(name: str, directions, *, hemisphere: bool = False, distance_m=DEFAULT_DISTANCE_M,
                size_m=DEFAULT_SIZE_M, notes: str = "") -> LightLayout:
    """A :class:`LightLayout` from directions (N, 3) (normalised here); computes the solid angles.

    distance_m, size_m : scalar or (N,). Raises InputError for zero/non-finite/duplicate directions,
    or for lights below the horizon in a hemisphere layout.
    """
    dirs = _unit_directions(directions, what=f"layout {name!r}")
    n = len(dirs)
    dist = _per_light(distance_m, n, "distance_m", name)
    size = _per_light(size_m, n, "size_m", name)
    omega = solid_angles(dirs, hemisphere=hemisphere)
    for arr in (dirs, omega, dist, size):
        arr.setflags(write=False)
    return LightLayout(name=name, directions=dirs, solid_angles=omega, distance_m=dist, size_m=size,
                       hemisphere=bool(hemisphere), notes=notes)


# ----------------------------------------------------------------------------- Blender's frame

# Blender's world is (x, -z, y) of the core's (glTF's) world: +Z up, the subject facing -Y.
BLENDER_FROM_CORE = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def to_blender(vectors) -> np.ndarray:
    """Core world vectors (..., 3) (+y up, the subject faces +z) in Blender's world: (x, y, z) -> (x, -z, y)."""
    v = np.asarray(vectors, dtype=np.float64)
    return np.stack([v[..., 0], -v[..., 2], v[..., 1]], axis=-1)


def node_tree(idblock, *, clear: bool = False):
    """The shader node tree of a Blender material or world (``idblock``), made where Blender < 5 has
    none yet; ``clear`` empties it. No bpy import: the caller's Blender object is used as it is."""
    if idblock.node_tree is None:  # Blender 4 makes materials and worlds without nodes
        idblock.use_nodes = True
    if clear:
        idblock.node_tree.nodes.clear()
    return idblock.node_tree


def from_blender(vectors) -> np.ndarray:
    """Blender world vectors (..., 3) in the core's world: (X, Y, Z) -> (X, Z, -Y) (inverse of :func:`to_blender`)."""
    v = np.asarray(vectors, dtype=np.float64)
    return np.stack([v[..., 0], v[..., 2], -v[..., 1]], axis=-1)


def pose_from_blender(matrix) -> np.ndarray:
    """A 4x4 object-to-world matrix of Blender's world as one of the core's world. A Blender camera's
    own axes are OpenGL's (it looks down its -Z, +Y up), so a camera's matrix becomes the core's
    camera-to-world ``pose``."""
    m = np.asarray(matrix, dtype=np.float64)
    out = m.copy()
    out[:3, :] = BLENDER_FROM_CORE.T @ m[:3, :]
    return out


def pose_to_blender(pose) -> np.ndarray:
    """A 4x4 object-to-world matrix of the core's world as one of Blender's world (inverse of
    :func:`pose_from_blender`): a core camera-to-world ``pose`` becomes a Blender camera's matrix_world."""
    m = np.asarray(pose, dtype=np.float64)
    out = m.copy()
    out[:3, :] = BLENDER_FROM_CORE @ m[:3, :]
    return out


# ----------------------------------------------------------------------------- generators


def fibonacci_sphere(n: int, *, hemisphere: bool = False) -> np.ndarray:
    """``n`` area-uniform directions on the sphere (or the upper hemisphere, y >= 0), (n, 3) float64.

    The Fibonacci spiral: equal-area latitude bands y_k = 1 - (k + 1/2) / n (times 2 on the
    sphere), one light per band, successive azimuths a golden angle apart. +y is up.
    """
    n = _count(n, "Fibonacci light count")
    k = np.arange(n) + 0.5
    y = 1.0 - k / n if hemisphere else 1.0 - 2.0 * k / n
    r = np.sqrt(np.clip(1.0 - y * y, 0.0, None))
    phi = math.pi * (3.0 - math.sqrt(5.0)) * k
    return np.stack([r * np.cos(phi), y, r * np.sin(phi)], axis=1)


def icosphere(level: int) -> np.ndarray:
    """Vertices of an icosahedron subdivided ``level`` times (each edge halved, then pushed to the sphere).

    Returns (10 * 4**level + 2, 3) float64 unit directions: 12, 42, 162, 642 for levels 0-3 (Blender's
    Ico Sphere with "Subdivisions" = level + 1). One vertex is straight up (+y) and one straight down;
    from level 1 on, a ring of vertices lies exactly on the horizon.
    """
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 0 <= level <= MAX_ICO_LEVEL:
        raise InputError(f"icosphere level {level!r} is not an integer in 0..{MAX_ICO_LEVEL} (12 to 10242 lights)")
    # Pole-up icosahedron: the poles, and two rings of 5 at elevation +-atan(1/2), offset by 36 degrees.
    ring = math.atan(0.5)
    az = np.radians(72.0 * np.arange(5))
    upper = np.stack([np.cos(ring) * np.cos(az), np.full(5, np.sin(ring)), np.cos(ring) * np.sin(az)], axis=1)
    lower = np.stack([np.cos(ring) * np.cos(az + np.pi / 5), np.full(5, -np.sin(ring)), np.cos(ring) * np.sin(az + np.pi / 5)], axis=1)
    verts = np.vstack([[0.0, 1.0, 0.0], upper, lower, [0.0, -1.0, 0.0]])
    faces = []
    for i in range(5):
        a, b = 1 + i, 1 + (i + 1) % 5  # upper ring
        c, d = 6 + i, 6 + (i + 1) % 5  # lower ring (c sits between a and b in azimuth)
        faces += [(0, a, b), (a, c, b), (b, c, d), (c, 11, d)]
    faces = np.array(faces)
    for _ in range(int(level)):
        verts, faces = _subdivide(verts, faces)
    return verts


def _subdivide(verts: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split every triangle into four at its edge midpoints (projected onto the sphere)."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    unique, inverse = np.unique(edges, axis=0, return_inverse=True)
    mid = verts[unique[:, 0]] + verts[unique[:, 1]]
    mid /= np.linalg.norm(mid, axis=1, keepdims=True)
    m = len(verts) + inverse.reshape(3, -1)  # midpoint index of edge (0,1), (1,2), (2,0) of each face
    a, b, c = faces.T
    new = np.concatenate([np.stack([a, m[0], m[2]], 1), np.stack([m[0], b, m[1]], 1),
                          np.stack([m[2], m[1], c], 1), np.stack([m[0], m[1], m[2]], 1)])
    return np.vstack([verts, mid]), new


def upper_hemisphere(layout: LightLayout, min_elevation_deg: float = 0.0, *, name: str | None = None) -> LightLayout:
    """The lights of ``layout`` at or above ``min_elevation_deg`` (elevation above the horizon, y up),
    as a hemisphere layout: the cells are recomputed and clipped at the horizon (they sum to 2 pi)."""
    if not np.isfinite(min_elevation_deg) or not 0.0 <= min_elevation_deg < 90.0:
        raise InputError(f"min_elevation_deg {min_elevation_deg} is not in [0, 90) (lights below the horizon cannot be in a hemisphere layout)")
    elevation = np.degrees(np.arcsin(np.clip(layout.directions[:, 1], -1.0, 1.0)))
    keep = elevation >= min_elevation_deg - 1e-9
    if keep.sum() < 3:
        raise InputError(f"only {int(keep.sum())} lights of {layout.name} are at or above {min_elevation_deg} degrees (lower min_elevation_deg)")
    dirs = layout.directions[keep].copy()
    dirs[np.abs(dirs[:, 1]) < EQUATOR_TOL, 1] = 0.0
    suffix = "upper" if min_elevation_deg == 0 else f"upper{min_elevation_deg:g}"
    return make_layout(name or f"{layout.name}-{suffix}", dirs, hemisphere=True, distance_m=layout.distance_m[keep],
                       size_m=layout.size_m[keep], notes=f"{layout.notes}; lights at elevation >= {min_elevation_deg:g} deg".lstrip("; "))


# ----------------------------------------------------------------------------- Voronoi cells


def solid_angles(directions, hemisphere: bool = False) -> np.ndarray:
    """Solid angle (sr) of each light's spherical Voronoi cell, (N,) float64.

    directions : (N, 3), normalised here. The cells partition the sphere and sum to 4 pi. With
    ``hemisphere`` (every light at y >= 0) the cells are clipped to the upper hemisphere and sum
    to 2 pi: the lights are mirrored below the horizon (y -> -y), the cells of the symmetric set are
    computed on the sphere, and each light keeps its own cell, which then lies above the horizon
    (a light on the horizon is its own mirror and keeps the upper half of its cell).
    Raises InputError for zero, non-finite or duplicate directions, lights below the horizon in a
    hemisphere layout, and sets whose cells are degenerate (e.g. all lights on one great circle).
    """
    dirs = _unit_directions(directions)
    n = len(dirs)
    _check_duplicates(dirs)
    if hemisphere:
        below = np.flatnonzero(dirs[:, 1] < -EQUATOR_TOL)
        if below.size:
            raise InputError(f"light {int(below[0]) + 1} is below the horizon (y = {dirs[below[0], 1]:.3g}) in a hemisphere layout "
                             "(drop it, e.g. with upper_hemisphere(), or make a full-sphere layout)")
        dirs = dirs.copy()
        on_equator = np.abs(dirs[:, 1]) <= EQUATOR_TOL
        dirs[on_equator, 1] = 0.0
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        # A light just above the horizon and its mirror would be near-duplicates: it is on the horizon.
        near = ~on_equator & (dirs[:, 1] < DUPLICATE_TOL_RAD)
        if near.any():
            raise InputError(f"light {int(np.flatnonzero(near)[0]) + 1} is within {DUPLICATE_TOL_RAD:g} rad of the horizon "
                             "(put it on the horizon, y = 0, or higher)")
        mirrored = dirs[~on_equator] * np.array([1.0, -1.0, 1.0])
        points = np.vstack([dirs, mirrored])
    else:
        points = dirs
    if n == 1 and not hemisphere:
        return np.array([4.0 * math.pi])
    try:
        from scipy.spatial import SphericalVoronoi
    except ImportError:  # Blender's Python has no scipy: the same cells, clipped one by one
        SphericalVoronoi = None
    try:
        if SphericalVoronoi is None:
            areas = _voronoi_areas(points, n)
        else:
            areas = SphericalVoronoi(points, radius=1.0, center=np.zeros(3), threshold=1e-9).calculate_areas()
    except Exception as exc:  # noqa: BLE001 - qhull/scipy errors on degenerate input
        raise InputError(f"the {n} light directions do not make spherical Voronoi cells ({_first_line(exc)}); "
                         "use at least 4 lights not all on one great circle") from None
    areas = np.asarray(areas[:n], dtype=np.float64)
    if hemisphere:
        areas[on_equator] *= 0.5
    total = 2.0 * math.pi if hemisphere else 4.0 * math.pi
    if not np.all(areas > 0) or abs(areas.sum() - total) > 1e-6 * total:
        raise InputError(f"the {n} light directions give degenerate Voronoi cells (sum {areas.sum():.6g} sr, not {total:.6g}); "
                         "spread the lights over the sphere")
    return areas


# ----------------------------------------------------------------------------- presets and files


def preset(name: str) -> LightLayout:
    """A named preset layout (see the module docstring): one of :data:`PRESET_NOTES`."""
    key = str(name).strip().lower()
    if key not in PRESET_NOTES:
        raise InputError(f"unknown light stage preset {name!r} (choose one of {', '.join(PRESET_NOTES)})")
    if key.endswith("-331"):
        return make_layout(key, fibonacci_sphere(331), notes=PRESET_NOTES[key])
    if key == "156":
        verts = icosphere(2)
        order = np.argsort(verts[:, 1], kind="stable")
        return make_layout(key, np.delete(verts, order[:6], axis=0), notes=PRESET_NOTES[key])
    return make_layout(key, fibonacci_sphere(114, hemisphere=True), hemisphere=True, notes=PRESET_NOTES[key])


def layout_from_lp(path: str | os.PathLike, *, frame: str = "dome", hemisphere: bool | None = None) -> LightLayout:
    """A layout from an RTI ``.lp`` file (light directions in the RTI camera's image frame, see pnrelight.lights).

    ``frame="dome"`` (default): the capture camera looks straight down from the top of the dome, so
    the .lp's +z (towards the camera) is world up; (lx, ly, lz) -> (x, y, z) = (lx, lz, -ly): image
    right = +x, image up = -z (away from the subject's front), a proper rotation. ``frame="camera"``:
    the RTI camera is the stage's frontal camera (on +z looking at the face), the identity mapping.
    ``hemisphere`` defaults to "all lights at y >= 0" (true for a dome).
    """
    from ..formats.lp import read_lp

    lp = read_lp(path)
    d = lp.directions
    if frame == "dome":
        dirs = np.stack([d[:, 0], d[:, 2], -d[:, 1]], axis=1)
    elif frame == "camera":
        dirs = d.copy()
    else:
        raise InputError(f"unknown .lp frame {frame!r} (use 'dome' or 'camera')")
    hemi = bool(np.all(dirs[:, 1] >= -EQUATOR_TOL)) if hemisphere is None else hemisphere
    try:
        return make_layout(Path(path).stem, dirs, hemisphere=hemi, notes=f"from {Path(path).name} ({frame} frame)")
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def layout_from_json(path: str | os.PathLike) -> LightLayout:
    """A layout from a JSON file, world frame (y up, subject faces +z), metres::

        {"name": "my stage", "hemisphere": false,             (both optional)
         "lights": [{"direction": [x, y, z]},                  (unit or not; distance = default)
                    {"position": [x, y, z], "size_m": 0.2},    (metres from the subject: direction and distance)
                    {"direction": [...], "distance_m": 2.0}]}

    ``hemisphere`` defaults to "all lights at y >= 0". Raises InputError naming the bad light.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"light layout not found: {path} (give an existing .json or .lp file)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON ({_first_line(exc)}); write {{\"lights\": [{{\"direction\": [x, y, z]}}, ...]}}") from None
    lights = data.get("lights") if isinstance(data, dict) else None
    if not isinstance(lights, list) or not lights:
        raise InputError(f"{path} has no lights (write {{\"lights\": [{{\"direction\": [x, y, z]}}, ...]}})")
    dirs, dist, size = [], [], []
    for k, light in enumerate(lights, start=1):
        if not isinstance(light, dict) or ("direction" in light) == ("position" in light):
            raise InputError(f"{path}: light {k} needs exactly one of \"direction\" or \"position\" (three numbers)")
        key = "direction" if "direction" in light else "position"
        vec = _three_numbers(light[key], f"{path}: light {k} {key}")
        norm = float(np.linalg.norm(vec))
        if norm < 1e-9:
            raise InputError(f"{path}: light {k} {key} is a zero vector (give a non-zero x y z)")
        dirs.append(vec / norm)
        r = norm if key == "position" else light.get("distance_m", DEFAULT_DISTANCE_M)
        dist.append(_positive(r, f"{path}: light {k} distance"))
        size.append(_positive(light.get("size_m", DEFAULT_SIZE_M), f"{path}: light {k} size_m"))
    dirs = np.asarray(dirs)
    hemi = data.get("hemisphere")
    hemi = bool(np.all(dirs[:, 1] >= -EQUATOR_TOL)) if hemi is None else bool(hemi)
    try:
        return make_layout(str(data.get("name") or path.stem), dirs, hemisphere=hemi, distance_m=np.asarray(dist),
                           size_m=np.asarray(size), notes=f"from {path.name}")
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def load_layout(spec) -> LightLayout:
    """A layout from a spec: a :class:`LightLayout` (returned as is); a preset name (``"331"`` style
    names of :data:`PRESET_NOTES`); an int n or a digit string that is no preset name (``"200"``):
    a Fibonacci sphere of n lights; ``"fibonacci:n"``; ``"ico:N"`` with N in 12, 42, 162, 642, 2562
    (icosphere vertices); or the path of a ``.lp`` / ``.json`` file."""
    if isinstance(spec, LightLayout):
        return spec
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        return make_layout(f"fibonacci-{int(spec)}", fibonacci_sphere(int(spec)), notes="Fibonacci sphere")
    if isinstance(spec, os.PathLike):
        return _layout_from_file(Path(spec))
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"light layout {spec!r} is not a preset, a count, 'ico:N' or a .lp/.json path")
    text = spec.strip()
    key = text.lower()
    if key in PRESET_NOTES:
        return preset(key)
    if key.isdigit():
        return make_layout(f"fibonacci-{int(key)}", fibonacci_sphere(int(key)), notes="Fibonacci sphere")
    if key.startswith(("fibonacci:", "fib:")):
        count = key.split(":", 1)[1]
        if not count.isdigit():
            raise InputError(f"light layout {spec!r}: {count!r} is not a light count (write e.g. fibonacci:200)")
        return make_layout(f"fibonacci-{int(count)}", fibonacci_sphere(int(count)), notes="Fibonacci sphere")
    if key.startswith(("ico:", "icosphere:")):
        count = key.split(":", 1)[1]
        if not count.isdigit() or int(count) not in ICO_COUNTS:
            raise InputError(f"light layout {spec!r}: an icosphere has {', '.join(map(str, ICO_COUNTS))} vertices (write e.g. ico:162)")
        level = ICO_COUNTS[int(count)]
        return make_layout(f"ico-{count}", icosphere(level), notes=f"icosphere level {level}")
    path = Path(text)
    if path.suffix.lower() in (".lp", ".json") or path.exists():
        return _layout_from_file(path)
    raise InputError(f"unknown light layout {spec!r} (a preset: {', '.join(PRESET_NOTES)}; a count; 'ico:162'; or a .lp/.json file)")


def _layout_from_file(path: Path) -> LightLayout:
    suffix = path.suffix.lower()
    if suffix == ".lp":
        return layout_from_lp(path)
    if suffix == ".json":
        return layout_from_json(path)
    raise InputError(f"light layout file {path} is neither .lp nor .json (give an RTI .lp or a JSON layout)")


# ----------------------------------------------------------------------------- picture


def layout_picture(layouts, path: str | os.PathLike, *, size: int = 220) -> Path:
    """PNG of one layout or a list of layouts (one row each): the light sphere seen from the front
    (from +z: x right, y up) and from the top (from +y: x right, the front +z down), lights coloured
    by solid angle (one colour scale per row, legend in sr). Lights on the far side are drawn
    small and dim. PIL only. Returns the path written.
    """
    from PIL import Image, ImageDraw

    from ..atomic import atomic_output_file

    if isinstance(layouts, LightLayout):
        layouts = [layouts]
    layouts = [load_layout(x) for x in layouts]
    font = _font(13)
    pad, head, bar_w = 10, 22, 150
    row_h = size + head + pad
    width = 2 * size + bar_w + 4 * pad
    img = Image.new("RGB", (width, row_h * len(layouts) + pad), "white")
    draw = ImageDraw.Draw(img)
    for row, layout in enumerate(layouts):
        y0 = row * row_h + pad
        omega = layout.solid_angles
        lo, hi = float(omega.min()), float(omega.max())
        t = (omega - lo) / (hi - lo) if hi > lo * (1 + 1e-9) else np.full(len(omega), 0.5)
        colours = _colour_ramp(t)
        kind = "upper hemisphere" if layout.hemisphere else "sphere"
        draw.text((pad, y0), f"{layout.name} ({len(layout)} lights, {kind})", fill="black", font=font)
        # front view: screen x = world x, screen up = world y, towards the viewer = +z
        # top view: screen x = world x, screen up = world -z, towards the viewer = +y
        views = ((layout.directions[:, 0], layout.directions[:, 1], layout.directions[:, 2], "front"),
                 (layout.directions[:, 0], -layout.directions[:, 2], layout.directions[:, 1], "top"))
        for k, (sx, sy, depth, label) in enumerate(views):
            cx = pad + k * (size + pad) + size / 2
            cy = y0 + head + size / 2
            radius = size / 2 - 6
            draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), outline=(150, 150, 150), fill=(246, 246, 246))
            draw.text((cx - radius, cy + radius - 12), label, fill=(90, 90, 90), font=font)
            # about a third of the spacing of N lights (N / 2 of them on the visible disc)
            dot = max(1.5, min(7.0, 0.32 * radius * math.sqrt(2.0 * math.pi / max(len(layout), 1))))
            for i in np.argsort(depth, kind="stable"):  # far side first, near side on top
                px, py = cx + radius * sx[i], cy - radius * sy[i]
                if depth[i] < 0:
                    c = tuple(int(0.35 * v + 0.65 * 235) for v in colours[i])
                    r = 0.6 * dot
                else:
                    c, r = colours[i], dot
                draw.ellipse((px - r, py - r, px + r, py + r), fill=c)
        # colour bar
        bx = 2 * size + 3 * pad
        by = y0 + head + 20
        steps = size - 60
        for j in range(steps):
            c = _colour_ramp(np.array([1.0 - j / (steps - 1)]))[0]
            draw.line((bx, by + j, bx + 16, by + j), fill=c)
        draw.text((bx, by - 18), "cell solid angle", fill="black", font=font)
        draw.text((bx + 22, by - 4), f"{hi:.4f} sr", fill="black", font=font)
        draw.text((bx + 22, by + steps - 10), f"{lo:.4f} sr", fill="black", font=font)
        draw.text((bx, by + steps + 6), f"sum {omega.sum() / math.pi:.4f} pi", fill="black", font=font)
    path = Path(path)
    with atomic_output_file(path) as tmp:
        img.save(tmp, format="PNG")
    return path


def _colour_ramp(t: np.ndarray) -> list[tuple[int, int, int]]:
    """Dark blue -> teal -> yellow (perceptually ordered, readable on white) for t in [0, 1]."""
    anchors = np.array([[38, 30, 120], [33, 120, 170], [40, 170, 120], [150, 200, 50], [250, 210, 30]], dtype=np.float64)
    x = np.clip(np.asarray(t, dtype=np.float64), 0.0, 1.0) * (len(anchors) - 1)
    i = np.minimum(np.floor(x).astype(int), len(anchors) - 2)
    f = (x - i)[:, None]
    rgb = anchors[i] * (1 - f) + anchors[i + 1] * f
    return [tuple(int(round(v)) for v in c) for c in rgb]


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


# ----------------------------------------------------------------------------- validation helpers


def _unit_directions(directions, *, what: str = "light") -> np.ndarray:
    try:
        dirs = np.asarray(directions, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{what} directions are not numbers (give an (N, 3) array of x y z)") from None
    if dirs.ndim != 2 or dirs.shape[1] != 3 or len(dirs) == 0:
        raise InputError(f"{what} directions have shape {dirs.shape}, not (N, 3) with N >= 1 (give one x y z per light)")
    bad = np.flatnonzero(~np.isfinite(dirs).all(axis=1))
    if bad.size:
        raise InputError(f"{what} direction {int(bad[0]) + 1} is not finite ({dirs[bad[0]].tolist()}; give three finite numbers)")
    norms = np.linalg.norm(dirs, axis=1)
    zero = np.flatnonzero(norms < 1e-9)
    if zero.size:
        raise InputError(f"{what} direction {int(zero[0]) + 1} is a zero vector (give a non-zero x y z)")
    return dirs / norms[:, None]


def _check_duplicates(dirs: np.ndarray) -> None:
    try:
        from scipy.spatial import cKDTree
    except ImportError:  # no scipy (Blender): chord lengths in blocks of rows
        pairs = []
        for start in range(0, len(dirs), 1024):
            chord2 = 2.0 - 2.0 * (dirs[start:start + 1024] @ dirs.T)
            i, j = np.nonzero(chord2 < DUPLICATE_TOL_RAD**2)
            keep = start + i < j
            if keep.any():
                pairs = [(start + int(i[keep][0]), int(j[keep][0]))]
                break
    else:
        pairs = cKDTree(dirs).query_pairs(DUPLICATE_TOL_RAD, output_type="ndarray")
    if len(pairs):
        i, j = sorted(int(v) + 1 for v in pairs[0])
        raise InputError(f"lights {i} and {j} have the same direction (remove one of them)")


def _voronoi_areas(points: np.ndarray, count: int) -> np.ndarray:
    """Spherical Voronoi cell areas of the first ``count`` unit ``points``, without scipy.

    The sphere is split into the six faces of a cube (seen from the centre); on each face a cell is
    the face cut by the bisecting great circles with the other points, nearest first, until the
    next bisector lies beyond the cell (the bisector with point j lies half their angle from p; the
    cell reaches no further than its farthest vertex). A cell that stays inside its own face needs
    no other face. Area: a fan of spherical triangles (Van Oosterom & Strackee's formula).
    """
    if len(points) < 4 or np.linalg.matrix_rank(points, tol=1e-9) < 3:
        raise ValueError("fewer than 4 points, or all on one great circle")
    areas = np.zeros(count)
    for i in range(count):
        p = points[i]
        cos_ij = points @ p
        order = np.argsort(-cos_ij, kind="stable")[1:]
        axis = int(np.argmax(np.abs(p)))
        own = 2 * axis + (p[axis] < 0)
        for face in [own] + [f for f in range(6) if f != own]:
            part, on_face_edge = _clip_face(face, p, points, order, cos_ij)
            areas[i] += _polygon_area(part)
            if face == own and not on_face_edge:
                break  # the whole cell lies on its own face
    return areas


def _clip_face(face: int, p, points, order, cos_ij):
    """The part of p's cell on a cube face (face = 2 * axis + (1 if the face is at -axis)), as unit
    vertices in order, and whether it touches the face's edge.

    The polygon is kept as its edges' great-circle planes (normals pointing inside); each vertex is
    the cross product of its two edges' normals (on the face's side), so vertices stay exact.
    """
    axis, sign = face // 2, (-1.0 if face % 2 else 1.0)
    c, a1, a2 = (np.eye(3)[(axis + k) % 3] for k in range(3))
    c = sign * c
    edges = [c - a2, c + a1, c + a2, c - a1]  # |x . a1| <= x . c and |x . a2| <= x . c
    face_edge = [True] * 4
    verts = _vertices(edges, c)
    for j in order:
        if np.arccos(np.clip(cos_ij[j], -1.0, 1.0)) > 2.0 * np.arccos(np.clip(verts @ p, -1.0, 1.0)).max() + 1e-12:
            break  # this bisector, and every later one, lies beyond the cell
        n = p - points[j]  # keep the side nearer to p: x . n >= 0
        inside = verts @ n >= 0
        if inside.all():
            continue
        new_edges, new_face_edge = [], []
        for k in range(len(edges)):  # edge k runs from vertex k to vertex k + 1
            start, end = inside[k], inside[(k + 1) % len(edges)]
            if start or end:
                new_edges.append(edges[k])
                new_face_edge.append(face_edge[k])
            if start and not end:
                new_edges.append(n)
                new_face_edge.append(False)
        # a bisector along an edge (symmetric layouts) makes two edges on one plane: keep one
        unit = [e / np.linalg.norm(e) for e in new_edges]
        keep = [k for k in range(len(unit)) if unit[k] @ unit[k - 1] < 1.0 - 1e-12]
        if len(keep) < 3:
            return np.zeros((0, 3)), False
        edges, face_edge = [new_edges[k] for k in keep], [new_face_edge[k] for k in keep]
        verts = _vertices(edges, c)
        if not np.isfinite(verts).all():  # opposite edges met: nothing of the face is left
            return np.zeros((0, 3)), False
    return verts, any(face_edge)


def _vertices(edges, side) -> np.ndarray:
    """Vertex k of a spherical polygon given by its edges' plane normals: on edges k - 1 and k, on
    the hemisphere around ``side``."""
    normals = np.array(edges)
    x = np.cross(np.roll(normals, 1, axis=0), normals)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x * np.sign(x @ side)[:, None]


def _polygon_area(poly: np.ndarray) -> float:
    """Area of a convex spherical polygon (unit vertices in order, within a cube face): a fan from
    its normalised vertex mean."""
    if len(poly) < 3:
        return 0.0
    c = poly.sum(axis=0)
    c /= np.linalg.norm(c)
    a, b = poly, np.roll(poly, -1, axis=0)
    triple = np.abs(np.einsum("ij,ij->i", a, np.cross(b, c)))
    return float(2.0 * np.arctan2(triple, 1.0 + a @ c + b @ c + np.einsum("ij,ij->i", a, b)).sum())


def _per_light(value, n: int, what: str, name: str) -> np.ndarray:
    arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)).copy() if np.ndim(value) == 0 else np.asarray(value, dtype=np.float64)
    if arr.shape != (n,):
        raise InputError(f"layout {name!r}: {what} has {arr.size} values for {n} lights (give one value or one per light)")
    if not np.all(np.isfinite(arr) & (arr > 0)):
        raise InputError(f"layout {name!r}: {what} must be finite and > 0 metres")
    return arr


def _three_numbers(value, what: str) -> np.ndarray:
    try:
        vec = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        vec = None
    if vec is None or vec.shape != (3,):
        raise InputError(f"{what} is {value!r}, not three numbers [x, y, z]")
    if not np.all(np.isfinite(vec)):
        raise InputError(f"{what} {value!r} is not finite (give three finite numbers)")
    return vec


def _positive(value, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} {value!r} is not a number (give metres)") from None
    if not (math.isfinite(v) and v > 0):
        raise InputError(f"{what} {value!r} must be finite and > 0 (metres)")
    return v


def _count(n, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"{what} {n!r} is not a positive integer")
    return int(n)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__
