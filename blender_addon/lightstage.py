"""Virtual light stage in Blender: Add › Light › Light Stage, and Render › Render OLAT Dataset.

Thin host code: layouts, placement and calibration come from the core (pnrelight.lightstage),
the dataset format from olat.py; here they become Blender objects and Cycles renders.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix, Vector
from pnrelight.atomic import atomic_output_file
from pnrelight.errors import InputError  # bad input: reported as an ERROR, nothing written

from pnrelight.formats import exr
from pnrelight.lightstage.layouts import node_tree

from . import olat
from .datablocks import Created, select_only

STAGE_KEY = "pnrelight_stage"  # custom property (a group) of the stage's Empty
LIGHT_KEY = "pnrelight_light"  # custom property (a group) of each of its lights
GEOMETRY_TYPES = {"MESH", "CURVE", "SURFACE", "FONT", "META", "VOLUME", "POINTCLOUD", "CURVES", "GREASEPENCIL"}


def _layout_items():
    from pnrelight.lightstage.layouts import PRESET_NOTES

    items = [(name, name, note) for name, note in PRESET_NOTES.items()]
    items += [(f"ico:{n}", f"Icosphere {n}", f"{n} lights: the vertices of a subdivided icosahedron") for n in (42, 162, 642)]
    items += [("COUNT", "Fibonacci sphere", "Count lights spread evenly over the sphere (Fibonacci spiral)"),
              ("FILE", "File (.lp / .json)", "Light directions from an RTI .lp file or a JSON layout")]
    return items


LAYOUT_ITEMS = _layout_items()
LIGHT_TYPE_ITEMS = [("SUN", "Sun", "Directional lights: strength in W/m^2 of irradiance"),
                    ("POINT", "Point", "Near-field point lights sized from the layout"),
                    ("AREA", "Area", "Near-field disk lights facing the centre, sized from the layout")]


# Blender 4.5+ lets a path property take "//" (blend-relative) paths; 4.2 has no such option.
PATH_OPTIONS = {"PATH_SUPPORTS_BLEND_RELATIVE"} if "is_path_supports_blend_relative" in bpy.types.Property.bl_rna.properties else set()


# ----------------------------------------------------------------------------- building the stage


def _bounds(objects) -> tuple[Vector, float] | None:
    """World bounding-box centre and bounding-sphere radius of the objects' geometry."""
    corners = [o.matrix_world @ Vector(c) for o in objects if o.type in GEOMETRY_TYPES for c in o.bound_box]
    if not corners:
        return None
    lo = Vector([min(c[k] for c in corners) for k in range(3)])
    hi = Vector([max(c[k] for c in corners) for k in range(3)])
    centre = (lo + hi) / 2
    return centre, max((c - centre).length for c in corners)


def is_stage(obj) -> bool:
    return obj is not None and obj.type == "EMPTY" and STAGE_KEY in obj.keys()


def add_light_stage(context, layout, *, light_type: str = "SUN", strength: float = 1.0, radius: float = 0.0,
                    hemisphere: bool = False, target=None, name: str = "Light Stage"):
    """Build a light stage and return its Empty: one light per light of ``layout`` (anything
    ``pnrelight.lightstage.load_layout`` takes) around ``target`` (an object: its bounding box
    centre; None: the 3D cursor), in a new collection, parented under the Empty.

    radius 0 fits the rig to the target (pnrelight.lightstage.rig_radius). Raises InputError for a
    bad layout or value; builds nothing then.
    """
    from pnrelight.lightstage import layouts, rig

    lay = layouts.load_layout(layout)
    if hemisphere and not lay.hemisphere:
        lay = layouts.upper_hemisphere(lay)
    box = _bounds([target, *target.children_recursive]) if target is not None else None
    centre, bounding = box if box else ((target.matrix_world.translation if target else context.scene.cursor.location), 0.0)
    placed = rig.place_lights(lay, rig.rig_radius(lay, bounding, radius), light_type.lower(), strength)
    positions = layouts.to_blender(placed.positions)
    directions = layouts.to_blender(lay.directions)

    created = Created()
    try:
        collection = bpy.data.collections.new(name)
        context.scene.collection.children.link(collection)
        empty = bpy.data.objects.new(name, None)
        empty.empty_display_type = "SPHERE"
        empty.empty_display_size = placed.radius_m
        empty.location = centre
        collection.objects.link(empty)
        empty[STAGE_KEY] = {
            "layout": lay.name, "count": len(lay), "hemisphere": bool(lay.hemisphere), "notes": lay.notes,
            "light_type": placed.light_type, "strength": placed.strength, "unit": placed.unit,
            "calibration": placed.calibration, "radius_m": placed.radius_m, "target": target.name if target else "",
            "solid_angles_sr": [float(w) for w in lay.solid_angles]}
        digits = olat.light_digits(len(lay))
        for i in range(len(lay)):
            data = bpy.data.lights.new(f"{empty.name} {i:0{digits}d}", light_type)
            data.energy = float(placed.energy[i])
            if light_type == "SUN":
                data.angle = float(placed.angle_rad[i])
            elif light_type == "POINT":
                data.shadow_soft_size = float(placed.size_m[i]) / 2
            else:
                data.shape = "DISK"
                data.size = float(placed.size_m[i])
            if hasattr(data, "use_soft_falloff"):
                data.use_soft_falloff = False  # exact inverse-square falloff
            obj = bpy.data.objects.new(data.name, data)
            obj.parent = empty
            obj.location = positions[i]
            obj.rotation_mode = "QUATERNION"
            obj.rotation_quaternion = Vector((0.0, 0.0, 1.0)).rotation_difference(Vector(directions[i]))  # shines along -Z
            obj.visible_camera = False
            obj[LIGHT_KEY] = {"id": i, "solid_angle_sr": float(lay.solid_angles[i]),
                              "direction": [float(v) for v in lay.directions[i]],
                              "distance_m": float(placed.distance_m[i]), "size_m": float(placed.size_m[i])}
            collection.objects.link(obj)
    except Exception:
        created.rollback()
        raise
    select_only(context, empty)
    return empty


def find_stage(context, name: str = ""):
    """The light stage Empty: ``name``; else the active object's (it or its parent); else the only one in the scene."""
    if name:
        obj = bpy.data.objects.get(name)
        if not is_stage(obj):
            raise InputError(f"no light stage named {name!r} (add one with Add › Light › Light Stage)")
        return obj
    active = context.active_object
    for obj in (active, active.parent if active else None):
        if is_stage(obj):
            return obj
    stages = [o for o in context.scene.objects if is_stage(o)]
    if not stages:
        raise InputError("no light stage in the scene (add one with Add › Light › Light Stage)")
    if len(stages) > 1:
        raise InputError(f"{len(stages)} light stages in the scene: select the one to render")
    return stages[0]


def stage_lights(stage) -> list:
    lights = sorted((c for c in stage.children if c.type == "LIGHT" and LIGHT_KEY in c.keys()), key=lambda o: o[LIGHT_KEY]["id"])
    if not lights:
        raise InputError(f"light stage {stage.name!r} has no lights")
    return lights


# ----------------------------------------------------------------------------- rendering the dataset


def _channel(channels: dict, passes: tuple, suffix: str):
    """A pass channel of a multilayer EXR ("ViewLayer.Depth.Z"); Blender 5 names passes
    "Diffuse Color", Blender 4 "DiffCol"."""
    for name in passes:
        for key, value in channels.items():
            if key.endswith(f".{name}.{suffix}") or key == f"{name}.{suffix}":
                return value
    raise RuntimeError(f"the passes render has no {passes[0]} pass")


def _rigid(matrix: Matrix) -> Matrix:
    """A world matrix without its scale."""
    loc, rot, _ = matrix.decompose()
    return Matrix.Translation(loc) @ rot.to_matrix().to_4x4()


class _Saved:
    """Attribute values changed for the run, put back by restore() (latest change first)."""

    def __init__(self):
        self.items = []

    def set(self, owner, attr, value):
        self.items.append((owner, attr, getattr(owner, attr)))
        setattr(owner, attr, value)

    def restore(self):
        for owner, attr, value in reversed(self.items):
            try:
                setattr(owner, attr, value)
            except (ReferenceError, AttributeError, TypeError):
                pass  # deleted meanwhile, or an enum value the current format no longer allows
        self.items.clear()


IMAGE_ATTRS = ("media_type", "file_format", "color_mode", "color_depth", "exr_codec", "use_exr_interleave", "color_management")


class OlatRun:
    """One run of the Render OLAT Dataset operator: everything is checked in __init__ (InputError,
    nothing written); begin() writes the metadata and changes the scene for rendering; step()
    renders the next unfinished frame (an OLAT frame, or the ground-truth passes of a camera);
    finish() writes transforms.json (and preview.png when complete) and restores the scene."""

    def __init__(self, context, *, directory: str, cameras: str = "ACTIVE", samples: int = 64, passes: bool = True,
                 stage: str = "", subject: str = "", preview: bool = True):
        from pnrelight import __version__
        from pnrelight.lightstage.layouts import from_blender, pose_from_blender

        scene = context.scene
        self.scene, self.view_layer = scene, context.view_layer
        self.view_layer.update()  # world matrices of objects a script has just made or moved
        self.stage = find_stage(context, stage)
        self.lights = stage_lights(self.stage)
        info = self.stage[STAGE_KEY].to_dict()
        if cameras == "ALL":
            self.cams = sorted((o for o in scene.objects if o.type == "CAMERA"), key=lambda o: o.name)
            if not self.cams:
                raise InputError("no camera in the scene (add one)")
        else:
            if scene.camera is None or scene.camera.type != "CAMERA":
                raise InputError("the scene has no active camera (set Scene › Camera)")
            self.cams = [scene.camera]
        for cam in self.cams:
            if cam.data.type != "PERSP":
                raise InputError(f"camera {cam.name!r} is {cam.data.type.lower()}: the dataset needs perspective (pinhole) cameras")
        r = scene.render
        if r.pixel_aspect_x != r.pixel_aspect_y:
            raise InputError("non-square pixels (Output › Format › Aspect) are not supported")
        self.size = (r.resolution_x * r.resolution_percentage // 100, r.resolution_y * r.resolution_percentage // 100)
        self.root = self._output_folder(directory)
        target = bpy.data.objects.get(info.get("target", "")) if info.get("target") else None
        self.target = target if target is not None and target.name in scene.objects else None
        self.subject = olat.subject_id(subject or (self.target.name if self.target else ""))
        self.samples, self.passes, self.preview = int(samples), bool(passes), bool(preview)

        # metadata, in the stage's frame (origin at the Empty, core axes)
        to_stage = _rigid(self.stage.matrix_world).inverted()
        self.light_rows = []
        for obj in self.lights:
            props = obj[LIGHT_KEY]
            m = to_stage @ obj.matrix_world
            pos = np.array(m.translation)
            kind = obj.data.type.lower()
            d = np.array(m.to_3x3() @ Vector((0.0, 0.0, 1.0))) if kind == "sun" else pos
            size = (props.get("size_m", 0.0) if kind == "sun" else 2 * obj.data.shadow_soft_size if kind in ("point", "spot")
                    else max(obj.data.size, obj.data.size_y if obj.data.shape in ("RECTANGLE", "ELLIPSE") else 0.0))
            self.light_rows.append(olat.light_entry(
                light_id=props["id"], direction=from_blender(d / np.linalg.norm(d)), position=from_blender(pos),
                light_type=kind, size_m=size, solid_angle_sr=props.get("solid_angle_sr", 0.0),
                strength=obj.data.energy, colour=obj.data.color))
        self.cam_rows = []
        for cam in self.cams:
            c = cam.data
            k = olat.intrinsics(lens_mm=c.lens, sensor_width_mm=c.sensor_width, sensor_height_mm=c.sensor_height,
                                sensor_fit=c.sensor_fit, width=self.size[0], height=self.size[1], shift_x=c.shift_x, shift_y=c.shift_y)
            pose = pose_from_blender(np.array(to_stage @ _rigid(cam.matrix_world)))
            self.cam_rows.append({"name": cam.name, "intrinsics": k, "pose": (pose + 0.0).tolist()})
        renderer = {"name": "Blender Cycles", "version": bpy.app.version_string, "samples": self.samples,
                    "device": scene.cycles.device, "seed": scene.cycles.seed, "denoising": bool(scene.cycles.use_denoising),
                    "max_bounces": scene.cycles.max_bounces, "pixel_filter": scene.cycles.pixel_filter_type,
                    "filter_width_px": scene.cycles.filter_width}
        layout = {"name": info.get("layout", ""), "count": len(self.lights), "hemisphere": bool(info.get("hemisphere", False))}
        parts = {"layout": layout, "lights": self.light_rows, "cameras": self.cam_rows, "image_size": list(self.size),
                 "samples": self.samples, "subject": self.subject}
        calibration = {"light_type": info.get("light_type", ""), "strength": info.get("strength", 0.0),
                       "unit": info.get("unit", ""), "text": info.get("calibration", "")}
        self.dataset = olat.dataset_json(
            generator_version=__version__, layout=layout, renderer=renderer, calibration=calibration,
            seeds=[scene.cycles.seed], image_size=list(self.size), cameras={self.subject: len(self.cams)},
            subjects=[self.subject], fingerprint=olat.fingerprint(parts))
        existing = self.root / "dataset.json"
        if existing.exists():
            try:
                old = json.loads(existing.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                raise InputError(f"{existing} is not readable JSON (choose another folder)") from None
            changed = olat.differences(old, self.dataset)
            if changed:
                raise InputError(f"{self.root} holds a dataset made with other {', '.join(changed)} "
                                 "(choose another folder, or delete it to start again)")

        # the frames: per camera, its ground-truth passes, then one frame per light
        self.tasks = []
        for ci in range(len(self.cams)):
            if self.passes:
                self.tasks.append(("passes", ci, None, [olat.pass_relpath(self.subject, ci, k) for k in olat.PASS_FILES]))
            self.tasks += [("olat", ci, li, [olat.olat_relpath(self.subject, ci, li, len(self.lights))]) for li in range(len(self.lights))]
        self.done, self.pending, self.rendered = {}, [], 0
        self.saved, self.world, self.visible = _Saved(), None, None

    def _output_folder(self, directory: str) -> Path:
        if not directory.strip():
            raise InputError("no output folder given")
        if directory.startswith("//") and not bpy.data.filepath:
            raise InputError(f"{directory} is relative to the .blend file: save the file first, or give an absolute folder")
        root = Path(bpy.path.abspath(directory)).resolve()
        parent = root
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise InputError(f"cannot write the dataset to {root}: {parent} is a file")
        try:
            fd, probe = tempfile.mkstemp(prefix=".pnrelight-probe-", dir=parent)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise InputError(f"output folder {root} is not writable ({exc.strerror or exc})") from None
        return root

    # -- the run

    def begin(self) -> None:
        """Write dataset.json and lights.json, find the finished frames, set the scene up."""
        self.root.mkdir(parents=True, exist_ok=True)
        olat.write_json(self.root / "dataset.json", self.dataset)
        olat.write_json(self.root / "lights.json", olat.lights_json(self.light_rows))
        self.done = olat.finished_rows(self.root)
        self.pending = [t for t in self.tasks if not all(p in self.done for p in t[3])]
        self.total = len(self.pending)
        self.started = time.perf_counter()
        self._set_up_scene()

    @property
    def finished(self) -> bool:
        return not self.pending

    def describe(self) -> str:
        if not self.pending:
            return "done"
        kind, ci, li, _ = self.pending[0]
        what = "passes" if kind == "passes" else f"light {li + 1}/{len(self.lights)}"
        return f"OLAT: camera {ci + 1}/{len(self.cams)}, {what} ({self.total - len(self.pending) + 1}/{self.total}) — Esc stops"

    def step(self) -> None:
        """Render the next unfinished frame (or a camera's passes) and record it in the manifest."""
        kind, ci, li, paths = self.pending[0]
        cam = self.cams[ci]
        if self.scene.camera != cam:
            self.scene.camera = cam
        if kind == "olat":
            self._show(self.lights[li])
            self._olat_frame(ci, li, paths[0])
        else:
            self._show(None)
            self._passes(ci, cam, [p for p in paths if p not in self.done])
        self.pending.pop(0)
        self.rendered += 1

    def finish(self) -> None:
        """Restore the scene; write transforms.json (the finished OLAT frames) and, when every
        frame is there, preview.png."""
        self._restore_scene()
        frames = []
        k0 = self.cam_rows[0]["intrinsics"]
        for ci, cam in enumerate(self.cam_rows):
            k = cam["intrinsics"]
            for li, light in enumerate(self.light_rows):
                path = olat.olat_relpath(self.subject, ci, li, len(self.lights))
                if path in self.done:
                    frame = {"file_path": path.split("/", 2)[2], "cam_idx": ci, "light_idx": li,
                             "transform_matrix": cam["pose"], "pl_pos": light["position"],
                             "pl_intensity": [light["intensity"]["strength"] * c for c in light["intensity"]["colour"]]}
                    if any(k[x] != k0[x] for x in ("fl_x", "fl_y", "cx", "cy")):
                        frame.update({x: k[x] for x in ("fl_x", "fl_y", "cx", "cy")})
                    frames.append(frame)
        olat.write_json(self.root / "subjects" / self.subject / "transforms.json", olat.transforms_json(k0, frames))
        if self.preview and self.finished and (self.rendered or not (self.root / "preview.png").is_file()):
            paths = [olat.olat_relpath(self.subject, 0, li, len(self.lights)) for li in range(len(self.lights))]
            images = []
            for p in paths:
                ch = exr.read_exr(self.root / p)
                images.append(np.stack([ch["R"], ch["G"], ch["B"]], axis=-1))
            with atomic_output_file(self.root / "preview.png") as tmp:
                exr.write_png(tmp, olat.preview_grid(images))

    # -- frames

    def _render(self, tmp: Path) -> float:
        self.scene.render.filepath = str(tmp)
        t0 = time.perf_counter()
        bpy.ops.render.render(write_still=True, scene=self.scene.name, layer=self.view_layer.name)
        if not tmp.is_file():
            raise RuntimeError(f"Blender wrote no image to {tmp}")
        return time.perf_counter() - t0

    def _record(self, path: str, seconds: float, ci: int, li, kind: str) -> None:
        self.done[path] = olat.record_frame(self.root, path=path, seconds=seconds, subject=self.subject, cam_idx=ci,
                                            light_idx=li, kind=kind)

    def _olat_frame(self, ci: int, li: int, path: str) -> None:
        final = self.root / path
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.stem}.part.exr")
        self._image_format(multilayer=False)
        seconds = self._render(tmp)
        os.replace(tmp, final)
        self._record(path, seconds, ci, li, "olat")

    def _passes(self, ci: int, cam, paths: list) -> None:
        folder = self.root / paths[0].rsplit("/", 1)[0]
        folder.mkdir(parents=True, exist_ok=True)
        kinds = {p: next(k for k, name in olat.PASS_FILES.items() if p.endswith("/" + name)) for p in paths}
        tmp = folder / ".passes.part.exr"
        self._image_format(multilayer=True)
        t0 = time.perf_counter()
        ch = self._render_layers(tmp)
        images = {"albedo": {c: _channel(ch, ("Diffuse Color", "DiffCol"), c) for c in "RGB"}}
        n = np.stack([_channel(ch, ("Normal",), c) for c in "XYZ"], axis=-1) @ np.array(cam.matrix_world.to_3x3().normalized())
        length = np.linalg.norm(n, axis=-1, keepdims=True)
        n = np.where(length > 1e-6, n / np.maximum(length, 1e-6), 0.0)  # world -> camera space, unit length
        images["normal"] = {c: n[..., k] for k, c in enumerate("RGB")}
        depth = _channel(ch, ("Depth",), "Z")
        images["depth"] = {"R": np.where(depth < 1e9, depth, 0.0)}
        mask = _channel(ch, ("Combined",), "A")  # coverage of everything rendered
        others = self._other_geometry()
        if "mask" in kinds.values() and others:
            # the subject's own coverage: everything else a holdout (antialiased, occlusion kept)
            held = _Saved()
            try:
                for obj in others:
                    held.set(obj, "is_holdout", True)
                mask = _channel(self._render_layers(tmp), ("Combined",), "A")
            finally:
                held.restore()
        images["mask"] = np.round(np.clip(mask, 0.0, 1.0) * 255).astype(np.uint8)
        seconds = (time.perf_counter() - t0) / len(paths)
        for path, kind in kinds.items():
            with atomic_output_file(self.root / path) as part:
                if kind == "mask":
                    exr.write_png(part, images["mask"])
                else:
                    exr.write_exr(part, images[kind], half=kind != "depth")
            self._record(path, seconds, ci, None, kind)

    def _render_layers(self, tmp: Path) -> dict:
        """Render to a temporary multilayer EXR and return its channels."""
        self._render(tmp)
        try:
            return exr.read_exr(tmp)
        finally:
            tmp.unlink()

    def _other_geometry(self) -> list:
        """Rendered geometry that is not the subject (none when the stage has no subject object)."""
        if self.target is None:
            return []
        subject = {self.target, *self.target.children_recursive}
        return [o for o in self.view_layer.objects if o.type in GEOMETRY_TYPES and not o.hide_render and o not in subject]

    # -- the scene during the run

    def _show(self, light) -> None:
        """Only ``light`` (or none) of the stage renders."""
        if self.visible is not light:
            if self.visible is not None:
                self.visible.hide_render = True
            if light is not None:
                light.hide_render = False
            self.visible = light

    def _image_format(self, *, multilayer: bool) -> None:
        im = self.scene.render.image_settings
        if hasattr(im, "media_type"):  # Blender 5
            im.media_type = "MULTI_LAYER_IMAGE" if multilayer else "IMAGE"
        im.file_format = "OPEN_EXR_MULTILAYER" if multilayer else "OPEN_EXR"
        if hasattr(im, "use_exr_interleave"):
            im.use_exr_interleave = multilayer  # one part: what exr.read_exr reads
        im.color_depth = "32" if multilayer else "16"
        im.exr_codec = "NONE" if multilayer else "ZIP"
        if not multilayer:
            im.color_mode = "RGBA"

    def _set_up_scene(self) -> None:
        s, scene = self.saved, self.scene
        im = scene.render.image_settings
        self.image_settings = [(a, getattr(im, a)) for a in IMAGE_ATTRS if hasattr(im, a)]
        im.color_management = "FOLLOW_SCENE"
        r = scene.render
        s.set(r, "engine", "CYCLES")
        s.set(scene.cycles, "samples", self.samples)
        for attr, value in (("film_transparent", True), ("use_compositing", False), ("use_sequencer", False),
                            ("use_border", False), ("use_multiview", False), ("use_single_layer", True),
                            ("use_persistent_data", True), ("use_file_extension", True), ("filepath", r.filepath)):
            if hasattr(r, attr):
                s.set(r, attr, value)
        s.set(scene, "camera", scene.camera)
        self.world = bpy.data.worlds.new("pnrelight OLAT black")
        self.world.color = (0.0, 0.0, 0.0)
        background = next((n for n in node_tree(self.world).nodes if n.type == "BACKGROUND"), None)
        if background is not None:
            background.inputs["Strength"].default_value = 0.0
        s.set(scene, "world", self.world)
        vl = self.view_layer
        for attr in ("use_pass_z", "use_pass_normal", "use_pass_diffuse_color"):
            s.set(vl, attr, True)
        for obj in scene.objects:  # every light off; step() turns one stage light on
            if obj.type == "LIGHT":
                s.set(obj, "hide_render", True)
        self.visible = None

    def finish_scene_only(self) -> None:
        self._restore_scene()

    def _restore_scene(self) -> None:
        self.saved.restore()
        im = self.scene.render.image_settings
        for attr, value in getattr(self, "image_settings", []):
            try:
                setattr(im, attr, value)
            except (AttributeError, TypeError):
                pass
        if self.world is not None:
            bpy.data.worlds.remove(self.world)
            self.world = None


# ----------------------------------------------------------------------------- operators


class PNRELIGHT_OT_add_light_stage(bpy.types.Operator):
    """Add a light stage: a sphere (or dome) of lights around the active object (or the 3D cursor), one light per layout direction"""

    bl_idname = "object.pnrelight_add_light_stage"
    bl_label = "Light Stage"
    bl_options = {"REGISTER", "UNDO", "PRESET"}

    layout_name: bpy.props.EnumProperty(name="Layout", items=LAYOUT_ITEMS, default="156")
    count: bpy.props.IntProperty(name="Count", default=64, min=4, soft_max=1000, max=10242,
                                 description="Lights of the Fibonacci sphere")
    filepath: bpy.props.StringProperty(name="File", subtype="FILE_PATH", options=PATH_OPTIONS,
                                       description="An RTI .lp file or a JSON layout (see docs/lightstage.md)")
    light_type: bpy.props.EnumProperty(name="Light Type", items=LIGHT_TYPE_ITEMS, default="SUN")
    strength: bpy.props.FloatProperty(
        name="Strength", default=1.0, min=1e-6, soft_max=100.0,
        description="Irradiance (W/m^2) each light gives the stage centre: a sun's strength; point and area lights "
                    "get the power that gives it (1 = a calibrated light stage frame)")
    radius: bpy.props.FloatProperty(
        name="Radius", default=0.0, min=0.0, soft_max=10.0, subtype="DISTANCE", unit="LENGTH",
        description="Distance of the lights from the centre (0: 3 times the object's bounding-sphere radius, "
                    "or the layout's own distance at the 3D cursor)")
    hemisphere: bpy.props.BoolProperty(name="Hemisphere Only", default=False,
                                       description="Keep the lights at or above the horizon (a dome)")

    def draw(self, _context):
        col = self.layout.column()
        col.prop(self, "layout_name")
        if self.layout_name == "COUNT":
            col.prop(self, "count")
        elif self.layout_name == "FILE":
            col.prop(self, "filepath")
        for name in ("light_type", "strength", "radius", "hemisphere"):
            col.prop(self, name)

    def layout_spec(self):
        if self.layout_name == "COUNT":
            return int(self.count)
        if self.layout_name == "FILE":
            if not self.filepath:
                raise InputError("choose a .lp or .json layout file")
            return bpy.path.abspath(self.filepath)
        return self.layout_name

    def execute(self, context):
        active = context.active_object
        target = active if active is not None and active.select_get() and not is_stage(active) and not is_stage(active.parent) else None
        t0 = time.perf_counter()
        try:
            empty = add_light_stage(context, self.layout_spec(), light_type=self.light_type, strength=self.strength,
                                    radius=self.radius, hemisphere=self.hemisphere, target=target)
        except InputError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        info = empty[STAGE_KEY]
        self.report({"INFO"}, f"{empty.name}: {info['count']} {self.light_type.lower()} lights ({info['layout']}), "
                              f"radius {info['radius_m']:.3g} m, {time.perf_counter() - t0:.2f} s")
        return {"FINISHED"}


class PNRELIGHT_OT_render_olat(bpy.types.Operator):
    """Render each light of the light stage alone with Cycles, plus albedo, normal, depth and mask, into an OLAT dataset (Esc stops; a rerun resumes)"""

    bl_idname = "render.pnrelight_olat_dataset"
    bl_label = "Render OLAT Dataset"
    bl_options = {"REGISTER"}

    directory: bpy.props.StringProperty(name="Output Folder", subtype="DIR_PATH", default="//olat_dataset/", options=PATH_OPTIONS)
    cameras: bpy.props.EnumProperty(name="Cameras", default="ACTIVE",
                                    items=[("ACTIVE", "Scene Camera", "The scene's active camera"),
                                           ("ALL", "All Cameras", "Every camera in the scene, by name")])
    samples: bpy.props.IntProperty(name="Samples", default=64, min=1, soft_max=4096, description="Cycles samples per frame")
    passes: bpy.props.BoolProperty(name="Ground Truth Passes", default=True,
                                   description="Albedo (Diffuse Color), camera-space normals, depth and the subject's mask")
    preview: bpy.props.BoolProperty(name="Preview", default=True, description="preview.png: the first camera's OLAT frames")
    stage: bpy.props.StringProperty(name="Light Stage", default="",
                                    description="The light stage's Empty (empty: the selected one, or the only one)")
    subject: bpy.props.StringProperty(name="Subject", default="", description="Subject id (empty: the stage's object)")
    max_frames: bpy.props.IntProperty(default=0, min=0, options={"HIDDEN", "SKIP_SAVE"},
                                      description="Stop after this many frames (0: all); as if Esc was pressed")
    interactive: bpy.props.BoolProperty(default=False, options={"HIDDEN", "SKIP_SAVE"})

    def start(self, context):
        try:
            run = OlatRun(context, directory=self.directory, cameras=self.cameras, samples=self.samples,
                          passes=self.passes, stage=self.stage, subject=self.subject, preview=self.preview)
        except InputError as exc:
            self.report({"ERROR"}, str(exc))
            return None
        try:
            run.begin()
        except OSError as exc:
            run.finish_scene_only()
            self.report({"ERROR"}, f"cannot write the dataset to {run.root}: {exc}")
            return None
        return run

    def execute(self, context):
        run = self.start(context)
        if run is None:
            return {"CANCELLED"}
        if self.interactive and context.window is not None and not bpy.app.background:
            self._run, self._timer = run, context.window_manager.event_timer_add(0.05, window=context.window)
            self._stop = False
            context.window_manager.progress_begin(0, max(run.total, 1))
            context.window_manager.modal_handler_add(self)
            return {"RUNNING_MODAL"}
        try:
            while not run.finished and not (self.max_frames and run.rendered >= self.max_frames):
                run.step()
        except Exception as exc:  # noqa: BLE001 - the frames so far stay valid
            return end_run(self, context, run, error=exc)
        return end_run(self, context, run)

    def invoke(self, context, _event):
        self.interactive = True
        return context.window_manager.invoke_props_dialog(self, width=420)

    def modal(self, context, event):
        return modal_step(self, context, event)


def modal_step(op, context, event) -> set:
    """One event of the modal run: a timer tick renders a frame; Esc stops after the current one."""
    run = op._run
    if event.type == "ESC" and event.value == "PRESS":
        op._stop = True
    if event.type != "TIMER" and not op._stop:
        return {"RUNNING_MODAL"}
    if op._stop or run.finished or (op.max_frames and run.rendered >= op.max_frames):
        return end_run(op, context, run)
    try:
        run.step()
    except Exception as exc:  # noqa: BLE001
        return end_run(op, context, run, error=exc)
    context.window_manager.progress_update(run.total - len(run.pending))
    if context.workspace is not None:
        context.workspace.status_text_set(run.describe())
    return {"RUNNING_MODAL"}


LAST_RUN = {}  # what the latest run did (renders, files, seconds): for reports and tests


def end_run(op, context, run, error=None) -> set:
    timer = getattr(op, "_timer", None)
    if timer is not None:
        context.window_manager.event_timer_remove(timer)
        op._timer = None
        context.window_manager.progress_end()
        if context.workspace is not None:
            context.workspace.status_text_set(None)
    try:
        run.finish()
    except Exception as exc:  # noqa: BLE001
        error = error or exc
    LAST_RUN.clear()
    LAST_RUN.update(rendered=run.rendered, pending=len(run.pending), files=len(run.done),
                    seconds=time.perf_counter() - run.started, root=str(run.root))
    if error is not None:
        op.report({"ERROR"}, f"OLAT render stopped: {type(error).__name__}: {error} ({len(run.done)} files finished; rerun to resume)")
        return {"CANCELLED"}
    if not run.finished:
        op.report({"WARNING"}, f"stopped after {run.rendered} renders, {len(run.pending)} to go: rerun to resume ({run.root})")
        return {"CANCELLED"}
    op.report({"INFO"}, f"OLAT dataset complete: {run.rendered} renders this run, {len(run.done)} files in {run.root}")
    return {"FINISHED"}


def menu_light_add(self, _context):
    self.layout.operator(PNRELIGHT_OT_add_light_stage.bl_idname, text="Light Stage (pnrelight)", icon="LIGHT_SUN")


def menu_render(self, _context):
    self.layout.operator(PNRELIGHT_OT_render_olat.bl_idname, text="Render OLAT Dataset (pnrelight)", icon="RENDER_STILL")


classes = (PNRELIGHT_OT_add_light_stage, PNRELIGHT_OT_render_olat)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.VIEW3D_MT_light_add.append(menu_light_add)
    bpy.types.TOPBAR_MT_render.append(menu_render)


def unregister():
    bpy.types.TOPBAR_MT_render.remove(menu_render)
    bpy.types.VIEW3D_MT_light_add.remove(menu_light_add)
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
