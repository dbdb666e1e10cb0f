"""The OLAT dataset format (docs/lightstage.md, "Dataset format", schema version 1) as small
pure-Python functions: frame paths, dataset.json, lights.json, transforms.json, manifest.jsonl
(append, verify, resume) and the preview grid. No bpy here: the render loop is in lightstage.py.
Paths, checksums and the schema version are the core's (``pnrelight.lightstage.dataset``); what is
here is the Blender generator's own records (Blender camera intrinsics, its dataset.json, its manifest rows).
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from pnrelight.atomic import atomic_output_file
from pnrelight.lightstage import dataset as ds
from pnrelight.lightstage.dataset import (  # noqa: F401 - the add-on's dataset paths are the core's
    MANIFEST, PASS_KINDS, SCHEMA_VERSION, light_digits, olat_relpath, pass_relpath, sha256_file)

PASS_FILES = {kind: pass_relpath("s", 0, kind).rsplit("/", 1)[1] for kind in PASS_KINDS}  # file name of each pass
FINGERPRINT_PARTS = ("layout", "lights", "cameras", "image_size", "samples", "subject")


def subject_id(name: str) -> str:
    """A folder-safe subject id from an object name ("subject" when nothing is left)."""
    return ds.safe_id(name, "subject")




def intrinsics(*, lens_mm: float, sensor_width_mm: float, sensor_height_mm: float, sensor_fit: str,
               width: int, height: int, shift_x: float = 0.0, shift_y: float = 0.0) -> dict:
    """Pinhole intrinsics in pixels (u right, v down) of a Blender perspective camera.

    The sensor size fits the image width (HORIZONTAL; AUTO when the image is wider than tall, with
    the sensor width) or height; lens shift is in units of the larger image side.
    """
    fit = sensor_fit if sensor_fit != "AUTO" else ("HORIZONTAL" if width >= height else "VERTICAL")
    sensor = sensor_height_mm if sensor_fit == "VERTICAL" else sensor_width_mm
    f = lens_mm / sensor * (width if fit == "HORIZONTAL" else height)
    big = max(width, height)
    cx, cy = width / 2.0 - shift_x * big, height / 2.0 + shift_y * big
    return {"camera_angle_x": 2.0 * math.atan(width / (2.0 * f)), "camera_angle_y": 2.0 * math.atan(height / (2.0 * f)),
            "fl_x": f, "fl_y": f, "cx": cx, "cy": cy, "w": int(width), "h": int(height),
            "K": [[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]]}


def dataset_json(*, generator_version: str, layout: dict, renderer: dict, calibration: dict, seeds: list,
                 image_size: list, cameras: dict, subjects: list, fingerprint: dict, envs: list = ()) -> dict:
    """dataset.json: what every frame of the dataset shares."""
    return {
        "schema_version": SCHEMA_VERSION,
        "generator": {"name": "pnrelight Blender add-on", "version": generator_version},
        "units": {"length": "metres", "radiance": "W/(m^2 sr)"},
        "axes": {"world": "core (glTF): +y up, the subject faces +z; origin at the light stage centre",
                 "blender": "(x, -z, y)", "camera": "OpenGL: looks down -z, +y up"},
        "colour_space": "linear Rec.709",
        "latlong_convention": "Blender/Cycles: u = 0.5 - atan2(Y, X) / (2 pi), v = 0.5 + asin(Z) / pi, (X, Y, Z) = (x, -z, y)",
        "layout": layout,
        "renderer": renderer,
        "calibration": calibration,
        "seeds": list(seeds),
        "envs": list(envs),
        "image_size": list(image_size),
        "cameras": cameras,
        "subjects": list(subjects),
        "frames": {"olat": "linear half-float RGBA, ZIP", "albedo": "Diffuse Color pass, RGB half",
                   "normal": "camera space, RGB = xyz, half", "depth": "metres along -z in R, float (0: no surface)",
                   "mask": "8-bit PNG, subject coverage"},
        "fingerprint": fingerprint,
    }


def light_entry(*, light_id: int, direction, position, light_type: str, size_m: float, solid_angle_sr: float,
                strength: float, colour) -> dict:
    """One row of lights.json (world frame of the dataset, metres)."""
    return {"id": int(light_id), "direction": [float(v) + 0.0 for v in direction], "position": [float(v) + 0.0 for v in position],
            "type": light_type, "size_m": float(size_m), "solid_angle_sr": float(solid_angle_sr),
            "intensity": {"strength": float(strength), "unit": "W/m^2" if light_type == "sun" else "W",
                          "colour": [float(v) for v in colour]}}


def lights_json(lights: list) -> dict:
    return {"lights": list(lights)}


def transforms_json(camera: dict, frames: list) -> dict:
    """NeRF-style transforms.json of one subject: the first camera's intrinsics and the frames
    ({file_path relative to the subject folder, cam_idx, light_idx, transform_matrix, pl_pos,
    pl_intensity}; frames of cameras with other intrinsics carry their own fl_x, fl_y, cx, cy)."""
    keys = ("camera_angle_x", "camera_angle_y", "fl_x", "fl_y", "cx", "cy", "w", "h")
    return {**{k: camera[k] for k in keys}, "frames": list(frames)}


def fingerprint(parts: dict) -> dict:
    """Short hashes of what must not change when a run resumes (see FINGERPRINT_PARTS)."""
    def rounded(x):
        if isinstance(x, float):
            return round(x, 6) + 0.0
        if isinstance(x, dict):
            return {k: rounded(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [rounded(v) for v in x]
        return x

    return {k: hashlib.sha256(json.dumps(rounded(parts[k]), sort_keys=True).encode()).hexdigest()[:16]
            for k in FINGERPRINT_PARTS}


def differences(existing: dict, new: dict) -> list[str]:
    """The fingerprint parts in which an existing dataset.json differs from a new one."""
    old = existing.get("fingerprint") if isinstance(existing, dict) else None
    if not isinstance(old, dict):
        return ["fingerprint"]
    return [k for k in FINGERPRINT_PARTS if old.get(k) != new["fingerprint"][k]]


def write_json(path: Path, doc: dict) -> None:
    """Write JSON atomically; an identical file is left alone."""
    data = ds.json_bytes(doc)
    if path.is_file() and path.read_bytes() == data:
        return
    with atomic_output_file(path) as tmp:
        tmp.write_bytes(data)


def finished_rows(root: Path) -> dict[str, dict]:
    """path -> row of the finished frames: a manifest row whose file exists with that checksum.
    Rewrites manifest.jsonl without the other rows when there are any."""
    done = ds.finished_frames(root)
    path = Path(root) / MANIFEST
    if path.is_file() and len(done) != sum(1 for line in path.read_bytes().splitlines() if line.strip()):
        ds.merge_manifests(root, trusted=done)
    return done


def record_frame(root: Path, *, path: str, seconds: float, subject: str, cam_idx: int, light_idx, kind: str) -> dict:
    """Append the manifest row of a finished frame (its checksum; flushed to disk) and return it."""
    with ds.ManifestWriter(root, fsync=True) as writer:
        return writer.append(path=path, sha256=sha256_file(Path(root) / path), seconds=seconds, subject=subject,
                             cam_idx=cam_idx, light_idx=light_idx, kind=kind)


def preview_grid(frames: list, tile: int = 64):
    """uint8 RGB grid of linear frames (H, W, >= 3) for preview.png: each frame shrunk to at most
    ``tile`` pixels by block averaging, times pi (a white Lambertian plate facing a sun of
    1 W/m^2 shows white), sRGB-encoded."""
    import numpy as np

    thumbs = []
    for frame in frames:
        a = np.asarray(frame, dtype=np.float32)[..., :3]
        step = max(1, math.ceil(max(a.shape[:2]) / tile))
        h, w = a.shape[0] // step * step, a.shape[1] // step * step
        a = a[:h, :w].reshape(h // step, step, w // step, step, 3).mean(axis=(1, 3))
        thumbs.append(a)
    th = max(t.shape[0] for t in thumbs)
    tw = max(t.shape[1] for t in thumbs)
    cols = math.ceil(math.sqrt(len(thumbs)))
    rows = math.ceil(len(thumbs) / cols)
    grid = np.zeros((rows * (th + 2), cols * (tw + 2), 3), dtype=np.float32)
    for k, t in enumerate(thumbs):
        r, c = divmod(k, cols)
        grid[r * (th + 2):r * (th + 2) + t.shape[0], c * (tw + 2):c * (tw + 2) + t.shape[1]] = t
    v = np.clip(grid * math.pi, 0.0, 1.0)
    v = np.where(v <= 0.0031308, 12.92 * v, 1.055 * np.power(v, 1.0 / 2.4) - 0.055)
    return np.round(v * 255.0).astype(np.uint8)
