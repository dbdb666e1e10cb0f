"""OLAT dataset jobs: cameras, a deterministic task plan, and running it (in process, a spawn pool, or Ray).

A *task* is one subject and a group of its cameras (``cameras_per_task``, default 1) with every
light: it writes that camera's G-buffer passes, one OLAT frame per light and the environment-relit
images composed from those frames, each frame atomically, each followed by its manifest row.
Tasks never share a file they write (a camera folder belongs to one task; synthetic subject meshes
are written first-come, by an atomic folder rename), so they can run in any order on any number of
processes or machines sharing the dataset folder. Seeds are per camera
(``SeedSequence([seed, subject index, cam_idx])``), so the bytes do not depend on how the work is
split: one process, ``--workers N``, ``--shard I/N`` on N machines, or Ray give the same files.

Resuming: before rendering, a task checks its frames against the manifest rows (file present,
sha256 equal) and skips the finished ones; an environment image whose OLAT frames are all finished
is composed from the frames on disk (half floats, which is also what a fresh run sums).

The renderer is reached through :func:`renderer_backend` only (one adapter; the renderer module is
``pnrelight.lightstage.render``): a name, a ``"module:attr"`` plug-in (tests use a stand-in), or
an object with the same methods. ``"blender"`` is the hook for Blender-rendered tasks (module
``pnrelight.lightstage.blender_olat``, not part of this package yet).
"""
from __future__ import annotations

import importlib
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import InputError
from . import dataset as ds
from .layouts import LightLayout

DISTANCE_FACTOR = 8.0  # camera distance / subject bounding radius (a head: ~1.5-2 m, like a stage's cameras)
FILL = 0.95  # the bounding sphere's silhouette spans this fraction of the image width
DEFAULT_ARC_DEG = 90.0  # --views V > 1: cameras from -45 to +45 degrees around the front
BLENDER_HOOK_MODULE = "pnrelight.lightstage.blender_olat"


# ----------------------------------------------------------------------------- the renderer adapter


@dataclass(frozen=True)
class Renderer:
    """What the dataset writer needs from a renderer (see :func:`renderer_backend`)."""

    name: str
    version: str
    load_subject: object  # (path) -> mesh
    prepare_view: object  # (mesh, pose 4x4, K 3x3, (W, H)) -> gbuf
    render_olat: object  # (gbuf, light dict, shadows=, diffuse_only=) -> (H, W, 3) float32
    passes: object  # (gbuf) -> {"albedo": (H, W, 3), "normal": (H, W, 3) camera space, "depth": (H, W), "mask": (H, W)}
    info: dict = field(default_factory=dict)
    render_olat_set: object = None  # optional (gbuf, lights, shadows=, diffuse_only=) -> iterator of frames (batched)


def renderer_backend(spec="pnrelight"):
    """THE adapter between the dataset writer and a renderer (a renamed function is fixed here only).

    spec : ``"pnrelight"`` -- :mod:`pnrelight.lightstage.render` (``load_subject``, ``prepare_view``,
    ``render_olat`` / ``render_olat_set``, G-buffer passes from the gbuf: albedo linear, normals in the
    camera frame (OpenGL: x right, y up, z towards the viewer), depth in metres along the camera's -z,
    mask); ``"blender"`` -- the Blender hook module;
    ``"module:attr"`` -- a plug-in (a class or factory is called without arguments); or an object
    with ``name``, ``version``, ``load_subject``, ``prepare_view``, ``render_olat`` and ``passes``.
    """
    if not isinstance(spec, str):
        return spec
    if spec == "pnrelight":
        try:
            from . import render
        except ImportError as exc:
            raise InputError(f"the light stage renderer (pnrelight.lightstage.render) is not in this build ({exc}); "
                             "update pnrelight, or pass --renderer MODULE:CLASS") from None

        def passes(gbuf):
            g = render.ground_truth_passes(gbuf)
            depth = np.where(g["mask"], g["depth"], 0.0).astype(np.float32)  # background: 0, not +inf
            return {"albedo": g["albedo"], "normal": g["normal_camera"], "depth": depth, "mask": g["mask"]}

        def prepare_view(mesh, pose, K, size):
            return render.prepare_view(mesh, pose, K, (size[1], size[0]))  # the protocol's (W, H) -> the renderer's (H, W)

        return Renderer(name="pnrelight.lightstage.render", version=str(getattr(render, "__version__", _version())),
                        load_subject=render.load_subject, prepare_view=prepare_view, render_olat=render.render_olat,
                        passes=passes, info=dict(getattr(render, "RENDER_INFO", {})),
                        render_olat_set=getattr(render, "render_olat_set", None))
    if spec == "blender":
        try:
            module = importlib.import_module(BLENDER_HOOK_MODULE)
        except ImportError:
            raise InputError(f"the Blender renderer ({BLENDER_HOOK_MODULE}) is not in this build; use --renderer pnrelight") from None
        return module.renderer()
    if ":" in spec:
        mod, _, attr = spec.partition(":")
        try:
            obj = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as exc:
            raise InputError(f"renderer {spec!r} cannot be imported ({exc}); give MODULE:CLASS on the Python path") from None
        factory = isinstance(obj, type) or (callable(obj) and not hasattr(obj, "render_olat"))
        return obj() if factory else obj
    raise InputError(f"unknown renderer {spec!r} (use pnrelight, blender, or MODULE:CLASS)")


def renderer_record(renderer) -> dict:
    """dataset.json's ``renderer`` entry."""
    return {"name": str(getattr(renderer, "name", type(renderer).__name__)), "version": str(getattr(renderer, "version", "")),
            **dict(getattr(renderer, "info", {}) or {})}


def _version() -> str:
    from .. import __version__

    return __version__


# ----------------------------------------------------------------------------- cameras


def look_at(eye, target, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """4x4 camera-to-world (OpenGL: the camera looks down its -z, +y up) at ``eye`` looking at ``target``."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    z = eye - target
    z /= np.linalg.norm(z)
    x = np.cross(up, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x, y, z, eye
    return pose


def arc_azimuths(views: int, arc_deg: float = DEFAULT_ARC_DEG) -> list[float]:
    """Azimuths (degrees, 0 = in front on +z, positive towards +x) of ``views`` cameras evenly on an arc."""
    if views == 1:
        return [0.0]
    return [float(a) for a in np.linspace(-arc_deg / 2.0, arc_deg / 2.0, views)]


def stage_cameras(centre, radius: float, size, *, views: int = 1, yaws=(0.0,), arc_deg: float = DEFAULT_ARC_DEG,
                  seed: int = 0, subject_index: int = 0, envs=(), env_rotations: int = 1) -> list[dict]:
    """The cameras of one subject: ``views`` on a horizontal arc in front of it, for each subject yaw.

    centre (3,), radius : the subject's bounding sphere (mesh frame). Cameras stand at DISTANCE_FACTOR x
    radius from the centre, at its height, azimuths :func:`arc_azimuths`, looking at the centre; the
    focal length makes the bounding sphere fill FILL of the image width. ``yaws`` turn the subject
    about the vertical axis through its centre (counter-clockwise seen from above, like an envmap yaw)
    while lights and cameras stay: in the mesh frame, which the dataset uses, cameras and lights turn
    by -yaw (``stage_to_mesh``). cam_idx = yaw index x views + view index.

    Returns dicts: cam_idx, view, azimuth_deg, yaw_deg, pose (4x4 camera-to-world, mesh frame), K,
    stage_to_mesh (4x4), seed, env_yaws {env name: sorted distinct integer degrees, ``env_rotations`` of them}.
    """
    from ..envmap import rotation_y

    w, h = int(size[0]), int(size[1])
    centre = np.asarray(centre, dtype=np.float64)
    dist = DISTANCE_FACTOR * float(radius)
    f = 0.5 * w * FILL / math.tan(math.asin(1.0 / DISTANCE_FACTOR))
    K = np.array([[f, 0.0, w / 2.0], [0.0, f, h / 2.0], [0.0, 0.0, 1.0]])
    cams = []
    for yi, yaw in enumerate(yaws):
        m = np.eye(4)
        m[:3, :3] = rotation_y(-float(yaw))
        m[:3, 3] = centre
        for vi, az in enumerate(arc_azimuths(views, arc_deg)):
            a = math.radians(az)
            pose_stage = look_at([dist * math.sin(a), 0.0, dist * math.cos(a)], [0.0, 0.0, 0.0])
            idx = yi * views + vi
            cam_seed = int(np.random.SeedSequence([int(seed), int(subject_index), idx]).generate_state(1)[0])
            rng = np.random.default_rng(cam_seed)
            env_yaws = {e.name: sorted(int(v) for v in rng.choice(360, size=int(env_rotations), replace=False)) for e in envs}
            # Rounded to 1e-9 (nm): another machine's last-bit differences must not make another dataset.json.
            cams.append({"cam_idx": idx, "view": vi, "azimuth_deg": az, "yaw_deg": float(yaw), "pose": np.round(m @ pose_stage, 9),
                         "K": np.round(K, 9), "stage_to_mesh": np.round(m, 9), "seed": cam_seed, "env_yaws": env_yaws})
    return cams


def mesh_frame_lights(layout: LightLayout, cam: dict, light_type: str = "sun") -> list[dict]:
    """The stage's lights as ``render_olat`` light dicts in the subject mesh's frame, for camera ``cam``:
    each gives 1 W/m^2 at the stage centre (sun strength 1; point power 4 pi r^2: :func:`rig.calibrated_strength`)."""
    from .rig import calibrated_strength

    m = np.asarray(cam["stage_to_mesh"], dtype=np.float64)
    out = []
    for d, r, s in zip(layout.directions, layout.distance_m, layout.size_m):
        dm = m[:3, :3] @ d
        if light_type == "sun":
            out.append({"type": "sun", "direction": dm, "strength": 1.0, "colour": (1.0, 1.0, 1.0), "size_m": float(s),
                        "distance_m": float(r)})
        else:
            out.append({"type": "point", "position": m[:3, 3] + dm * r, "strength": calibrated_strength("point", r)[0],
                        "colour": (1.0, 1.0, 1.0), "size_m": float(s)})
    return out


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class OlatTask:
    """One unit of work: a subject and some of its cameras, all lights, passes and env images."""

    index: int
    root: str
    subject: dict  # dataset.json's subject record (synthetic parameters, or kind + source)
    subject_index: int
    cameras: tuple  # camera dicts of stage_cameras
    layout: LightLayout
    size: tuple
    envs: tuple = ()  # EnvSpec
    renderer: object = "pnrelight"  # renderer_backend spec: a name (e.g. "blender"), "module:attr", or an object
    light_type: str = "sun"
    shadows: bool = True
    diffuse_only: bool = False
    texture_size: int = 512
    manifest: str = ds.MANIFEST
    shard: str | None = None

    def frame_paths(self) -> list[str]:
        """Every file the task writes (relative to the root), in writing order."""
        sid, n = self.subject["id"], len(self.layout)
        out = []
        for cam in self.cameras:
            ci = cam["cam_idx"]
            out += [ds.pass_relpath(sid, ci, k) for k in ds.PASS_KINDS]
            out += [ds.olat_relpath(sid, ci, i, n) for i in range(n)]
            out += [ds.env_relpath(sid, ci, e.name, y) for e in self.envs for y in cam["env_yaws"][e.name]]
        return out


def plan_jobs(subjects: list[dict], cameras, layout: LightLayout, *, root, size, envs=(), renderer="pnrelight",
              light_type: str = "sun", shadows: bool = True, diffuse_only: bool = False, texture_size: int = 512,
              cameras_per_task: int = 1) -> list[OlatTask]:
    """The deterministic task list: subjects in order, each subject's cameras in groups of ``cameras_per_task``.

    cameras : {subject id: [camera dicts]} or one list for every subject. Task i is the same for the same
    inputs on any machine; ``--shard I/N`` runs the tasks with i mod N == I.
    """
    if cameras_per_task < 1:
        raise InputError(f"cameras_per_task {cameras_per_task} must be >= 1")
    tasks = []
    for si, subject in enumerate(subjects):
        cams = cameras[subject["id"]] if isinstance(cameras, dict) else cameras
        for start in range(0, len(cams), cameras_per_task):
            tasks.append(OlatTask(index=len(tasks), root=str(Path(root).resolve()), subject=subject, subject_index=si,
                                  cameras=tuple(cams[start:start + cameras_per_task]), layout=layout,
                                  size=(int(size[0]), int(size[1])), envs=tuple(envs), renderer=renderer,
                                  light_type=light_type, shadows=bool(shadows), diffuse_only=bool(diffuse_only),
                                  texture_size=int(texture_size)))
    return tasks


def select_shard(tasks: list[OlatTask], shard: tuple[int, int] | None) -> list[OlatTask]:
    """The tasks of shard (I, N): index mod N == I, writing manifest.shard-I-of-N.jsonl."""
    if shard is None:
        return list(tasks)
    i, n = shard
    return [replace(t, manifest=ds.manifest_name(shard), shard=f"{i}/{n}") for t in tasks if t.index % n == i]


# ----------------------------------------------------------------------------- one task


def subject_source(task: OlatTask) -> Path:
    """The path handed to ``load_subject``: a synthetic subject's mesh folder (written on first use) or the source."""
    from .subjects import write_synthetic_subject

    if task.subject.get("kind") == "synthetic":
        return write_synthetic_subject(ds.subject_dir(task.root, task.subject["id"]) / "mesh", task.subject,
                                       texture_size=task.texture_size)
    return Path(task.subject["source"])


def run_task(task: OlatTask, candidates: dict | None = None, on_frame=None) -> dict:
    """Render and write one task's frames, skipping finished ones.

    candidates : manifest rows {path: [rows]} (default: read the manifests); a row counts when the file
    exists with its checksum. on_frame(k) is called as frames finish or are skipped.
    Returns {"index", "rendered" (OLAT renders), "written" (frames written: OLAT, passes, env), "skipped"
    (finished frames found), "rows": {path: row} (every finished frame of the task), "seconds"}.
    """
    from ..imageio import read_exr, read_image
    from .envlight import light_weights

    t_start = time.perf_counter()
    root = Path(task.root)
    cands = ds.read_manifest(root) if candidates is None else candidates
    sid, n = task.subject["id"], len(task.layout)
    w, h = task.size
    renderer = mesh = writer = None
    env_maps: dict = {}
    rows: dict = {}
    rendered = written = skipped = 0
    tick = on_frame or (lambda k: None)
    try:
        for cam in task.cameras:
            ci = cam["cam_idx"]
            cdir = ds.subject_dir(root, sid) / ds.cam_name(ci)
            for d in (cdir, cdir / "olat", cdir / "env"):
                ds.remove_temporaries(d)  # a killed run's half-written temporaries (never a finished frame)
            pass_paths = {k: ds.pass_relpath(sid, ci, k) for k in ds.PASS_KINDS}
            olat_paths = [ds.olat_relpath(sid, ci, i, n) for i in range(n)]
            env_paths = {(e.name, y): ds.env_relpath(sid, ci, e.name, y) for e in task.envs for y in cam["env_yaws"][e.name]}
            done = ds.finished_frames(root, cands, paths=[*pass_paths.values(), *olat_paths, *env_paths.values()])
            rows.update(done)
            skipped += len(done)
            tick(len(done))
            todo_olat = {i for i in range(n) if olat_paths[i] not in done}
            todo_pass = [k for k in ds.PASS_KINDS if pass_paths[k] not in done]
            todo_env = [key for key, p in env_paths.items() if p not in done]
            if not (todo_olat or todo_pass or todo_env):
                continue
            if writer is None:
                writer = ds.ManifestWriter(root, task.manifest, task.shard)

            def record(path, sha, seconds, kind, light=None):
                nonlocal written
                rows[path] = writer.append(path=path, sha256=sha, seconds=seconds, subject=sid, cam_idx=ci, light_idx=light, kind=kind)
                written += 1
                tick(1)

            gbuf = None
            if todo_olat or todo_pass:
                t0 = time.perf_counter()
                renderer = renderer or renderer_backend(task.renderer)
                if mesh is None:
                    mesh = renderer.load_subject(str(subject_source(task)))
                gbuf = renderer.prepare_view(mesh, np.asarray(cam["pose"], dtype=np.float64),
                                             np.asarray(cam["K"], dtype=np.float64), (w, h))
                passes = _checked_passes(renderer.passes(gbuf), (h, w))
                mask = passes["mask"]
                alpha = mask.astype(np.float32)
                prep = time.perf_counter() - t0
                for kind in todo_pass:
                    t0 = time.perf_counter()
                    path = root / pass_paths[kind]
                    if kind == "mask":
                        sha = ds.write_mask_png(path, mask)
                    elif kind == "depth":
                        sha = ds.write_depth_exr(path, np.where(mask, passes["depth"], 0.0))
                    else:
                        sha = ds.write_frame_exr(path, np.where(mask[..., None], passes[kind], 0.0), alpha)
                    record(pass_paths[kind], sha, time.perf_counter() - t0 + prep / len(todo_pass), kind)
            else:
                mask = read_image(root / pass_paths["mask"]) > 0.5
                alpha = mask.astype(np.float32)
            acc = None
            if todo_env:
                for name, _ in todo_env:
                    if name not in env_maps:
                        env_maps[name] = ds.load_env(next(e for e in task.envs if e.name == name))
                acc = ds.EnvAccumulator({key: light_weights(env_maps[key[0]], task.layout, key[1]) for key in todo_env}, (h, w, 3))
            frames = _olat_frames(renderer, gbuf, task, cam, sorted(todo_olat)) if todo_olat else None
            t_env = time.perf_counter()
            for i in range(n):
                if i in todo_olat:
                    t0 = time.perf_counter()
                    frame = next(frames, None)
                    if frame is None:
                        raise RuntimeError(f"the renderer gave no frame for {sid} camera {ci} light {i}")
                    frame = ds.half_round(_checked_frame(frame, (h, w), f"{sid} camera {ci} light {i}"))
                    sha = ds.write_frame_exr(root / olat_paths[i], frame, alpha)
                    record(olat_paths[i], sha, time.perf_counter() - t0, "olat", i)
                    rendered += 1
                    t_env += time.perf_counter() - t0  # env time excludes rendering
                elif acc is not None:
                    frame = read_exr(root / olat_paths[i])[..., :3]
                if acc is not None:
                    acc.add(frame)
            if acc is not None:
                share = (time.perf_counter() - t_env) / len(todo_env)
                for key in todo_env:
                    t0 = time.perf_counter()
                    sha = ds.write_frame_exr(root / env_paths[key], acc.result(key), alpha)
                    record(env_paths[key], sha, time.perf_counter() - t0 + share, "env")
    finally:
        if writer is not None:
            writer.close()
    return {"index": task.index, "rendered": rendered, "written": written, "skipped": skipped, "rows": rows,
            "seconds": round(time.perf_counter() - t_start, 4)}


def _olat_frames(renderer, gbuf, task: OlatTask, cam: dict, lights: list[int]):
    """The OLAT frames of ``lights`` (indices, in order): the renderer's batched ``render_olat_set`` when it
    has one, else ``render_olat`` light by light."""
    dicts = mesh_frame_lights(task.layout, cam, task.light_type)
    chosen = [dicts[i] for i in lights]
    batched = getattr(renderer, "render_olat_set", None)
    if batched is not None:
        yield from batched(gbuf, chosen, shadows=task.shadows, diffuse_only=task.diffuse_only)
        return
    for light in chosen:
        yield renderer.render_olat(gbuf, light, shadows=task.shadows, diffuse_only=task.diffuse_only)


def _checked_passes(p: dict, hw: tuple[int, int]) -> dict:
    out = {}
    for key, shape in (("albedo", hw + (3,)), ("normal", hw + (3,)), ("depth", hw), ("mask", hw)):
        a = p.get(key) if isinstance(p, dict) else None
        if a is None:
            raise RuntimeError(f"the renderer's G-buffer has no {key} pass")
        a = np.asarray(a)
        if key == "depth" and a.ndim == 3:
            a = a[..., 0]
        if key == "mask" and a.ndim == 3:
            a = a[..., 0]
        if a.shape != shape:
            raise RuntimeError(f"the renderer's {key} pass has shape {a.shape}, not {shape}")
        out[key] = a.astype(bool) if key == "mask" else np.nan_to_num(a.astype(np.float32))
    return out


def _checked_frame(frame, hw, what: str) -> np.ndarray:
    f = np.asarray(frame, dtype=np.float32)
    if f.shape != hw + (3,):
        raise RuntimeError(f"the renderer returned shape {f.shape} for {what}, not {hw + (3,)}")
    if not np.all(np.isfinite(f)):
        raise RuntimeError(f"the renderer returned non-finite values for {what}")
    return f


# ----------------------------------------------------------------------------- running many tasks


def task_candidates(task: OlatTask, rows: dict) -> dict:
    """The manifest rows of ``task``'s files (what it needs to check for resuming)."""
    return {p: rows[p] for p in task.frame_paths() if p in rows}


def frame_count(tasks: list[OlatTask]) -> int:
    return sum(len(t.frame_paths()) for t in tasks)


def run_tasks(tasks: list[OlatTask], workers: int = 1, *, rows: dict | None = None, show_progress: bool = True) -> list[dict]:
    """Run tasks in this process (workers=1) or a spawn pool of ``workers`` processes; results in task order.

    rows : the manifest rows (default: read once here). Each task writes its own files and appends its
    own manifest rows (one O_APPEND write per row), so the pool needs no coordination.
    """
    from ..progress import progress

    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise InputError(f"--workers {workers!r} is not a positive number of processes")
    if not tasks:
        return []
    rows = ds.read_manifest(tasks[0].root) if rows is None else rows
    bar = progress(total=frame_count(tasks), desc="olat", unit="frame") if show_progress else None
    tick = (lambda k: bar.update(k)) if bar is not None else None
    try:
        if workers == 1 or len(tasks) == 1:
            return [run_task(t, task_candidates(t, rows), tick) for t in tasks]
        return _run_pool(tasks, int(workers), rows, tick)
    finally:
        if bar is not None:
            bar.close()


_QUEUE = None


def _pool_init(queue) -> None:
    global _QUEUE
    _QUEUE = queue


def _pool_run(args) -> dict:
    task, cands = args
    q = _QUEUE
    return run_task(task, cands, (lambda k: q.put(k)) if q is not None else None)


def _run_pool(tasks, workers, rows, tick) -> list[dict]:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # no fork: safe with threads (OpenEXR, BLAS) and the same on every OS
    queue = ctx.Queue() if tick is not None else None
    drain = None
    if queue is not None:
        def pump():
            while (k := queue.get()) is not None:
                tick(k)
        drain = threading.Thread(target=pump, daemon=True)
        drain.start()
    results = {}
    try:
        with ctx.Pool(min(workers, len(tasks)), initializer=_pool_init, initargs=(queue,)) as pool:
            for res in pool.imap_unordered(_pool_run, [(t, task_candidates(t, rows)) for t in tasks]):
                results[res["index"]] = res
    finally:
        if queue is not None:
            queue.put(None)
            drain.join(timeout=5)
    return [results[t.index] for t in tasks]


def _ray_run(task: OlatTask, cands: dict) -> dict:
    return run_task(task, cands)


def import_ray():
    try:
        import ray
    except ImportError:
        raise InputError("ray is not installed (pip install pnrelight[scale])") from None
    return ray


def run_tasks_ray(tasks: list[OlatTask], *, address: str | None = None, workers: int | None = None, rows: dict | None = None,
                  show_progress: bool = True) -> list[dict]:
    """Run tasks as Ray remote functions; each writes its own files and ``manifest.shard-k-of-T.jsonl``
    (task k of T); the caller merges the manifests (:func:`pnrelight.lightstage.dataset.merge_manifests`).

    address : a Ray cluster (``ray.init(address=...)``; the dataset folder must be shared storage and
    pnrelight installed on the nodes), or None for a local runtime of ``workers`` CPUs whose workers
    import from this process's ``sys.path``.
    """
    from ..progress import progress

    ray = import_ray()
    if not tasks:
        return []
    rows = ds.read_manifest(tasks[0].root) if rows is None else rows
    total = len(tasks)
    tasks = [replace(t, manifest=ds.manifest_name((k, total)), shard=f"{k}/{total}") for k, t in enumerate(tasks)]
    started = False
    if not ray.is_initialized():
        import logging

        if address:
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        else:
            path = os.pathsep.join(os.path.abspath(p) for p in sys.path if p)
            ray.init(num_cpus=int(workers or os.cpu_count() or 1), include_dashboard=False, logging_level=logging.ERROR,
                     log_to_driver=False, object_store_memory=80 * 1024**2,
                     runtime_env={"env_vars": {"PYTHONPATH": path}})
        started = True
    bar = progress(total=frame_count(tasks), desc="olat (ray)", unit="frame") if show_progress else None
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(_ray_run)
        pending = {remote.remote(t, task_candidates(t, rows)): t for t in tasks}
        results = {}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            t = pending.pop(done[0])
            try:
                res = ray.get(done[0])
            except ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, InputError):
                    raise InputError(str(cause)) from None
                raise
            results[res["index"]] = res
            if bar is not None:
                bar.update(len(t.frame_paths()))
        return [results[t.index] for t in tasks]
    finally:
        if bar is not None:
            bar.close()
        if started:
            ray.shutdown()


# ----------------------------------------------------------------------------- the whole command


LAYOUT_ALIASES = {"331": "lightstage-x-331"}  # --lights 331 is the stage preset (a Fibonacci sphere either way)
MAX_SIZE = 8192


def build_dataset(root, sources=(), *, subjects: int = 0, lights="331", views: int = 1, yaws=(0.0,),
                  arc_deg: float = DEFAULT_ARC_DEG, envs: int = 8, env_files=(), env_rotations: int = 1, size: int = 512,
                  seed: int = 0, shadows: bool = True, diffuse_only: bool = False, light_type: str = "sun",
                  renderer="pnrelight", texture_size: int = 512, workers: int = 1, ray: str | None = None,
                  shard=None, cameras_per_task: int = 1, show_progress: bool = True, preview: bool = True) -> dict:
    """``pnrelight olat``: check everything, create or reopen DATASET, run the (shard's) tasks, merge, preview.

    sources : avatar folders / .glb / .obj; subjects : how many synthetic people to add. ray : None, or
    "local" / an address (``ray.init(address=...)``). shard : "I/N" or (I, N): only tasks i mod N == I,
    rows in manifest.shard-I-of-N.jsonl, no merge or preview (run once more without --shard for those).
    All input is checked before anything is written (InputError, one line). Returns a summary dict.
    """
    from .layouts import load_layout
    from .subjects import generate_subjects, inspect_source, subject_id, synthetic_bounds

    t0 = time.perf_counter()
    root = Path(root)
    shard = ds.parse_shard(shard) if not isinstance(shard, tuple) else ds.parse_shard(f"{shard[0]}/{shard[1]}")
    _check_int(size, "--size", 8, MAX_SIZE)
    _check_int(views, "--views", 1, 360)
    _check_int(env_rotations, "--env-rotations", 1, 360)
    _check_int(texture_size, "--texture-size", 16, 8192)
    _check_int(subjects, "--subjects", 0, 10**7)
    _check_int(seed, "--seed", 0, 2**63 - 1)
    _check_int(cameras_per_task, "cameras_per_task", 1, 10**6)
    if workers is not None:
        _check_int(workers, "--workers", 1, 4096)
    if texture_size & (texture_size - 1):
        raise InputError(f"--texture-size {texture_size} is not a power of two (e.g. 512)")
    yaws = [float(y) for y in (yaws or (0.0,))]
    if not all(math.isfinite(y) for y in yaws) or len(set(y % 360.0 for y in yaws)) != len(yaws):
        raise InputError(f"--yaw {yaws} must be distinct finite angles in degrees")
    if not (math.isfinite(arc_deg) and 0.0 <= arc_deg <= 360.0):
        raise InputError(f"--arc {arc_deg} must be an angle in [0, 360] degrees")
    if light_type not in ("sun", "point"):
        raise InputError(f"--light-type {light_type!r}: use sun or point")
    if ray is not None and shard is not None:
        raise InputError("--ray and --shard do not combine (Ray spreads the tasks itself; use one or the other)")
    if ray is not None:
        import_ray()
    layout = load_layout(LAYOUT_ALIASES.get(str(lights).strip().lower(), lights) if isinstance(lights, str) else lights)
    env_specs = ds.resolve_envs(envs, env_files)
    backend = renderer_backend(renderer)
    if root.exists() and not root.is_dir():
        raise InputError(f"-o {root} is a file (give a folder for the dataset)")
    if not sources and not subjects:
        raise InputError("no subjects: give avatar folders / .glb / .obj files, or --subjects N for synthetic people")

    records, taken = [], set()
    for src in sources:
        info = inspect_source(src)
        records.append({"id": subject_id(src, taken), **info})
    for params in generate_subjects(subjects, seed) if subjects else []:
        sid = params["id"]
        if sid in taken:
            raise InputError(f"a source is named {sid!r} like a synthetic subject (rename it)")
        taken.add(sid)
        centre, radius = synthetic_bounds(params)
        records.append({**params, "centre": [round(float(v), 9) for v in centre], "radius": round(radius, 9)})
    cameras = {r["id"]: stage_cameras(r["centre"], r["radius"], (size, size), views=views, yaws=yaws, arc_deg=arc_deg,
                                      seed=seed, subject_index=i, envs=env_specs, env_rotations=env_rotations)
               for i, r in enumerate(records)}
    options = {"views": views, "arc_deg": arc_deg, "subject_yaws_deg": yaws, "env_rotations": env_rotations,
               "shadows": bool(shadows), "diffuse_only": bool(diffuse_only), "texture_size": texture_size,
               "camera_rig": f"views on a horizontal arc of {arc_deg:g} deg in front of the subject, at {DISTANCE_FACTOR:g} x its "
                             f"bounding radius, the bounding sphere filling {FILL:g} of the width"}
    ds.create_dataset(root, layout=layout, renderer=renderer_record(backend), subjects=records, cameras=cameras,
                      size=(size, size), envs=env_specs, seed=seed, light_type=light_type, options=options)
    tasks = plan_jobs(records, cameras, layout, root=root, size=(size, size), envs=env_specs,
                      renderer=renderer if isinstance(renderer, str) else backend, light_type=light_type, shadows=shadows,
                      diffuse_only=diffuse_only, texture_size=texture_size, cameras_per_task=cameras_per_task)
    mine = select_shard(tasks, shard)
    rows = ds.read_manifest(root)
    if ray is not None:
        results = run_tasks_ray(mine, address=None if ray == "local" else ray, workers=workers, rows=rows,
                                show_progress=show_progress)
    else:
        results = run_tasks(mine, workers or 1, rows=rows, show_progress=show_progress)
    summary = {"root": str(root), "tasks": len(mine), "tasks_total": len(tasks), "subjects": len(records),
               "frames": frame_count(mine), "rendered": sum(r["rendered"] for r in results),
               "written": sum(r["written"] for r in results),
               "skipped": sum(r["skipped"] for r in results), "shard": None if shard is None else f"{shard[0]}/{shard[1]}",
               "merged": False, "preview": None}
    if shard is None:
        trusted = {p: row for r in results for p, row in r["rows"].items()}
        summary["manifest_rows"] = ds.merge_manifests(root, trusted=trusted)
        summary["merged"] = True
        for sub in [root] + [ds.subject_dir(root, r["id"]) for r in records]:
            ds.remove_temporaries(sub)
        if preview:
            summary["preview"] = str(ds.write_preview(root))
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    return summary


def _check_int(value, what: str, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise InputError(f"{what} {value!r} must be an integer in {lo}..{hi}")
