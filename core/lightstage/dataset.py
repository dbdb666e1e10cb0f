"""The light stage dataset on disk (schema version 1, docs/lightstage.md "Dataset format").

Writing: :func:`create_dataset` writes ``dataset.json``, ``lights.json`` and every subject's
``transforms.json`` (all deterministic: two runs, or two shards, with the same settings write the
same bytes; a rerun with other settings is refused). Frames are written by
:func:`write_frame_exr` / :func:`write_mask_png` (temporary name, then rename) and recorded in a
manifest (:class:`ManifestWriter`, one JSON row per finished frame with its sha256). A frame is
*finished* when a row exists and the file's checksum matches (:func:`finished_frames`); shards
write ``manifest.shard-I-of-N.jsonl``, :func:`merge_manifests` folds them into ``manifest.jsonl``.

Reading: :func:`read_dataset` (metadata, lights, subjects), :func:`read_transforms`,
:func:`read_olat` (N, H, W, 3), :func:`read_passes` (albedo, normal, depth, mask),
:func:`read_env`. :func:`write_preview` draws ``preview.png``.

Environment maps: :func:`resolve_envs` (shipped maps of assets/envmaps or files, checked: 2:1,
finite), :class:`EnvAccumulator` (the OLAT weighted sum of :func:`pnrelight.lightstage.envlight.compose`,
one frame at a time, for several maps at once).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..atomic import atomic_output_file
from ..errors import InputError

SCHEMA_VERSION = 1
DATASET_JSON = "dataset.json"
LIGHTS_JSON = "lights.json"
TRANSFORMS_JSON = "transforms.json"
MANIFEST = "manifest.jsonl"
SHARD_MANIFEST_RE = re.compile(r"^manifest\.shard-(\d+)-of-(\d+)\.jsonl$")
PREVIEW = "preview.png"
PASS_KINDS = ("mask", "albedo", "normal", "depth")
ENV_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Preferred order of the shipped maps for --envs K (varied lighting first).
SHIPPED_ENV_ORDER = ("studio", "sunset", "forest", "night", "city", "courtyard", "interior", "sunrise")

CALIBRATION = (
    "A directional light (sun) of strength S gives an irradiance of S W/m^2 on a surface facing it; rendered values are "
    "radiance W/(m^2 sr): a white Lambertian plate facing a sun of strength 1 renders 1/pi. A uniform world of radiance L "
    "renders albedo x L. Point lights: power P W, radiant intensity P/(4 pi) W/sr, irradiance P/(4 pi r^2) cos(theta). "
    "OLAT frames: each light gives an irradiance of 1 W/m^2 at the stage centre (sun: strength 1; point: P = 4 pi r^2), "
    "so an environment map's per-light weights w_i (radiance integrated over the light's Voronoi cell, W/m^2) relight "
    "the subject as sum_i w_i OLAT_i (pnrelight.lightstage.envlight)."
)


# ----------------------------------------------------------------------------- paths


def safe_id(text: str, fallback: str) -> str:
    """A folder- and file-safe id from a name: runs of other characters become "_" (``fallback`` if nothing is left)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text or "").strip("._") or fallback


def subject_dir(root, subject: str) -> Path:
    return Path(root) / "subjects" / subject


def cam_name(cam: int) -> str:
    return f"cam_{int(cam):02d}"


def light_digits(count: int) -> int:
    """Digits of the OLAT file names: 3 (000-999), more for larger layouts."""
    return max(3, len(str(int(count) - 1)))


def olat_relpath(subject: str, cam: int, light: int, count: int) -> str:
    """Path of an OLAT frame relative to the dataset root (posix)."""
    return f"subjects/{subject}/{cam_name(cam)}/olat/{int(light):0{light_digits(count)}d}.exr"


def pass_relpath(subject: str, cam: int, kind: str) -> str:
    return f"subjects/{subject}/{cam_name(cam)}/{kind}.{'png' if kind == 'mask' else 'exr'}"


def env_relpath(subject: str, cam: int, env: str, yaw_deg: int) -> str:
    return f"subjects/{subject}/{cam_name(cam)}/env/{env}_{int(yaw_deg) % 360:03d}.exr"


def manifest_name(shard: tuple[int, int] | None) -> str:
    return MANIFEST if shard is None else f"manifest.shard-{shard[0]}-of-{shard[1]}.jsonl"


def parse_shard(text) -> tuple[int, int] | None:
    """``"I/N"`` -> (I, N) with 0 <= I < N; None stays None. InputError (one line) otherwise."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
        raise InputError(f"--shard {text!r} is not I/N with 0 <= I < N (e.g. --shard 0/4 ... --shard 3/4)")
    return int(m.group(1)), int(m.group(2))


# ----------------------------------------------------------------------------- atomic frame writes


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_frame_exr(path, rgb: np.ndarray, alpha: np.ndarray | None = None, *, half: bool = True) -> str:
    """Write (H, W, 3) linear RGB (+ alpha (H, W), else 1) as an RGBA EXR, half float, ZIP, atomically.

    Returns the file's sha256 (of the bytes that were renamed into place).
    """
    from ..imageio import write_exr

    rgb = np.asarray(rgb, dtype=np.float32)
    a = np.ones(rgb.shape[:2], np.float32) if alpha is None else np.asarray(alpha, dtype=np.float32)
    with atomic_output_file(path) as tmp:
        write_exr(tmp, np.concatenate([rgb, a[..., None]], axis=2), half=half)
        digest = sha256_file(tmp)
    return digest


def write_depth_exr(path, depth: np.ndarray) -> str:
    """Depth (H, W) metres as a single float32 channel R (half would round 2 m to 1 mm steps)."""
    from ..imageio import write_exr

    with atomic_output_file(path) as tmp:
        write_exr(tmp, None, {"R": np.asarray(depth, dtype=np.float32)})
        digest = sha256_file(tmp)
    return digest


def write_mask_png(path, mask: np.ndarray) -> str:
    from PIL import Image

    with atomic_output_file(path) as tmp:
        Image.fromarray((np.asarray(mask) > 0).astype(np.uint8) * np.uint8(255)).save(tmp, format="PNG")
        digest = sha256_file(tmp)
    return digest


def half_round(frame: np.ndarray) -> np.ndarray:
    """The float32 values a half-float EXR gives back (what later sums must use to match a resumed run)."""
    from ..imageio import HALF_MAX

    return np.clip(np.asarray(frame, dtype=np.float32), -HALF_MAX, HALF_MAX).astype(np.float16).astype(np.float32)


def remove_temporaries(folder) -> int:
    """Delete what a killed run left directly in ``folder``: temporary files (``.name.XXXX.ext``) and
    folders (``.name.XXXX.tmp``). Dataset files never start with a dot."""
    import shutil

    folder = Path(folder)
    n = 0
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name.startswith(".") and p.is_file():
                p.unlink(missing_ok=True)
                n += 1
            elif p.name.startswith(".") and p.name.endswith(".tmp") and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
                n += 1
    return n


# ----------------------------------------------------------------------------- manifest


class ManifestWriter:
    """Appends finished-frame rows to one manifest file.

    Each row is one ``os.write`` of a whole line on an O_APPEND descriptor, so processes sharing
    the file (``--workers``) never interleave parts of rows; a row torn by a kill is skipped by
    the reader, and the next writer starts on a fresh line. ``fsync`` also flushes each row to disk
    (a Blender session that may crash between slow Cycles frames).
    """

    def __init__(self, root, name: str = MANIFEST, shard: str | None = None, *, fsync: bool = False):
        self.path = Path(root) / name
        self.shard = shard
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        size = os.fstat(self._fd).st_size
        if size:
            with open(self.path, "rb") as fh:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    os.write(self._fd, b"\n")

    def append(self, *, path: str, sha256: str, seconds: float, subject: str, cam_idx: int, light_idx: int | None,
               kind: str) -> dict:
        row = {"path": path, "sha256": sha256, "status": "done", "seconds": round(float(seconds), 4), "subject": subject,
               "cam_idx": int(cam_idx), "light_idx": None if light_idx is None else int(light_idx), "kind": kind,
               "shard": self.shard}
        os.write(self._fd, (json.dumps(row) + "\n").encode("utf-8"))
        if self.fsync:
            os.fsync(self._fd)
        return row

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def manifest_files(root) -> list[Path]:
    """manifest.jsonl (first) and the shard manifests, sorted by name."""
    root = Path(root)
    shards = sorted(p for p in root.glob("manifest.shard-*.jsonl") if SHARD_MANIFEST_RE.match(p.name))
    main = root / MANIFEST
    return ([main] if main.is_file() else []) + shards


def read_manifest(root) -> dict[str, list[dict]]:
    """Every well-formed ``done`` row of every manifest, by path (newest last within a file).

    Rows torn by a kill (not JSON, or missing fields) are skipped.
    """
    rows: dict[str, list[dict]] = {}
    for f in manifest_files(root):
        with open(f, "rb") as fh:
            for line in fh:
                try:
                    row = json.loads(line)
                except (UnicodeDecodeError, json.JSONDecodeError):
                    continue
                if isinstance(row, dict) and row.get("status") == "done" and isinstance(row.get("path"), str) \
                        and isinstance(row.get("sha256"), str):
                    rows.setdefault(row["path"], []).append(row)
    return rows


def verified_row(root, candidates: list[dict] | None) -> dict | None:
    """The newest of ``candidates`` (rows of one path) whose file exists with that checksum, else None."""
    if not candidates:
        return None
    path = Path(root) / candidates[-1]["path"]
    if not path.is_file():
        return None
    digest = sha256_file(path)
    for row in reversed(candidates):
        if row["sha256"] == digest:
            return row
    return None


def finished_frames(root, rows: dict[str, list[dict]] | None = None, *, paths=None) -> dict[str, dict]:
    """Finished frames: {relative path: manifest row} for rows whose file exists and whose checksum
    matches (a resumed run never renders these again). ``paths`` limits the check to those paths."""
    rows = read_manifest(root) if rows is None else rows
    keys = rows.keys() if paths is None else [p for p in paths if p in rows]
    out = {}
    for p in keys:
        row = verified_row(root, rows[p])
        if row is not None:
            out[p] = row
    return out


def merge_manifests(root, *, verify: bool = True, trusted: dict[str, dict] | None = None) -> int:
    """Fold manifest.jsonl and every manifest.shard-*.jsonl into one manifest.jsonl, sorted by path,
    one row per finished frame; the shard files are then removed. Returns the number of rows.

    verify : keep only rows whose file exists with that checksum (else the newest row of each path).
    trusted : rows already checked (by the tasks that wrote or skipped them); used without hashing.
    """
    root = Path(root)
    files = manifest_files(root)
    rows = read_manifest(root)
    trusted = trusted or {}
    merged = {}
    for p, cands in rows.items():
        if p in trusted:
            merged[p] = trusted[p]
        elif verify:
            row = verified_row(root, cands)
            if row is not None:
                merged[p] = row
        else:
            merged[p] = cands[-1]
    for p, row in trusted.items():
        merged.setdefault(p, row)
    text = "".join(json.dumps(merged[p]) + "\n" for p in sorted(merged))
    with atomic_output_file(root / MANIFEST) as tmp:
        tmp.write_text(text, encoding="utf-8")
    for f in files:
        if f.name != MANIFEST:
            f.unlink(missing_ok=True)
    return len(merged)


# ----------------------------------------------------------------------------- environment maps


@dataclass(frozen=True)
class EnvSpec:
    """An environment map of the dataset: its name (file stem) and file."""

    name: str
    path: str


def resolve_envs(count: int | None = None, files=()) -> list[EnvSpec]:
    """The first ``count`` shipped maps (in :data:`SHIPPED_ENV_ORDER`) plus user ``files``, each checked:
    a readable 2:1 lat-long .exr/.hdr with finite texels, names unique. InputError (one line) otherwise."""
    from ..envmap import default_envmaps

    shipped = {p.stem: p for p in default_envmaps()}
    order = [n for n in SHIPPED_ENV_ORDER if n in shipped] + sorted(n for n in shipped if n not in SHIPPED_ENV_ORDER)
    count = 0 if count is None else count
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 0 <= count <= len(order):
        raise InputError(f"--envs {count!r}: there are {len(order)} shipped environment maps (give 0..{len(order)}, or --env FILE)")
    specs = [EnvSpec(n, str(shipped[n])) for n in order[: int(count)]]
    for f in files or ():
        p = Path(f)
        specs.append(EnvSpec(safe_id(p.stem, "env"), str(p.resolve())))
    seen = set()
    for spec in specs:
        if spec.name in seen:
            raise InputError(f"two environment maps are named {spec.name!r} (rename one of the files)")
        seen.add(spec.name)
        check_envmap(spec.path)
    return specs


def check_envmap(path) -> None:
    """InputError unless ``path`` is a lat-long map (2:1) with finite texels."""
    from ..envmap import ENVMAP_SUFFIXES, load_envmap
    from ..imageio import _read_radiance_hdr, read_exr

    path = Path(path)
    if path.is_file() and path.suffix.lower() in ENVMAP_SUFFIXES:
        try:
            raw = read_exr(path) if path.suffix.lower() == ".exr" else _read_radiance_hdr(path)
        except Exception:  # noqa: BLE001 - load_envmap below names the problem
            raw = None
        if raw is not None:
            bad = ~np.isfinite(np.asarray(raw, dtype=np.float32))
            if bad.any():
                raise InputError(f"environment map {path} has {int(bad.any(axis=-1).sum() if bad.ndim == 3 else bad.sum())} "
                                 "non-finite texels (NaN or inf); fix or re-export the map")
    load_envmap(path)  # missing, unreadable, not 2:1


@lru_cache(maxsize=16)
def load_env(spec: EnvSpec) -> np.ndarray:
    """The map of ``spec`` (read once per process: every task camera of a worker relights with it), read-only."""
    from ..envmap import load_envmap

    env = load_envmap(spec.path)
    env.flags.writeable = False
    return env


class EnvAccumulator:
    """Several environment relightings of one view, summed one OLAT frame at a time.

    weights : {key: (N, 3) per-light weights}. :meth:`add` takes frame i (H, W, 3) float32;
    :meth:`result` gives each key's sum_i w_i frame_i with exactly the arithmetic of
    :func:`pnrelight.lightstage.envlight.compose` (float32, frame by frame, in light order).
    """

    def __init__(self, weights: dict, shape: tuple[int, int, int]):
        self.weights = {k: np.asarray(w, dtype=np.float64) for k, w in weights.items()}
        self.totals = {k: np.zeros(shape, np.float32) for k in weights}
        self._scratch = np.empty(shape, np.float32)
        self.count = 0

    def add(self, frame: np.ndarray) -> None:
        for k, total in self.totals.items():
            np.multiply(frame, self.weights[k][self.count].astype(np.float32), out=self._scratch, casting="unsafe")
            total += self._scratch
        self.count += 1

    def result(self, key) -> np.ndarray:
        n = len(self.weights[key])
        if self.count != n:
            raise RuntimeError(f"{self.count} OLAT frames summed for {n} lights")
        return self.totals[key]


# ----------------------------------------------------------------------------- metadata


def json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode("utf-8")


def lights_record(layout, light_type: str = "sun") -> dict:
    """lights.json: every light in the stage frame (relative to the stage centre, metres), each giving the
    centre 1 W/m^2 (:func:`rig.calibrated_strength`)."""
    from .rig import calibrated_strength

    out = []
    for i, (d, r, size, omega) in enumerate(zip(layout.directions, layout.distance_m, layout.size_m, layout.solid_angles)):
        strength, unit = calibrated_strength(light_type, r)
        out.append({"id": i, "direction": [float(v) for v in d], "position": [float(v) for v in d * r], "type": light_type,
                    "size_m": float(size), "solid_angle_sr": float(omega),
                    "intensity": {"strength": strength, "unit": unit, "colour": [1.0, 1.0, 1.0]}})
    return {"frame": "stage: core world axes (+y up, the subject faces +z), origin at the stage centre (the subject's centre)",
            "layout": layout.name, "hemisphere": bool(layout.hemisphere), "lights": out}


def transforms_record(subject: dict, cameras: list[dict], lights: dict, size: tuple[int, int]) -> dict:
    """transforms.json of one subject (NeRF / GS^3 / HumanOLAT layout), in the subject's mesh frame.

    cameras : dicts with ``cam_idx``, ``pose`` (4x4 camera-to-world, OpenGL, mesh frame), ``K`` (3x3),
    ``stage_to_mesh`` (4x4: a stage-frame point -> the mesh frame, which turns with the subject's yaw).
    """
    w, h = int(size[0]), int(size[1])
    k0 = np.asarray(cameras[0]["K"], dtype=np.float64)
    fl_x, fl_y, cx, cy = float(k0[0, 0]), float(k0[1, 1]), float(k0[0, 2]), float(k0[1, 2])
    digits = light_digits(len(lights["lights"]))
    frames = []
    for cam in cameras:
        m = np.asarray(cam["stage_to_mesh"], dtype=np.float64)
        for light in lights["lights"]:
            pos = m[:3, :3] @ np.asarray(light["position"]) + m[:3, 3]
            s = light["intensity"]["strength"]
            frames.append({"file_path": f"{cam_name(cam['cam_idx'])}/olat/{light['id']:0{digits}d}.exr",
                           "cam_idx": int(cam["cam_idx"]), "light_idx": int(light["id"]),
                           "transform_matrix": np.asarray(cam["pose"], dtype=np.float64).tolist(),
                           "pl_pos": [float(v) for v in pos], "pl_intensity": [float(s * c) for c in light["intensity"]["colour"]]})
    return {"subject": subject["id"], "camera_angle_x": 2.0 * math.atan(w / (2.0 * fl_x)), "fl_x": fl_x, "fl_y": fl_y,
            "cx": cx, "cy": cy, "w": w, "h": h, "light_type": lights["lights"][0]["type"],
            "pl_note": "pl_pos: light position in this file's (the subject mesh's) frame, metres; for suns a point along "
                       "the light's direction at its stage distance. pl_intensity: strength x colour (W/m^2 sun, W point).",
            "frames": frames}


def dataset_record(*, layout, renderer: dict, subjects: list[dict], cameras: dict, size, envs: list[EnvSpec],
                   seed: int, options: dict) -> dict:
    from .. import __version__

    return {
        "schema_version": SCHEMA_VERSION,
        "generator": {"name": "pnrelight", "version": __version__},
        "units": {"length": "metres", "radiance": "W/(m^2 sr)", "angles": "degrees"},
        "axes": {"world": "core world (glTF): +y up, the subject faces +z, metres",
                 "blender": "(x, -z, y): +Z up, the subject faces -Y",
                 "camera": "OpenGL: camera-to-world 4x4, the camera looks down its -z, +y up; K in pixels, u right, v down"},
        "colour_space": "linear Rec.709",
        "latlong_convention": "Blender/Cycles equirectangular: image centre +x, u = 0.75 is +z (the subject's front), top row +y",
        "layout": {"name": layout.name, "count": len(layout), "hemisphere": bool(layout.hemisphere), "notes": layout.notes},
        "renderer": renderer,
        "calibration": CALIBRATION,
        "seeds": {"dataset": int(seed), "per_camera": "numpy SeedSequence([dataset, subject index, cam_idx]); "
                                                      "subject i of --subjects: default_rng([dataset, i])"},
        "envs": [e.name for e in envs],
        "env_files": {e.name: Path(e.path).name for e in envs},
        "image_size": [int(size[0]), int(size[1])],
        "options": options,
        "cameras_per_subject": len(next(iter(cameras.values()))) if cameras else 0,
        "subjects": [s["id"] for s in subjects],
        "subject_info": {s["id"]: {**s, "cameras": [_camera_json(c) for c in cameras[s["id"]]]} for s in subjects},
    }


def _camera_json(cam: dict) -> dict:
    return {"cam_idx": int(cam["cam_idx"]), "view": int(cam["view"]), "azimuth_deg": float(cam["azimuth_deg"]),
            "subject_yaw_deg": float(cam["yaw_deg"]), "transform_matrix": np.asarray(cam["pose"], float).tolist(),
            "K": np.asarray(cam["K"], float).tolist(), "stage_to_mesh": np.asarray(cam["stage_to_mesh"], float).tolist(),
            "seed": int(cam["seed"]), "env_yaws_deg": {k: [int(v) for v in vs] for k, vs in cam["env_yaws"].items()}}


def create_dataset(root, *, layout, renderer: dict, subjects: list[dict], cameras: dict, size, envs: list[EnvSpec],
                   seed: int = 0, light_type: str = "sun", options: dict | None = None) -> dict:
    """Create (or reopen) DATASET: dataset.json, lights.json and subjects/<id>/transforms.json.

    subjects : JSON-ready dicts with at least ``id`` (synthetic parameters or a source description).
    cameras : {subject id: [camera dicts]} (see :func:`transforms_record`). Every file is written
    atomically and is a pure function of the arguments; when DATASET already has a dataset.json
    that differs (other layout, subjects, size, ...) InputError is raised and nothing is written.
    Returns the dataset.json record.
    """
    root = Path(root)
    record = dataset_record(layout=layout, renderer=renderer, subjects=subjects, cameras=cameras, size=size, envs=envs,
                            seed=seed, options={**(options or {}), "light_type": light_type})
    lights = lights_record(layout, light_type)
    files = {root / DATASET_JSON: json_bytes(record), root / LIGHTS_JSON: json_bytes(lights)}
    for s in subjects:
        files[subject_dir(root, s["id"]) / TRANSFORMS_JSON] = json_bytes(transforms_record(s, cameras[s["id"]], lights, size))
    existing = root / DATASET_JSON
    if existing.is_file():
        try:
            old = json.loads(existing.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if not json_close(old, json.loads(files[existing])):
            diff = _first_difference(old, record)
            raise InputError(f"{root} holds a dataset made with other settings ({diff}); rerun with the same options "
                             "to continue it, or write to a new folder")
        # The same dataset: keep its files (another machine may differ in the last bits of a float).
        files = {path: data for path, data in files.items() if not path.is_file()}
    elif root.is_dir() and any(not p.name.startswith(".") for p in root.iterdir()):
        raise InputError(f"{root} exists and is not a light stage dataset (give a new or empty folder)")
    for path, data in files.items():
        with atomic_output_file(path) as tmp:
            tmp.write_bytes(data)
    return record


def json_close(a, b, tol: float = 1e-8) -> bool:
    """JSON values equal, floats within ``tol`` (absolute and relative)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_close(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and math.isclose(a, b, rel_tol=tol, abs_tol=tol)
    return a == b


def _first_difference(old, new) -> str:
    if not isinstance(old, dict):
        return "unreadable dataset.json"
    for key in new:
        if not json_close(old.get(key), json.loads(json.dumps(new[key]))):
            if key == "subject_info":
                return "subjects or cameras differ"
            a, b = json.dumps(old.get(key))[:60], json.dumps(new[key])[:60]
            return f"{key}: {a} here, {b} now"
    return "extra fields"


# ----------------------------------------------------------------------------- reading


@dataclass
class Dataset:
    """A dataset read back: ``metadata`` (dataset.json), ``lights`` (lights.json's list), ``subjects`` (ids)."""

    root: Path
    metadata: dict
    lights: list[dict]
    subjects: list[str]

    def cameras(self, subject: str) -> list[dict]:
        return self.metadata["subject_info"][subject]["cameras"]


def read_dataset(root) -> Dataset:
    root = Path(root)
    path = root / DATASET_JSON
    if not path.is_file():
        raise InputError(f"{root} is not a light stage dataset (no {DATASET_JSON}; make one with `pnrelight olat`)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        lights = json.loads((root / LIGHTS_JSON).read_text(encoding="utf-8"))["lights"]
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"cannot read the dataset in {root} ({exc}); is it complete?") from None
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise InputError(f"{root}: schema version {meta.get('schema_version')!r}, this reader knows {SCHEMA_VERSION} (update pnrelight)")
    return Dataset(root=root, metadata=meta, lights=lights, subjects=list(meta["subjects"]))


def read_transforms(root, subject: str) -> dict:
    return json.loads((subject_dir(root, subject) / TRANSFORMS_JSON).read_text(encoding="utf-8"))


def _read_rgba(path) -> np.ndarray:
    from ..imageio import read_exr

    if not Path(path).is_file():
        raise InputError(f"frame {path} is missing (finish the dataset: rerun `pnrelight olat` with the same options)")
    return read_exr(path)


def read_olat(root, subject: str, cam: int = 0, lights=None) -> np.ndarray:
    """OLAT frames of one camera, (N, H, W, 3) float32 linear radiance (all lights, or the ``lights`` indices)."""
    ds = read_dataset(root)
    n = len(ds.lights)
    idx = range(n) if lights is None else [int(i) for i in lights]
    frames = [_read_rgba(Path(root) / olat_relpath(subject, cam, i, n))[..., :3] for i in idx]
    return np.stack(frames) if frames else np.zeros((0,) + tuple(ds.metadata["image_size"][::-1]) + (3,), np.float32)


def read_passes(root, subject: str, cam: int = 0) -> dict:
    """Ground-truth passes of one camera: albedo (H, W, 3) linear, normal (H, W, 3) camera space,
    depth (H, W) metres along -z (0 off the subject), mask (H, W) bool."""
    from ..imageio import read_exr, read_image

    root = Path(root)
    out = {k: _read_rgba(root / pass_relpath(subject, cam, k))[..., :3] for k in ("albedo", "normal")}
    out["depth"] = read_exr(root / pass_relpath(subject, cam, "depth"))
    out["mask"] = read_image(root / pass_relpath(subject, cam, "mask")) > 0.5
    return out


def read_env(root, subject: str, cam: int, env: str, yaw_deg: int) -> np.ndarray:
    return _read_rgba(Path(root) / env_relpath(subject, cam, env, yaw_deg))[..., :3]


# ----------------------------------------------------------------------------- preview


def _display(image: np.ndarray, mask: np.ndarray | None, exposure: float) -> np.ndarray:
    from ..avatar.color import linear_to_srgb

    img = linear_to_srgb(np.asarray(image, np.float32) * exposure)
    if mask is not None:
        img = np.where(mask[..., None], img, 0.15)  # grey background: black frames still show the silhouette
    return img


def preview_tiles(root, *, max_subjects: int = 4, olat_per_subject: int = 4, envs_per_subject: int = 3) -> list[list]:
    """Rows of labelled sRGB tiles: per subject (its most frontal camera) a few OLAT frames (lights nearest front, left, right,
    above) and env-relit images. OLAT frames are shown x pi (a white plate facing the light -> 1);
    env images are scaled so their 99th percentile on the subject is 0.9."""
    from ..imageio import read_image

    ds = read_dataset(root)
    dirs = np.array([l["direction"] for l in ds.lights])
    wanted = np.array([[0, 0.3, 1], [-1, 0.3, 0.4], [1, 0.3, 0.4], [0, 1, 0.2]], dtype=np.float64)
    wanted /= np.linalg.norm(wanted, axis=1, keepdims=True)
    picks = []
    for w in wanted:
        for i in np.argsort(-(dirs @ w)):
            if int(i) not in picks:
                picks.append(int(i))
                break
    picks = picks[:olat_per_subject]
    rows = []
    for sid in ds.subjects[:max_subjects]:
        tiles = []
        cam = min(ds.cameras(sid), key=lambda c: (abs(c["subject_yaw_deg"]), abs(c["azimuth_deg"]), c["cam_idx"]))  # the most frontal
        mask = read_image(Path(root) / pass_relpath(sid, cam["cam_idx"], "mask")) > 0.5
        for i, frame in zip(picks, read_olat(root, sid, cam["cam_idx"], picks)):
            tiles.append((f"{sid} light {i}", _display(frame, mask, math.pi)))
        for name, yaws in list(cam["env_yaws_deg"].items())[:envs_per_subject]:
            img = read_env(root, sid, cam["cam_idx"], name, yaws[0])
            lum = img.mean(-1)[mask] if mask.any() else img.mean(-1).ravel()
            p99 = float(np.percentile(lum, 99)) if lum.size else 1.0
            tiles.append((f"{sid} {name} {yaws[0]:03d}", _display(img, mask, 0.9 / p99 if p99 > 0 else 1.0)))
        rows.append(tiles)
    return rows


def write_preview(root, *, tile: int = 192, **kw) -> Path:
    """``DATASET/preview.png``: a grid of OLAT frames and env-relit images (see :func:`preview_tiles`)."""
    from ..avatar.preview import contact_sheet
    from ..imageio import write_image

    rows = preview_tiles(root, **kw)
    columns = max(len(r) for r in rows)
    blank = np.ones((8, 8, 3), np.float32)
    tiles = [t for r in rows for t in r + [("", blank)] * (columns - len(r))]  # one subject per row
    path = Path(root) / PREVIEW
    write_image(path, contact_sheet(tiles, columns=columns, tile=tile))
    return path


def dataset_bytes(root, subject: str | None = None) -> int:
    """Bytes on disk of the dataset (or of one subject's folder)."""
    base = Path(root) if subject is None else subject_dir(root, subject)
    return sum(p.stat().st_size for p in base.rglob("*") if p.is_file())
