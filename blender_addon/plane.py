"""Build an RTI plane: mesh, coefficient textures, material and the light drivers.

The model is read by the bundled core (``pnrelight.formats.rti_folder.load_model``),
with Blender's own image loader for the JPEG planes, so no Pillow is needed.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import bpy
import numpy as np
from pnrelight.lightstage.layouts import node_tree

from . import nodes
from .datablocks import Created, select_only

SOURCES = {"AUTO": "auto", "PLANES": "planes"}
DEFAULT_LIGHT_TYPES = {"SUN", "POINT"}
DRIVABLE_LIGHT_TYPES = {"SUN", "POINT", "SPOT", "AREA"}
LIGHT_TYPE_SUN = 1  # RNA enum value of Light.type 'SUN', as a driver reads it
DEFAULT_LIGHT_DIR = (0.5, 0.3, math.sqrt(1 - 0.5 ** 2 - 0.3 ** 2))


class BlenderPlaneReader:
    """``read_plane`` for load_model: Blender's image loader instead of Pillow.

    Calls return (H, W, 3) float32 byte/255, top row first; the loaded images are kept
    (``images``, by file name) so 8-bit planes can become textures as they are.
    """

    def __init__(self):
        self.images: dict[str, bpy.types.Image] = {}
        self.arrays: dict[str, np.ndarray] = {}

    def __call__(self, path) -> np.ndarray:
        from pnrelight.errors import InputError

        path = Path(path)
        if not path.is_file():
            raise InputError(f"image not found: {path} (check the model folder)")
        try:
            image = bpy.data.images.load(str(path), check_existing=False)
        except RuntimeError as exc:
            raise InputError(f"cannot read image {path}: {exc} (is it a valid image file?)") from None
        self.images[path.name] = image
        image.colorspace_settings.name = "Non-Color"
        w, h = image.size
        if w == 0 or h == 0:
            raise InputError(f"cannot read image {path} (is it a valid image file?)")
        buf = np.empty(w * h * 4, np.float32)
        image.pixels.foreach_get(buf)
        arr = np.ascontiguousarray(buf.reshape(h, w, 4)[::-1, :, :3])
        self.arrays[path.name] = arr
        return arr

    def discard(self, keep=()) -> None:
        keep = {img.as_pointer() for img in keep}
        for image in self.images.values():
            if image.as_pointer() not in keep:
                bpy.data.images.remove(image)
        self.images.clear()
        self.arrays.clear()


def load(path, source: str, reader: BlenderPlaneReader):
    """-> (model, folder, info); the planes go through ``reader``. Raises pnrelight.InputError for bad folders.

    A legacy .ptm/.rti file is read by the core as it is (no planes, no info.json): folder is the file.
    """
    from pnrelight.errors import InputError
    from pnrelight.formats.legacy_rti import is_legacy_path
    from pnrelight.formats.rti_folder import load_model, read_info

    path = Path(path)
    if is_legacy_path(path):
        return load_model(path), path, {}
    if path.suffix.lower() == ".json" and not path.exists():
        path = path.parent  # name the folder in the error
    folder, info = read_info(path)
    model = load_model(folder, source=SOURCES[source], read_plane=reader)
    if model.kind == "neural":
        count = nodes.neural_node_count(model)
        if count > nodes.NODE_BUDGET:
            raise InputError(f"{folder}: decoder needs ~{count} shader nodes, over the budget of {nodes.NODE_BUDGET} "
                             "(distill it into a smaller student with 'pnrelight rti distill')")
    return model, folder, info


def plane_size(model, info: dict) -> tuple[float, float, bool]:
    """(width, height) in metres when pixelSizeInMM is known, else the long side is 1; and whether physical."""
    h, w = model.shape
    px_mm = info.get("pixelSizeInMM") or info.get("pixelSizeInMm")
    try:
        px_mm = float(px_mm) if px_mm else 0.0
    except (TypeError, ValueError):
        px_mm = 0.0
    if px_mm > 0:
        return w * px_mm / 1000.0, h * px_mm / 1000.0, True
    longest = max(w, h)
    return w / longest, h / longest, False


def _plane_mesh(name: str, width: float, height: float):
    mesh = bpy.data.meshes.new(name)
    hw, hh = width / 2, height / 2
    mesh.from_pydata([(-hw, -hh, 0.0), (hw, -hh, 0.0), (hw, hh, 0.0), (-hw, hh, 0.0)], [], [(0, 1, 2, 3)])
    uv = mesh.uv_layers.new(name="UVMap")
    uv.data.foreach_set("uv", [0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    mesh.update()
    return mesh


def coefficient_images(model, name: str, created: Created):
    """Float images holding the coefficients normalised per channel to [0, 1]; -> (images, scales, offsets).

    coefficient = texel · scale + offset (the dequantisation done in the material).
    """
    h, w = model.shape
    coeffs = model.coefficients.reshape(h * w, -1).astype(np.float64)
    n_planes = nodes.plane_count(model)
    padded = np.zeros((h * w, 3 * n_planes))
    padded[:, :coeffs.shape[1]] = coeffs
    lo = padded.min(axis=0)
    span = padded.max(axis=0) - lo
    span[span < 1e-12] = 1.0
    normalised = ((padded - lo) / span).reshape(h, w, n_planes, 3)
    images = []
    for i in range(n_planes):
        rgba = np.ones((h, w, 4), np.float32)
        rgba[..., :3] = normalised[:, :, i]
        image = created.add(bpy.data.images.new(f"{name} plane {i}", w, h, alpha=False, float_buffer=True))
        image.colorspace_settings.name = "Non-Color"
        image.pixels.foreach_set(np.ascontiguousarray(rgba[::-1]).ravel())  # Blender rows go bottom-up
        image.file_format = "OPEN_EXR"
        image.use_half_precision = False  # packed into the .blend as float32 EXR, lossless
        image.pack()
        images.append(image)
    return images, span.reshape(n_planes, 3), lo.reshape(n_planes, 3)


def stored_plane_textures(model, info: dict, reader: BlenderPlaneReader):
    """The 8-bit planes as textures, as stored: -> (images, scales, offsets, channel orders) or None.

    coefficient 3i + c = texel_i[order_i[c]] · scale[i, c] + offset[i, c], from info.json's
    relight scale/bias or OpenLIME min/max and colorspace. The mapping is checked against the
    coefficients the core decoded from the same planes; if it does not reproduce them (a layout
    this add-on does not know), None: the caller falls back to float textures.
    """
    n = model.coefficients.shape[2]
    n_planes = nodes.plane_count(model)
    scale = np.zeros(3 * n_planes)
    offset = np.zeros(3 * n_planes)
    try:
        if model.kind == "neural":
            names = [f"plane_{j + 1}.jpg" for j in range(n_planes)]
            order = ["rgb".index(ch) for ch in str(info.get("colorspace", "rgb")).lower()]
            lo = np.asarray(info["min"], np.float64).ravel()[:n]
            hi = np.asarray(info["max"], np.float64).ravel()[:n]
            scale[:n], offset[:n] = hi - lo, lo
        else:
            names = [f"plane_{j}.jpg" for j in range(n_planes)]
            order = [0, 1, 2]
            mat = (info.get("materials") or [{}])[0]
            sc = np.asarray(mat.get("scale", [1.0] * n), np.float64)[:n]
            bias = np.asarray(mat.get("bias", [0.0] * n), np.float64)[:n]
            scale[:n], offset[:n] = sc, -bias * sc
    except (KeyError, TypeError, ValueError):
        return None
    if any(name not in reader.arrays for name in names):
        return None  # exact coefficients were used
    coeffs = model.coefficients
    for i, name in enumerate(names):
        texels = reader.arrays[name]
        for c in range(3):
            k = 3 * i + c
            if k >= n:
                continue
            predicted = texels[..., order[c]] * scale[k] + offset[k]
            if np.abs(predicted - coeffs[..., k]).max() > 1e-5 * (1.0 + abs(scale[k]) + abs(offset[k])):
                return None
    images = [reader.images[name] for name in names]
    for image in images:
        image.pack()  # the JPEG bytes go into the .blend: small, and the file stands alone
    return images, scale.reshape(n_planes, 3), offset.reshape(n_planes, 3), [order] * n_planes


def build_material(model, name: str, images, scales, offsets, created: Created, *, interpolation: str, gain: float,
                   linearize: bool = False, orders=None):
    """Material: textures -> dequantise -> model group -> (optional sRGB -> linear) -> emission · gain."""
    mat = created.add(bpy.data.materials.new(f"pnrelight {name}"))
    tree = node_tree(mat, clear=True)
    light_group, new = nodes.light_direction_group()
    if new:
        created.add(light_group)
    model_group, new = nodes.model_group(model)
    if new:
        created.add(model_group)

    light_node = tree.nodes.new("ShaderNodeGroup")
    light_node.node_tree = light_group
    light_node.name = light_node.label = "Light Direction"
    light_node.location = (-200, 300)
    group_node = tree.nodes.new("ShaderNodeGroup")
    group_node.node_tree = model_group
    group_node.name = "RTI Model"
    group_node.location = (100, 0)
    tree.links.new(light_node.outputs["Direction"], group_node.inputs["Direction"])
    for i, image in enumerate(images):
        tex = tree.nodes.new("ShaderNodeTexImage")
        tex.image = image
        tex.interpolation = interpolation
        tex.extension = "EXTEND"
        tex.location = (-600, -250 * i)
        tex.name = f"Plane {i}"
        deq = tree.nodes.new("ShaderNodeVectorMath")
        deq.operation = "MULTIPLY_ADD"
        deq.name = deq.label = f"Dequantise {i}"
        deq.inputs[1].default_value = tuple(float(v) for v in scales[i])
        deq.inputs[2].default_value = tuple(float(v) for v in offsets[i])
        deq.location = (-300, -250 * i)
        color = tex.outputs["Color"]
        if orders is not None and list(orders[i]) != [0, 1, 2]:  # e.g. OpenLIME "bgr" planes
            sep = tree.nodes.new("ShaderNodeSeparateXYZ")
            comb = tree.nodes.new("ShaderNodeCombineXYZ")
            sep.location, comb.location = (-450, -250 * i - 80), (-380, -250 * i - 80)
            tree.links.new(color, sep.inputs[0])
            for c, src in enumerate(orders[i]):
                tree.links.new(sep.outputs[src], comb.inputs[c])
            color = comb.outputs[0]
        tree.links.new(color, deq.inputs[0])
        tree.links.new(deq.outputs["Vector"], group_node.inputs[f"Plane {i}"])
    srgb_group, _ = nodes.srgb_to_linear_group()
    srgb_node = tree.nodes.new("ShaderNodeGroup")
    srgb_node.node_tree = srgb_group
    srgb_node.location = (350, -200)
    mix = tree.nodes.new("ShaderNodeMix")
    mix.data_type = "RGBA"
    mix.name = mix.label = "sRGB to Linear"
    mix.inputs["Factor"].default_value = 1.0 if linearize else 0.0
    mix.location = (550, 0)
    tree.links.new(group_node.outputs["Color"], srgb_node.inputs["Color"])
    tree.links.new(group_node.outputs["Color"], nodes._socket(mix.inputs, "A_Color"))
    tree.links.new(srgb_node.outputs["Color"], nodes._socket(mix.inputs, "B_Color"))
    emission = tree.nodes.new("ShaderNodeEmission")
    emission.name = "Emission"
    emission.inputs["Strength"].default_value = gain
    emission.location = (750, 0)
    out = tree.nodes.new("ShaderNodeOutputMaterial")
    out.location = (950, 0)
    tree.links.new(nodes._socket(mix.outputs, "Result_Color"), emission.inputs["Color"])
    tree.links.new(emission.outputs["Emission"], out.inputs["Surface"])
    return mat


# ----------------------------------------------------------------------------- light wiring

def _add_var(driver, name, target_id, **target):
    var = driver.variables.new()
    var.name = name
    if "transform_type" in target:
        var.type = "TRANSFORMS"
        var.targets[0].id = target_id
        var.targets[0].transform_space = "WORLD_SPACE"
        for key, value in target.items():
            setattr(var.targets[0], key, value)
    else:
        var.type = "SINGLE_PROP"
        var.targets[0].id_type = "OBJECT"
        var.targets[0].id = target_id
        var.targets[0].data_path = target["data_path"]
    return var


def wire_light(material, light_obj) -> None:
    """(Re)create the drivers feeding the material's light direction from ``light_obj``.

    Every expression is a simple expression (no Python, no "Auto Run Python Scripts"):
    the location, the sun's +Z axis from its world quaternion, and whether it is a sun.
    """
    node = material.node_tree.nodes["Light Direction"]
    for name in ("Light Location", "Sun Direction", "Is Sun"):
        node.inputs[name].driver_remove("default_value")
    for axis, fcurve in zip("XYZ", node.inputs["Light Location"].driver_add("default_value")):
        d = fcurve.driver
        d.type = "SCRIPTED"
        _add_var(d, "v", light_obj, transform_type=f"LOC_{axis}")
        d.expression = "v"
    sun_axis = ("2*(x*z + w*y)", "2*(y*z - w*x)", "1 - 2*(x*x + y*y)")
    for expr, fcurve in zip(sun_axis, node.inputs["Sun Direction"].driver_add("default_value")):
        d = fcurve.driver
        d.type = "SCRIPTED"
        for comp in "wxyz":
            _add_var(d, comp, light_obj, transform_type=f"ROT_{comp.upper()}", rotation_mode="QUATERNION")
        d.expression = expr
    d = node.inputs["Is Sun"].driver_add("default_value").driver
    d.type = "SCRIPTED"
    _add_var(d, "t", light_obj, data_path="data.type")
    d.expression = f"t == {LIGHT_TYPE_SUN}"


def material_drivers(material):
    anim = material.node_tree.animation_data
    return list(anim.drivers) if anim else []


def default_light(context, location, created: Created):
    """Nearest sun/point light to ``location``, else a new sun (direction DEFAULT_LIGHT_DIR)."""
    from mathutils import Vector

    lights = [o for o in context.scene.objects if o.type == "LIGHT" and o.data.type in DEFAULT_LIGHT_TYPES]
    if lights:
        return min(lights, key=lambda o: (o.matrix_world.translation - Vector(location)).length)
    data = created.add(bpy.data.lights.new("pnrelight Sun", "SUN"))
    obj = created.add(bpy.data.objects.new("pnrelight Sun", data))
    context.scene.collection.objects.link(obj)
    obj.location = Vector(location) + Vector((0.0, 0.0, 1.0))
    obj.rotation_euler = Vector((0.0, 0.0, 1.0)).rotation_difference(Vector(DEFAULT_LIGHT_DIR)).to_euler()
    return obj


# ----------------------------------------------------------------------------- import

def import_plane(context, path, *, source: str = "AUTO", interpolation: str = "Linear", gain: float = 1.0,
                 linearize: bool = False, light=None):
    """Import one model folder (or .ptm/.rti file) as a plane at the 3D cursor; returns the object.

    Raises pnrelight.InputError for bad input; on any failure nothing is left behind.
    """
    start = time.perf_counter()
    created = Created()
    reader = BlenderPlaneReader()
    try:
        model, folder, info = load(path, source, reader)
        name = (folder.stem if folder.is_file() else folder.name) or "RTI"
        width, height, physical = plane_size(model, info)
        mesh = created.add(_plane_mesh(name, width, height))
        stored = stored_plane_textures(model, info, reader)
        if stored is not None:
            images, scales, offsets, orders = stored
            for image in images:
                image.name = f"{name} {image.name}"
            coefficient_source = "8-bit planes (textures as stored)"
        else:
            images, scales, offsets = coefficient_images(model, name, created)
            orders = None
            coefficient_source = "8-bit planes" if any(k.startswith("plane_") for k in reader.arrays) else "exact"
        reader.discard(keep=images)
        mat = build_material(model, name, images, scales, offsets, created, interpolation=interpolation, gain=gain,
                             linearize=linearize, orders=orders)
        mesh.materials.append(mat)
        obj = created.add(bpy.data.objects.new(name, mesh))
        (context.collection or context.scene.collection).objects.link(obj)
        obj.location = context.scene.cursor.location
        if light is None:
            light = default_light(context, obj.location, created)
        settings = obj.pnrelight
        settings.is_rti = True
        settings.folder = str(folder)
        settings.kind = model.kind
        settings.colorspace = model.colorspace
        settings.terms = int(model.terms)
        settings.label = model.label
        settings.source = coefficient_source
        settings.pixels = f"{model.shape[1]} x {model.shape[0]}"
        settings.size = f"{width * 1000:.1f} x {height * 1000:.1f} mm" if physical else "unknown pixel size (long side 1 m)"
        settings.node_count = nodes.count_nodes(mat.node_tree)
        settings.group = mat.node_tree.nodes["RTI Model"].node_tree.name
        settings.light = light
        settings.linearize = linearize
        wire_light(mat, light)
        select_only(context, obj)
        settings.import_seconds = time.perf_counter() - start
        return obj
    except BaseException:
        created.rollback()
        raise
