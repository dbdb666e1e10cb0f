"""Shader node groups that evaluate RTI models per pixel.

One node group per model kind, shared by every plane of that kind:

* "pnrelight Light Direction": the unit light direction in the plane's object frame,
  from the light's world location (point, spot, area: per surface point) or the sun's
  world direction, both fed by drivers with simple expressions.
* "pnrelight PTM RGB" / "PTM LRGB" / "HSH<T> RGB" / "HSH<T> LRGB": the basis of
  :mod:`pnrelight.rti.bases` rebuilt with Math nodes, then Σ basis · coefficients.
* "pnrelight Neural <widths> <hash>": the decoder's dense layers as Vector Math nodes
  (three inputs per node), ELU between layers; one group per decoder (weights are baked in),
  holding one small sub-group per three units of each layer ("... L<layer>.<i>").
* "pnrelight sRGB to Linear": optional display conversion used by every material.

Group inputs "Plane i" are dequantised coefficient triples (plane i holds coefficients
3i..3i+2 of the layouts in :mod:`pnrelight.rti.model`). The output "Color" is clamped to
[0, 1] like :func:`pnrelight.rti.model.relight`.
"""
from __future__ import annotations

import hashlib
import math

import bpy
import numpy as np

GROUP_VERSION = 1
LIGHT_GROUP = "pnrelight Light Direction"
# Neural decoders beyond this many nodes are refused: Cycles and EEVEE compile them, but
# slowly (a 9-50-50-3 teacher is ~1,400 nodes; hidden widths up to ~80 fit).
NODE_BUDGET = 4000
HSH_MIN_COS = math.sin(0.01)  # cos(pi/2 - 0.01): relight's theta clamp, as a bound on cos(theta)


class GraphBuilder:
    """Adds Math / Vector Math nodes to a tree, folding constants, laying nodes out by depth."""

    def __init__(self, tree: bpy.types.NodeTree, x0: float = 0.0):
        self.tree = tree
        self.x0 = x0
        self.depth: dict[str, int] = {}
        self.rows: dict[int, int] = {}

    def node(self, idname: str, inputs=(), depth: int | None = None, **props):
        node = self.tree.nodes.new(idname)
        for key, value in props.items():
            setattr(node, key, value)
        d = 1 + max([self._depth_of(v) for v in inputs] + [0]) if depth is None else depth
        self.depth[node.name] = d
        row = self.rows.get(d, 0)
        self.rows[d] = row + 1
        node.location = (self.x0 + 220 * d, -160 * row)
        node.hide = True
        return node

    def _depth_of(self, value) -> int:
        if isinstance(value, bpy.types.NodeSocket):
            return self.depth.get(value.node.name, 0)
        return 0

    def connect(self, socket, value) -> None:
        if isinstance(value, bpy.types.NodeSocket):
            self.tree.links.new(value, socket)
        elif value is not None:
            socket.default_value = value

    def math(self, op: str, a, b=None, c=None):
        """Scalar Math node; both operands constant -> a Python float, no node."""
        args = [a, b, c]
        if not any(isinstance(v, bpy.types.NodeSocket) for v in args):
            return _fold(op, a, b, c)
        node = self.node("ShaderNodeMath", [v for v in args if v is not None], operation=op)
        for sock, value in zip(node.inputs, args):
            self.connect(sock, value)
        return node.outputs[0]

    def vmath(self, op: str, a, b=None, c=None):
        """Vector Math node; returns its Vector output (Value for DOT_PRODUCT)."""
        args = [a, b, c]
        node = self.node("ShaderNodeVectorMath", [v for v in args if v is not None], operation=op)
        for sock, value in zip(node.inputs[:3], args):
            if value is not None and not isinstance(value, bpy.types.NodeSocket):
                value = tuple(float(x) for x in np.broadcast_to(np.asarray(value, float), 3))
            self.connect(sock, value)
        return node.outputs["Value" if op == "DOT_PRODUCT" else "Vector"]

    def combine(self, x, y, z):
        node = self.node("ShaderNodeCombineXYZ", [x, y, z])
        for sock, value in zip(node.inputs, (x, y, z)):
            self.connect(sock, 0.0 if value is None else value)
        return node.outputs[0]

    def separate(self, vector):
        node = self.node("ShaderNodeSeparateXYZ", [vector])
        self.connect(node.inputs[0], vector)
        return node.outputs[0], node.outputs[1], node.outputs[2]

    def product(self, constant: float, *factors):
        """constant · Π factors with one Math node per factor."""
        out = constant
        for f in factors:
            out = self.math("MULTIPLY", f, out)
        return out


def _fold(op, a, b, c):
    ops = {"MULTIPLY": lambda: a * b, "ADD": lambda: a + b, "SUBTRACT": lambda: a - b,
           "MAXIMUM": lambda: max(a, b), "MINIMUM": lambda: min(a, b), "MULTIPLY_ADD": lambda: a * b + c,
           "SQRT": lambda: math.sqrt(max(a, 0.0)), "COSINE": lambda: math.cos(a), "SINE": lambda: math.sin(a)}
    return float(ops[op]())


# ----------------------------------------------------------------------------- groups

def _new_group(name: str, inputs: list[tuple[str, str]], outputs: list[tuple[str, str]]):
    group = bpy.data.node_groups.new(name, "ShaderNodeTree")
    for sock_name, sock_type in inputs:
        group.interface.new_socket(sock_name, in_out="INPUT", socket_type=sock_type)
    for sock_name, sock_type in outputs:
        group.interface.new_socket(sock_name, in_out="OUTPUT", socket_type=sock_type)
    gin = group.nodes.new("NodeGroupInput")
    gout = group.nodes.new("NodeGroupOutput")
    group["pnrelight_version"] = GROUP_VERSION
    return group, gin, gout


def _existing(name: str):
    group = bpy.data.node_groups.get(name)
    if group is not None and group.get("pnrelight_version") == GROUP_VERSION:
        return group
    return None


def light_direction_group():
    """Unit direction from the shading point to the light, in the shaded object's frame."""
    group = _existing(LIGHT_GROUP)
    if group is not None:
        return group, False
    group, gin, gout = _new_group(
        LIGHT_GROUP,
        [("Light Location", "NodeSocketVector"), ("Sun Direction", "NodeSocketVector"), ("Is Sun", "NodeSocketFloat")],
        [("Direction", "NodeSocketVector")])
    b = GraphBuilder(group)
    gin.location = (-200, 0)
    texco = b.node("ShaderNodeTexCoord", depth=0)
    to_obj_point = b.node("ShaderNodeVectorTransform", depth=1, vector_type="POINT", convert_from="WORLD", convert_to="OBJECT")
    group.links.new(gin.outputs["Light Location"], to_obj_point.inputs[0])
    to_obj_dir = b.node("ShaderNodeVectorTransform", depth=1, vector_type="VECTOR", convert_from="WORLD", convert_to="OBJECT")
    group.links.new(gin.outputs["Sun Direction"], to_obj_dir.inputs[0])
    near = b.vmath("SUBTRACT", to_obj_point.outputs[0], texco.outputs["Object"])
    mix = b.node("ShaderNodeMix", [near], data_type="VECTOR")
    group.links.new(gin.outputs["Is Sun"], mix.inputs["Factor"])
    group.links.new(near, _socket(mix.inputs, "A_Vector"))
    group.links.new(to_obj_dir.outputs[0], _socket(mix.inputs, "B_Vector"))
    unit = b.vmath("NORMALIZE", _socket(mix.outputs, "Result_Vector"))
    group.links.new(unit, gout.inputs["Direction"])
    gout.location = (220 * 6, 0)
    return group, True


SRGB_GROUP = "pnrelight sRGB to Linear"


def srgb_to_linear_group():
    """The sRGB transfer function undone per component: for display through a view transform."""
    group = _existing(SRGB_GROUP)
    if group is not None:
        return group, False
    group, gin, gout = _new_group(SRGB_GROUP, [("Color", "NodeSocketVector")], [("Color", "NodeSocketVector")])
    b = GraphBuilder(group)
    gin.location = (-200, 0)
    c = gin.outputs["Color"]
    high = b.vmath("POWER", b.vmath("MULTIPLY_ADD", c, 1 / 1.055, 0.055 / 1.055), 2.4)
    low = b.vmath("MULTIPLY", c, 1 / 12.92)
    above = b.vmath("MAXIMUM", b.vmath("SIGN", b.vmath("SUBTRACT", c, 0.04045)), 0.0)  # 1 where c > 0.04045
    out = b.vmath("MULTIPLY_ADD", above, b.vmath("SUBTRACT", high, low), low)
    group.links.new(out, gout.inputs["Color"])
    gout.location = (220 * (max(b.depth.values()) + 1), 0)
    return group, True


def _socket(sockets, identifier):
    return next(s for s in sockets if s.identifier == identifier)


def group_name(model) -> str:
    if model.kind == "neural":
        widths = [model.terms] + [int(np.asarray(w).shape[0]) for w, _ in model.layers]
        digest = hashlib.sha1(b"".join(np.asarray(a, np.float32).tobytes() for layer in model.layers for a in layer)).hexdigest()[:8]
        return f"pnrelight Neural {'-'.join(map(str, widths))} {digest}"
    kind = "PTM" if model.kind == "ptm" else f"HSH{model.terms}"
    return f"pnrelight {kind} {model.colorspace.upper()}"


def plane_count(model) -> int:
    return (model.coefficients.shape[2] + 2) // 3


def neural_node_count(model) -> int:
    """Nodes the decoder will have, sub-groups included (checked against NODE_BUDGET before building)."""
    in_vecs = (model.terms + 2) // 3 + 1
    count = 6  # group input/output, separate, light combine, clamp
    for i, (w, _) in enumerate(model.layers):
        units = int(np.asarray(w).shape[0])
        triples = (units + 2) // 3
        hidden = i < len(model.layers) - 1
        count += units * (in_vecs + 1) + triples * (1 + 1 + 2 + (4 if hidden else 0))  # group node, combine, io, ELU
        in_vecs = triples
    return count


def model_group(model):
    """The node group evaluating ``model``'s kind; (group, created)."""
    name = group_name(model)
    group = _existing(name)
    if group is not None:
        return group, False
    n_planes = plane_count(model)
    group, gin, gout = _new_group(
        name,
        [("Direction", "NodeSocketVector")] + [(f"Plane {i}", "NodeSocketVector") for i in range(n_planes)],
        [("Color", "NodeSocketColor")])
    b = GraphBuilder(group)
    gin.location = (-200, 0)
    planes = [gin.outputs[f"Plane {i}"] for i in range(n_planes)]
    x, y, z = b.separate(gin.outputs["Direction"])
    if model.kind == "neural":
        color = _neural(b, model.layers, model.terms, planes, x, y, name)
    else:
        basis = _ptm_basis(b, x, y) if model.kind == "ptm" else _hsh_basis(b, x, y, z, model.terms)
        color = _linear(b, basis, planes, model.colorspace)
    color = b.vmath("MINIMUM", b.vmath("MAXIMUM", color, 0.0), 1.0)
    group.links.new(color, gout.inputs["Color"])
    gout.location = (220 * (max(b.depth.values()) + 1), 0)
    return group, True


# ----------------------------------------------------------------------------- bases

def _ptm_basis(b: GraphBuilder, x, y):
    return [1.0, x, y, b.math("MULTIPLY", x, x), b.math("MULTIPLY", x, y), b.math("MULTIPLY", y, y)]


def _hsh_basis(b: GraphBuilder, x, y, z, terms: int):
    """pnrelight.rti.bases.hsh_basis as nodes: c = cos(clamped theta), s = sqrt(c - c²)."""
    pi = math.pi
    c = b.math("MAXIMUM", z, HSH_MIN_COS)
    s = b.math("SQRT", b.math("MULTIPLY", c, b.math("SUBTRACT", 1.0, c)))
    phi = b.math("ARCTAN2", y, x)
    cp, sp = b.math("COSINE", phi), b.math("SINE", phi)
    two_c_1 = b.math("MULTIPLY_ADD", c, 2.0, -1.0)
    out = [1.0 / math.sqrt(2 * pi),
           b.product(math.sqrt(6 / pi), cp, s),
           b.product(math.sqrt(3 / (2 * pi)), two_c_1),
           b.product(math.sqrt(6 / pi), sp, s)]
    if terms > 4:
        phi2 = b.math("MULTIPLY", phi, 2.0)
        c2p, s2p = b.math("COSINE", phi2), b.math("SINE", phi2)
        cc_c = b.math("MULTIPLY_ADD", c, c, b.math("MULTIPLY", c, -1.0))  # c² - c
        quad = b.math("MULTIPLY_ADD", cc_c, 6.0, 1.0)  # 6c² - 6c + 1
        two_c_1_s = b.math("MULTIPLY", two_c_1, s)
        out += [b.product(math.sqrt(30 / pi), c2p, cc_c),
                b.product(math.sqrt(30 / pi), cp, two_c_1_s),
                b.product(math.sqrt(5 / (2 * pi)), quad),
                b.product(math.sqrt(30 / pi), sp, two_c_1_s),
                b.product(math.sqrt(30 / pi), s2p, cc_c)]
    if terms > 9:
        phi3 = b.math("MULTIPLY", phi, 3.0)
        c3p, s3p = b.math("COSINE", phi3), b.math("SINE", phi3)
        s3 = b.math("MULTIPLY", s, b.math("MULTIPLY", s, s))
        cubic = b.math("MULTIPLY_ADD", cc_c, 5.0, 1.0)  # 5c² - 5c + 1
        # 20c³ - 30c² + 12c - 1 = (2c - 1)(10c² - 10c + 1)
        cubic_z = b.math("MULTIPLY", two_c_1, b.math("MULTIPLY_ADD", cc_c, 10.0, 1.0))
        two_c_1_cc = b.math("MULTIPLY", two_c_1, cc_c)
        s_cubic = b.math("MULTIPLY", s, cubic)
        out += [b.product(2 * math.sqrt(35 / pi), c3p, s3),
                b.product(math.sqrt(210 / pi), c2p, two_c_1_cc),
                b.product(2 * math.sqrt(21 / pi), cp, s_cubic),
                b.product(math.sqrt(7 / (2 * pi)), cubic_z),
                b.product(2 * math.sqrt(21 / pi), sp, s_cubic),
                b.product(math.sqrt(210 / pi), s2p, two_c_1_cc),
                b.product(2 * math.sqrt(35 / pi), s3p, s3)]
    return out[:terms]


def _linear(b: GraphBuilder, basis: list, planes: list, colorspace: str):
    """Σ basis_t · coefficients (rgb: plane t is term t's RGB; lrgb: colour · Σ basis · lum)."""
    if colorspace == "rgb":
        acc = (0.0, 0.0, 0.0)
        for term, plane in zip(basis, planes):
            acc = b.vmath("MULTIPLY_ADD", plane, term, acc)
        return acc
    lum = 0.0
    for k, plane in enumerate(planes[1:]):
        chunk = basis[3 * k:3 * k + 3] + [0.0] * (3 - len(basis[3 * k:3 * k + 3]))
        weights = tuple(chunk) if all(isinstance(v, float) for v in chunk) else b.combine(*chunk)
        d = b.vmath("DOT_PRODUCT", plane, weights)
        lum = d if isinstance(lum, float) and lum == 0.0 else b.math("ADD", lum, d)
    return b.vmath("MULTIPLY", planes[0], lum)


# ----------------------------------------------------------------------------- neural

def _neural(b: GraphBuilder, layers, latent_size: int, planes: list, x, y, prefix: str):
    """Dense layers, three inputs per Vector Math node, one sub-group per three output units.

    Unit j: acc = (b_j, 0, 0); acc = in_k · w_jk + acc for each packed input triple k;
    h_j = acc · (1, 1, 1). Hidden activations are packed in threes and pass through
    ELU + 1 = max(h, 0) + e^min(h, 0) (Vector Math has POWER, not EXP); the + 1 is
    taken back in the next layer's bias (b' = b - Σ_i W_ji). The sub-groups keep every
    tree small: Blender updates a whole tree on each edit, so one big tree builds in O(n²).
    """
    light = b.combine(x, y, 0.0)
    inputs = list(planes) + [light]
    w0, b0 = (np.asarray(a, np.float64) for a in layers[0])
    # First layer weights packed per input triple: latent triples (zero padded), then (lx, ly, 0).
    n_lat = len(planes) * 3
    w_lat = np.zeros((w0.shape[0], n_lat))
    w_lat[:, :latent_size] = w0[:, :latent_size]
    w_light = np.zeros((w0.shape[0], 3))
    w_light[:, :2] = w0[:, latent_size:latent_size + 2]
    packed = np.concatenate([w_lat, w_light], axis=1)
    bias = b0
    for li in range(len(layers)):
        if li > 0:
            w, bl = (np.asarray(a, np.float64) for a in layers[li])
            bias = bl - w.sum(axis=1)  # undo the + 1 of ELU + 1
            packed = np.zeros((w.shape[0], 3 * len(inputs)))
            packed[:, :w.shape[1]] = w
        last = li == len(layers) - 1
        outputs = []
        for t in range(0, packed.shape[0], 3):
            sub = _unit_triple_group(f"{prefix} L{li + 1}.{t // 3 + 1}", packed[t:t + 3], bias[t:t + 3], len(inputs), elu=not last)
            node = b.node("ShaderNodeGroup", inputs)
            node.node_tree = sub
            for k, vec in enumerate(inputs):
                b.connect(node.inputs[k], vec)
            outputs.append(node.outputs[0])
        inputs = outputs
    return inputs[0]


def _unit_triple_group(name: str, weights: np.ndarray, bias: np.ndarray, n_inputs: int, *, elu: bool):
    """Group computing up to three units from n_inputs packed triples -> one vector (ELU + 1 when hidden)."""
    group, gin, gout = _new_group(name, [(f"In {k}", "NodeSocketVector") for k in range(n_inputs)],
                                  [("Out", "NodeSocketVector")])
    b = GraphBuilder(group)
    gin.location = (-200, 0)
    units = []
    for j in range(weights.shape[0]):
        acc = (float(bias[j]), 0.0, 0.0)
        for k in range(n_inputs):
            wk = weights[j, 3 * k:3 * k + 3]
            if np.any(wk != 0):
                acc = b.vmath("MULTIPLY_ADD", gin.outputs[k], tuple(wk), acc)
        units.append(b.vmath("DOT_PRODUCT", acc, (1.0, 1.0, 1.0)) if not isinstance(acc, tuple) else float(acc[0]))
    v = b.combine(*(units + [0.0, 0.0])[:3])
    if elu:
        neg = b.vmath("POWER", (math.e,) * 3, b.vmath("MINIMUM", v, 0.0))
        v = b.vmath("ADD", b.vmath("MAXIMUM", v, 0.0), neg)
    group.links.new(v, gout.inputs[0])
    gout.location = (220 * (max(b.depth.values()) + 1), 0)
    return group


def count_nodes(tree, seen=None) -> int:
    """Nodes in a tree, counting each node group's content once."""
    seen = set() if seen is None else seen
    total = 0
    for node in tree.nodes:
        total += 1
        sub = getattr(node, "node_tree", None)
        if sub is not None and sub.name not in seen:
            seen.add(sub.name)
            total += count_nodes(sub, seen)
    return total
