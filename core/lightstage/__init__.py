"""Virtual light stage: light layouts, the shadowing OLAT renderer, environment relighting from OLAT
and the dataset format. Conventions (one place): see ``docs/lightstage.md``.

* :mod:`.layouts` -- :class:`LightLayout`, presets ("lightstage-x-331", "156", "114", ...),
  Fibonacci / icosphere layouts, .lp / JSON layouts, spherical Voronoi solid angles, pictures.
* :mod:`.envlight` -- per-light weights of an environment map and the OLAT weighted sum.
* :mod:`.dataset` -- the dataset on disk: create, atomic frames, manifests (resume, shards), readers, preview.
* :mod:`.olat` -- cameras, the task plan, running it (process pool, shards, Ray), ``pnrelight olat``.
* :mod:`.subjects` -- synthetic people from the default head; avatar folders / .glb / .obj as subjects.
* :mod:`.rig` -- a layout placed at a radius around a subject, with calibrated light strengths.
"""
from .dataset import (
    EnvAccumulator,
    finished_frames,
    merge_manifests,
    read_dataset,
    read_env,
    read_olat,
    read_passes,
    read_transforms,
    write_preview,
)
from .envlight import compose, light_weights, olat_multipliers, relight, texel_owners
from .layouts import (
    DEFAULT_DISTANCE_M,
    DEFAULT_SIZE_M,
    PRESET_NOTES,
    LightLayout,
    fibonacci_sphere,
    from_blender,
    icosphere,
    layout_from_json,
    layout_from_lp,
    layout_picture,
    load_layout,
    make_layout,
    pose_from_blender,
    pose_to_blender,
    preset,
    solid_angles,
    to_blender,
    upper_hemisphere,
)
from .olat import build_dataset, plan_jobs, renderer_backend, run_task, run_tasks, run_tasks_ray, select_shard, stage_cameras
from .rig import Rig, place_lights, rig_radius
from .subjects import generate_subjects, inspect_source, write_synthetic_subject

__all__ = [
    "DEFAULT_DISTANCE_M", "DEFAULT_SIZE_M", "PRESET_NOTES", "LightLayout", "Rig", "compose", "fibonacci_sphere",
    "from_blender", "icosphere", "layout_from_json", "layout_from_lp", "layout_picture", "light_weights", "load_layout",
    "make_layout", "olat_multipliers", "place_lights", "pose_from_blender", "pose_to_blender", "preset", "relight", "rig_radius",
    "solid_angles", "texel_owners", "to_blender", "upper_hemisphere",
    "EnvAccumulator", "finished_frames", "merge_manifests", "read_dataset", "read_env", "read_olat", "read_passes",
    "read_transforms", "write_preview", "build_dataset", "plan_jobs", "renderer_backend", "run_task", "run_tasks",
    "run_tasks_ray", "select_shard", "stage_cameras", "generate_subjects", "inspect_source", "write_synthetic_subject",
]
