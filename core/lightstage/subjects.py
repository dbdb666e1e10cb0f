"""Subjects of a virtual light stage: synthetic people from the default head, or given meshes.

* :func:`generate_subjects` -- ``n`` distinct synthetic people from the ICT-FaceKit head
  (:func:`pnrelight.avatar.face_model.load_ict_face_model`): identity coefficients ~ N(0, 1),
  an expression from :data:`EXPRESSIONS`, a skin tone with low-frequency variation, redder lips,
  plain eyes and teeth, and a specular level. Subject ``i`` depends only on ``(seed, i)``, so
  asking for more subjects keeps the first ones.
* :func:`write_synthetic_subject` -- a synthetic subject as an avatar-like folder (``avatar.glb``,
  ``textures/``, ``subject.json``) that any renderer's ``load_subject`` reads like an avatar.
* :func:`inspect_source` -- checks an avatar folder, ``.glb`` or ``.obj`` given as a subject (a
  mesh with triangles, its textures present) and measures its bounding sphere, before anything
  is written.

Frames: the head's model frame = the stage's world frame (metres, +y up, facing +z).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from .dataset import safe_id

SYNTHETIC_PREFIX = "synth"
NUM_IDENTITY = 50  # the ICT head's identity components
DEFAULT_TEXTURE_SIZE = 512

# A small set of expressions (ARKit blendshape weights of the ICT head). Subtle enough that the
# face stays plausible for every identity.
EXPRESSIONS = {
    "neutral": {},
    "smile": {"mouthSmile_L": 0.7, "mouthSmile_R": 0.7, "cheekSquint_L": 0.3, "cheekSquint_R": 0.3},
    "open": {"jawOpen": 0.35, "mouthLowerDown_L": 0.2, "mouthLowerDown_R": 0.2},
    "surprise": {"browInnerUp_L": 0.6, "browInnerUp_R": 0.6, "browOuterUp_L": 0.5, "browOuterUp_R": 0.5,
                 "eyeWide_L": 0.4, "eyeWide_R": 0.4, "jawOpen": 0.2},
    "frown": {"browDown_L": 0.5, "browDown_R": 0.5, "mouthFrown_L": 0.5, "mouthFrown_R": 0.5},
    "pucker": {"mouthPucker": 0.6},
}

# Skin tones from light to dark as sRGB, interpolated in linear light (tone t in [0, 1]).
SKIN_TONES_SRGB = np.array([
    [0.96, 0.80, 0.69], [0.89, 0.69, 0.56], [0.78, 0.57, 0.43], [0.65, 0.47, 0.33], [0.48, 0.33, 0.23], [0.30, 0.20, 0.14],
])
IRIS_SRGB = np.array([[0.30, 0.18, 0.10], [0.20, 0.12, 0.07], [0.33, 0.42, 0.50], [0.35, 0.40, 0.25]])  # browns, blue-grey, green
SCLERA_LINEAR = (0.62, 0.58, 0.55)
TEETH_LINEAR = (0.60, 0.55, 0.45)
GUMS_LINEAR = (0.45, 0.12, 0.12)
SPECULAR_RANGE = (0.10, 0.40)  # k_s as in an avatar's textures/specular.png (0.5 = full shine)
# mediapipe's outer lip contour (landmark indices, in order); the ICT head carries a surface point for each.
LIPS_OUTER = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185]
LIP_TINT = np.array([1.05, 0.62, 0.62])  # lips: redder and a little darker than the skin (linear multipliers)

_MODEL = None


def head_model():
    """The default head (loaded once per process)."""
    global _MODEL
    if _MODEL is None:
        from ..avatar.face_model import load_ict_face_model

        # The geometric landmark embedding: subjects (lips drawn from it, the ground truth's nose tip)
        # must not change when the fit's detector calibration is rebuilt.
        _MODEL = load_ict_face_model(calibrated=False)
    return _MODEL


# ----------------------------------------------------------------------------- synthetic subjects


def generate_subjects(n: int, seed: int = 0) -> list[dict]:
    """``n`` synthetic people: a list of JSON-ready parameter dicts (recorded in dataset.json).

    Subject i (``id`` "synth-000i") draws from the generator seeded by (seed, i): identity (50,)
    ~ N(0, 1), an expression name from :data:`EXPRESSIONS`, a skin tone t ~ U(0, 1) (light to
    dark, linear albedo interpolated in :data:`SKIN_TONES_SRGB`) with a small hue jitter, an
    iris colour, a low-frequency variation seed and amplitude, and a specular level k_s.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"--subjects {n!r} is not a positive number of synthetic subjects")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed {seed!r} is not a non-negative integer")
    from ..avatar.color import srgb_to_linear

    tones = srgb_to_linear(SKIN_TONES_SRGB).astype(np.float64)
    names = list(EXPRESSIONS)
    out = []
    for i in range(int(n)):
        rng = np.random.default_rng([int(seed), i])
        identity = rng.standard_normal(NUM_IDENTITY)
        expression = names[int(rng.integers(len(names)))]
        t = float(rng.uniform())
        x = t * (len(tones) - 1)
        k = min(int(x), len(tones) - 2)
        albedo = tones[k] * (1 - (x - k)) + tones[k + 1] * (x - k)
        albedo = albedo * np.exp(rng.normal(0.0, 0.04, 3))  # a little hue/saturation spread between people
        iris = srgb_to_linear(IRIS_SRGB[int(rng.integers(len(IRIS_SRGB)))]).astype(np.float64)
        out.append({
            "id": f"{SYNTHETIC_PREFIX}-{i:04d}",
            "kind": "synthetic",
            "seed": [int(seed), i],
            "identity": [round(float(v), 6) for v in identity],
            "expression": {"name": expression, "weights": dict(EXPRESSIONS[expression])},
            "skin": {"tone": round(t, 6), "albedo_linear": [round(float(v), 6) for v in np.clip(albedo, 0.01, 0.95)],
                     "variation": round(float(rng.uniform(0.04, 0.12)), 6), "variation_seed": int(rng.integers(2**31))},
            "iris_linear": [round(float(v), 6) for v in iris],
            "specular": round(float(rng.uniform(*SPECULAR_RANGE)), 6),
        })
    return out


def synthetic_mesh(params: dict, model=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The subject's head: vertices (V, 3) float32 metres (identity and expression applied, world
    frame), triangles (F, 3) int32, uvs (V, 2) float32 (v up)."""
    model = model or head_model()
    expr = np.zeros(model.num_expression, np.float32)
    names = list(model.expression_names or [])
    for name, weight in params["expression"]["weights"].items():
        expr[names.index(name)] = weight
    ident = np.asarray(params["identity"], dtype=np.float32)
    # float32 matrix-vector products (~1 ms; the float64 path of shaped_vertices copies the whole basis)
    verts = model.vertices + model.shape_basis[:, :, : len(ident)] @ ident + model.expression_basis @ expr
    return verts.astype(np.float32), model.triangles, model.uvs


def synthetic_textures(params: dict, size: int = DEFAULT_TEXTURE_SIZE, model=None, vertices=None) -> tuple[np.ndarray, np.ndarray]:
    """Procedural albedo (size, size, 3) float32 linear and specular k_s (size, size) float32 in the
    head's UV atlas (row 0 at v = 1, as glTF images).

    Skin (face, head, sockets): the subject's tone times exp(variation x a smooth field of the 3-D
    position) -- a few random low-frequency sinusoids over the head, so the variation is seamless
    across UV charts; lips (inside mediapipe's outer lip contour, in UV) tinted by :data:`LIP_TINT`
    with a soft edge. Eyes, teeth, gums and tongue are plain colours. Specular: the subject's level
    on skin, half of it on the lips, a wet 0.5 on the eyes, 0.2 on the teeth.
    """
    import cv2

    from ..avatar.raster import interpolate, rasterize_uv

    model = model or head_model()
    verts = synthetic_mesh(params, model)[0] if vertices is None else vertices
    raster = rasterize_uv(model.uvs, model.triangles, size)
    covered = raster.face_id >= 0
    part_of_tri = model.vertex_part[model.triangles[:, 0]]
    part = np.where(covered, part_of_tri[np.maximum(raster.face_id, 0)], -1)
    pos = interpolate(verts.astype(np.float32), model.triangles, raster)  # (S, S, 3) metres

    rng = np.random.default_rng(params["skin"]["variation_seed"])
    freq = rng.normal(0.0, 1.0, (6, 3)) * (2.0 * math.pi / 0.12)  # wavelengths ~ 0.1 m: low frequency on a head
    phase = rng.uniform(0.0, 2.0 * math.pi, 6)
    chroma = rng.normal(0.0, 0.3, (6, 3)) + 1.0  # each wave tints the three channels a little differently
    field = np.zeros(pos.shape, dtype=np.float64)
    for f, p, c in zip(freq, phase, chroma):
        field += np.sin(pos @ f + p)[..., None] * c
    field /= math.sqrt(len(freq) / 2.0)  # unit variance
    skin = np.asarray(params["skin"]["albedo_linear"]) * np.exp(params["skin"]["variation"] * field)

    lips = np.zeros((size, size), np.float32)
    lip_uv = _landmark_uvs(model, LIPS_OUTER)
    if lip_uv is not None:
        px = np.round(np.stack([lip_uv[:, 0] * size, (1.0 - lip_uv[:, 1]) * size], 1) * 4).astype(np.int32)
        cv2.fillPoly(lips, [px], 1.0, lineType=cv2.LINE_AA, shift=2)
        lips = cv2.GaussianBlur(lips, (0, 0), max(0.5, size / 512.0))
    lips *= (part == model.part_names.index("face"))
    albedo = skin * (1.0 + lips[..., None] * (LIP_TINT - 1.0))

    specular = np.full((size, size), params["specular"], dtype=np.float64) * (1.0 - 0.5 * lips)
    plain = {"sclera": (SCLERA_LINEAR, 0.5), "iris": (params["iris_linear"], 0.5), "teeth": (TEETH_LINEAR, 0.2),
             "gums_tongue": (GUMS_LINEAR, 0.3)}
    for name, (colour, ks) in plain.items():
        sel = part == model.part_names.index(name)
        albedo[sel] = colour
        specular[sel] = ks
    albedo[~covered] = np.asarray(params["skin"]["albedo_linear"])  # gutter texels: filtering never pulls in black
    return np.clip(albedo, 0.0, 1.0).astype(np.float32), np.clip(specular, 0.0, 1.0).astype(np.float32)


def _landmark_uvs(model, indices) -> np.ndarray | None:
    faces = model.landmark_faces[indices]
    if np.any(faces < 0):
        return None
    corners = model.uvs[model.triangles[faces]]  # (L, 3, 2)
    return np.einsum("lk,lkc->lc", model.landmark_bary[indices], corners)


def write_synthetic_subject(folder: str | os.PathLike, params: dict, *, texture_size: int = DEFAULT_TEXTURE_SIZE) -> Path:
    """Write a synthetic subject as an avatar-like folder and return it.

    Files: ``avatar.glb`` (the head with identity and expression baked in, no morph targets, PBR
    textures embedded), ``textures/albedo.png`` (sRGB) ``albedo.exr`` (linear) ``specular.png``
    (k_s, 16 bit) ``roughness_metallic.png``, ``subject.json`` (the parameters). The folder
    appears at once (built under a temporary name, then renamed); when it already exists with
    the same parameters it is kept, so tasks sharing a subject can all call this.
    """
    import shutil
    import tempfile

    from ..atomic import _apply_umask
    from ..avatar.color import linear_to_srgb
    from ..avatar.export import encode_png, roughness_metallic_from_specular, write_glb
    from ..avatar.face_model import vertex_normals
    from ..imageio import write_exr, write_image

    folder = Path(folder)
    record = {"parameters": params, "texture_size": int(texture_size)}
    if (folder / "subject.json").is_file():
        try:
            if json.loads((folder / "subject.json").read_text())["parameters"] == json.loads(json.dumps(params)):
                return folder
        except (OSError, ValueError, KeyError):
            pass
        raise InputError(f"{folder} holds another subject (remove it, or write the dataset to a new folder)")
    model = head_model()
    verts, tris, uvs = synthetic_mesh(params, model)
    albedo, specular = synthetic_textures(params, texture_size, model, verts)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        (tmp / "textures").mkdir()
        pngs = {"albedo": encode_png(linear_to_srgb(albedo)), "roughness_metallic": encode_png(roughness_metallic_from_specular(specular))}
        for name, data in pngs.items():
            (tmp / "textures" / f"{name}.png").write_bytes(data)
        write_exr(tmp / "textures" / "albedo.exr", albedo)
        write_image(tmp / "textures" / "specular.png", specular, bits=16, atomic=False)
        flat = np.zeros((4, 4, 3), np.float32)
        flat[..., 2] = 1.0  # tangent-space normal map with no detail
        write_glb(tmp / "avatar.glb", verts, tris, uvs, vertex_normals(verts, tris), pngs["albedo"], flat,
                  pngs["roughness_metallic"], name=params["id"])
        (tmp / "subject.json").write_text(json.dumps(record, indent=1) + "\n")
        _apply_umask(tmp, directory=True)
        try:
            os.rename(tmp, folder)  # fails if another task made it first: theirs is the same subject
        except OSError:
            if not (folder / "subject.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


PORTRAIT_CAMERA_DISTANCE = 0.75  # metres from the head's centre
PORTRAIT_FOV_DEG = 26.0


def portrait_view(params: dict, size: int = 256, *, texture_size: int = 512, rotation: np.ndarray | None = None,
                  model=None) -> dict:
    """The subject photographed from the front: {"mesh", "gbuf", "pose", "K", "vertices"}.

    The camera (world frame = camera frame axes, OpenGL: looking down -z) sits
    PORTRAIT_CAMERA_DISTANCE in front of the head's box centre, 1 cm below it, with a vertical field
    of view of PORTRAIT_FOV_DEG; ``rotation`` (3, 3) turns the head about that centre first (a pose).
    ``vertices`` (V, 3) are the posed head's, ``gbuf`` the traced view (``render.prepare_view``).
    """
    from ..avatar.export import roughness_metallic_from_specular
    from .render import check_mesh, prepare_view

    model = model or head_model()
    v, tris, uvs = synthetic_mesh(params, model)
    albedo, spec = synthetic_textures(params, texture_size, model, v)
    centre = 0.5 * (v.min(0) + v.max(0))
    if rotation is not None:
        v = ((v - centre) @ np.asarray(rotation, dtype=np.float64).T + centre).astype(np.float32)
    mesh = check_mesh({"vertices": v, "triangles": tris, "uvs": uvs, "albedo": albedo, "specular": spec,
                       "roughness": roughness_metallic_from_specular(spec)[..., 1]})
    pose = np.eye(4)
    pose[:3, 3] = (centre[0], centre[1] - 0.01, centre[2] + PORTRAIT_CAMERA_DISTANCE)
    f = (size / 2) / np.tan(np.radians(PORTRAIT_FOV_DEG) / 2)
    K = np.array([[f, 0.0, size / 2], [0.0, f, size / 2], [0.0, 0.0, 1.0]])
    return {"mesh": mesh, "gbuf": prepare_view(mesh, pose, K, size), "pose": pose, "K": K, "vertices": v}


def synthetic_bounds(params: dict) -> tuple[np.ndarray, float]:
    """(centre (3,), radius) of the synthetic head's bounding sphere (box centre, farthest vertex)."""
    return bounding_sphere(synthetic_mesh(params)[0])


def bounding_sphere(vertices: np.ndarray) -> tuple[np.ndarray, float]:
    v = np.asarray(vertices, dtype=np.float64)
    centre = 0.5 * (v.min(0) + v.max(0))
    return centre, float(np.linalg.norm(v - centre, axis=1).max())


# ----------------------------------------------------------------------------- given subjects


def subject_id(path: str | os.PathLike, taken: set[str]) -> str:
    """A folder-safe id from a source's name, made unique against ``taken`` (which it joins)."""
    p = Path(path)
    base = safe_id(p.name if p.is_dir() else p.stem, "subject")
    sid, k = base, 2
    while sid in taken:
        sid, k = f"{base}-{k}", k + 1
    taken.add(sid)
    return sid


def inspect_source(path: str | os.PathLike) -> dict:
    """Check a subject given as an avatar folder, a ``.glb`` or an ``.obj`` and measure it.

    Returns ``{"kind": "avatar" | "glb" | "obj", "source": absolute path, "mesh": the mesh file,
    "vertices": V, "triangles": F, "centre": [3], "radius": r}`` (bounding sphere, mesh units).
    Raises InputError (one line) for a missing path, an unknown kind, an empty mesh, non-finite
    positions or missing textures (an avatar folder needs textures/albedo.png; a .glb a base colour
    texture; an .obj an .mtl with a map_Kd file).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"subject {path} not found (give an avatar folder, a .glb or an .obj)")
    if path.is_dir():
        glb = path / "avatar.glb"
        if not glb.is_file():
            raise InputError(f"{path} is not an avatar folder: no avatar.glb (make one with `pnrelight avatar PHOTO -o {path}`)")
        if not (path / "textures" / "albedo.png").is_file():
            raise InputError(f"avatar folder {path} has no textures/albedo.png (missing textures: rebuild it with `pnrelight avatar`)")
        kind, mesh = "avatar", glb
        verts, ntris = _glb_geometry(glb, need_texture=False)
    elif path.suffix.lower() == ".glb":
        kind, mesh = "glb", path
        verts, ntris = _glb_geometry(path, need_texture=True)
    elif path.suffix.lower() == ".obj":
        kind, mesh = "obj", path
        verts, ntris = _obj_geometry(path)
    else:
        raise InputError(f"subject {path} is not an avatar folder, a .glb or an .obj (convert the mesh to glTF binary or OBJ)")
    if len(verts) == 0 or ntris == 0:
        raise InputError(f"subject {path} has an empty mesh ({len(verts)} vertices, {ntris} triangles); give a mesh with triangles")
    if not np.all(np.isfinite(verts)):
        raise InputError(f"subject {path} has non-finite vertex positions (fix the mesh)")
    centre, radius = bounding_sphere(verts)
    if not radius > 0:
        raise InputError(f"subject {path}: all vertices are at one point (an empty mesh); give a real mesh")
    return {"kind": kind, "source": str(path.resolve()), "mesh": str(mesh.resolve()), "vertices": int(len(verts)),
            "triangles": int(ntris), "centre": [float(v) for v in centre], "radius": float(radius)}


def _glb_geometry(path: Path, *, need_texture: bool) -> tuple[np.ndarray, int]:
    """POSITION of every mesh primitive (node transforms are not applied) and the triangle count."""
    from ..formats.glb import read_glb, read_vec3_accessor

    try:
        gltf, binary = read_glb(path)
        accessors = gltf.get("accessors", [])
        chunks, ntris = [], 0
        for mesh in gltf.get("meshes", []):
            for prim in mesh.get("primitives", []):
                if prim.get("mode", 4) != 4 or "POSITION" not in prim.get("attributes", {}):
                    continue
                pts = read_vec3_accessor(gltf, binary, prim["attributes"]["POSITION"])
                chunks.append(pts)
                count = len(pts)
                n_idx = accessors[prim["indices"]]["count"] if "indices" in prim else count
                ntris += int(n_idx) // 3
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any malformed file is bad input
        raise InputError(f"cannot read {path} as a glTF binary mesh ({exc}); export it as .glb (glTF 2.0)") from None
    if need_texture:
        textured = any(isinstance(m, dict) and "baseColorTexture" in m.get("pbrMetallicRoughness", {}) for m in gltf.get("materials", []))
        missing = [img["uri"] for img in gltf.get("images", []) if "uri" in img and not img["uri"].startswith("data:")
                   and not (path.parent / img["uri"]).is_file()]
        if not textured or missing:
            what = f"its texture {missing[0]} is missing" if missing else "it has no base colour texture"
            raise InputError(f"subject {path}: {what} (missing textures: export the .glb with its textures embedded)")
    verts = np.concatenate(chunks) if chunks else np.zeros((0, 3))
    return verts, ntris


def _obj_geometry(path: Path) -> tuple[np.ndarray, int]:
    """Vertices and triangle count of an OBJ (polygons count as fans), checking its material textures."""
    verts, ntris, mtllibs = [], 0, []
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("v "):
                    verts.append([float(x) for x in line.split()[1:4]])
                elif line.startswith("f "):
                    ntris += max(0, len(line.split()) - 3)
                elif line.startswith("mtllib"):
                    mtllibs.append(line.split(None, 1)[1].strip())
    except (ValueError, IndexError) as exc:
        raise InputError(f"cannot read {path} as an OBJ mesh ({exc}); check the 'v x y z' lines") from None
    if not mtllibs:
        raise InputError(f"subject {path} names no material library (missing textures: add 'mtllib NAME.mtl' with a map_Kd texture)")
    textures = []
    for lib in mtllibs:
        mtl = path.parent / lib
        if not mtl.is_file():
            raise InputError(f"subject {path}: material library {lib} is missing (missing textures: put it next to the .obj)")
        for line in mtl.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.strip().startswith("map_Kd"):
                textures.append(mtl.parent / line.strip().split()[-1])
    if not textures:
        raise InputError(f"subject {path}: its materials have no map_Kd texture (missing textures: add a base colour texture)")
    for tex in textures:
        if not tex.is_file():
            raise InputError(f"subject {path}: texture {tex.name} is missing (missing textures: put it next to the .mtl)")
    return np.asarray(verts, dtype=np.float64).reshape(-1, 3), ntris
