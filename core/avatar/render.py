"""Free-view renders of the textured avatar mesh.

How relit free-view renders are made: the relit colour of every texel is computed
in UV space (albedo, normal and specular textures shaded by the environment map for
the camera position of that view, see :func:`pnrelight.avatar.pipeline` and
``pnrelight.avatar.relight``) and the mesh is then drawn *unlit* with that texture.
For a Lambertian + Phong model evaluated per texel this is exact up to texture
resolution (texels are smaller than pixels at the sizes we render), avoids writing a
custom shader for the Phong-lobe prefiltered environments, and renders identically
in pyrender and in the numpy fallback.

Backends: pyrender offscreen through EGL (``PYOPENGL_PLATFORM=egl``, Mesa llvmpipe
on CPU-only machines) with ``RenderFlags.FLAT`` (the flat shader outputs the
base-colour texture unchanged, so sRGB textures come out as sRGB pixels); when EGL
or pyrender is unavailable, the same picture from the project's numpy z-buffer
rasterizer (:mod:`pnrelight.avatar.raster`) with 2x2 supersampling.
"""
from __future__ import annotations

import os
import warnings

import numpy as np

from .raster import interpolate, rasterize

_PYRENDER_BROKEN: str | None = None  # why pyrender failed once in this process (then we stop trying)


def orbit_pose(center: np.ndarray, distance: float, yaw_deg: float, pitch_deg: float = 0.0) -> np.ndarray:
    """Camera-to-world (4, 4) pose of an OpenGL camera (looking down its -z) that orbits ``center``.

    yaw 0 looks at the face from the front (+z side of the model); positive yaw moves the
    camera towards +x (the viewer's right), positive pitch moves it up.
    """
    a, b = np.radians(yaw_deg), np.radians(pitch_deg)
    eye = np.asarray(center, dtype=np.float64) + distance * np.array([np.sin(a) * np.cos(b), np.sin(b), np.cos(a) * np.cos(b)])
    z = eye - center
    z /= np.linalg.norm(z)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x, y, z, eye
    return pose


def framing(vertices: np.ndarray, yfov_deg: float = 30.0, margin: float = 1.15) -> tuple[np.ndarray, float]:
    """Centre (3,) and camera distance that fit the mesh's bounding sphere into the field of view."""
    v = np.asarray(vertices, dtype=np.float64)
    center = 0.5 * (v.min(0) + v.max(0))
    radius = float(np.linalg.norm(v - center, axis=1).max())
    return center, margin * radius / np.sin(np.radians(yfov_deg) / 2)


class TexturedRenderer:
    """Draws a mesh with an unlit texture from camera poses; reuses one offscreen GL context.

    backend: "pyrender", "numpy" or "auto" (pyrender, numpy when EGL/pyrender fails).
    Use as a context manager (``with TexturedRenderer(size) as r: r.render(...)``) or call :meth:`close`.
    """

    def __init__(self, size: tuple[int, int] = (512, 512), *, yfov_deg: float = 30.0, background: float = 1.0, backend: str = "auto"):
        global _PYRENDER_BROKEN
        self.size, self.yfov_deg, self.background = (int(size[0]), int(size[1])), float(yfov_deg), float(background)
        self.backend = "numpy"
        self.requested = backend
        self._gl = None
        if backend == "pyrender" and _PYRENDER_BROKEN is not None:
            raise RuntimeError(f"pyrender unavailable: {_PYRENDER_BROKEN}")
        if backend in ("auto", "pyrender") and _PYRENDER_BROKEN is None:
            try:
                os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
                import pyrender

                self._gl = pyrender.OffscreenRenderer(self.size[1], self.size[0])
                self.backend = "pyrender"
            except Exception as exc:  # noqa: BLE001 - any GL/EGL failure means: use the numpy path
                if backend == "pyrender":
                    raise
                _PYRENDER_BROKEN = f"{type(exc).__name__}: {exc}"
                warnings.warn(f"pyrender/EGL unavailable ({_PYRENDER_BROKEN}); rendering with the numpy rasterizer", RuntimeWarning, stacklevel=2)

    def render(self, vertices: np.ndarray, triangles: np.ndarray, uvs: np.ndarray, texture: np.ndarray, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """vertices (V, 3) world coordinates, triangles (F, 3), uvs (V, 2) v up, texture (T, T, 3) in [0, 1]
        (returned as is: pass sRGB to get sRGB pixels), pose (4, 4) camera-to-world of an OpenGL camera.

        Returns image (H, W, 3) float32 and mask (H, W) bool of the pixels covered by the mesh.
        """
        global _PYRENDER_BROKEN
        if self._gl is not None:
            try:
                return _render_pyrender(self._gl, vertices, triangles, uvs, texture, pose, self.yfov_deg, self.size, self.background)
            except Exception as exc:  # noqa: BLE001 - a GL failure mid-run: finish with the numpy path
                if self.requested == "pyrender":
                    raise
                _PYRENDER_BROKEN = f"{type(exc).__name__}: {exc}"
                warnings.warn(f"pyrender failed ({_PYRENDER_BROKEN}); rendering with the numpy rasterizer", RuntimeWarning, stacklevel=2)
                self.close()
                self.backend = "numpy"
        return _render_numpy(vertices, triangles, uvs, texture, pose, self.yfov_deg, self.size, self.background)

    def close(self) -> None:
        if self._gl is not None:
            self._gl.delete()
            self._gl = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def render_textured(
    vertices: np.ndarray,
    triangles: np.ndarray,
    uvs: np.ndarray,
    texture: np.ndarray,
    pose: np.ndarray,
    *,
    yfov_deg: float = 30.0,
    size: tuple[int, int] = (512, 512),
    background: float = 1.0,
    backend: str = "auto",
) -> tuple[np.ndarray, np.ndarray, str]:
    """One render with :class:`TexturedRenderer`: returns image (H, W, 3), mask (H, W), the backend used."""
    with TexturedRenderer(size, yfov_deg=yfov_deg, background=background, backend=backend) as r:
        img, mask = r.render(vertices, triangles, uvs, texture, pose)
        return img, mask, r.backend


def _render_pyrender(renderer, vertices, triangles, uvs, texture, pose, yfov_deg, size, background):
    import pyrender

    from ..imageio import to_uint8

    h, w = size
    tex = pyrender.Texture(source=to_uint8(texture), source_channels="RGB")
    material = pyrender.MetallicRoughnessMaterial(baseColorTexture=tex, doubleSided=True)
    # Our uvs have v up, which is OpenGL's texture convention: pyrender uploads row 0 as the top (v = 1).
    prim = pyrender.Primitive(
        positions=np.asarray(vertices, dtype=np.float32),
        indices=np.asarray(triangles, dtype=np.uint32),
        texcoord_0=np.asarray(uvs, dtype=np.float32),
        material=material,
    )
    scene = pyrender.Scene(bg_color=[background] * 3 + [0.0], ambient_light=[1.0, 1.0, 1.0])
    scene.add(pyrender.Mesh([prim]))
    scene.add(pyrender.PerspectiveCamera(yfov=np.radians(yfov_deg), aspectRatio=w / h, znear=0.01, zfar=100.0), pose=pose)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="OpenGL")  # PyOpenGL 3.1.0 calls tostring()
        color, depth = renderer.render(scene, flags=pyrender.RenderFlags.FLAT | pyrender.RenderFlags.RGBA)
    return color[..., :3].astype(np.float32) / 255.0, depth > 0


def _render_numpy(vertices, triangles, uvs, texture, pose, yfov_deg, size, background, supersample: int = 2):
    import cv2

    h, w = size
    H, W = h * supersample, w * supersample
    world_to_cam = np.linalg.inv(pose)
    v = np.asarray(vertices, dtype=np.float64) @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]
    f = (H / 2) / np.tan(np.radians(yfov_deg) / 2)
    zc = np.minimum(v[:, 2], -1e-6)
    px = np.stack([W / 2 + f * v[:, 0] / -zc, H / 2 - f * v[:, 1] / -zc, v[:, 2]], axis=1)
    r = rasterize(px, triangles, H, W, perspective_correct=True)
    uv = interpolate(uvs, triangles, r)
    T = texture.shape[0]
    mx = (uv[..., 0] * T - 0.5).astype(np.float32)
    my = ((1.0 - uv[..., 1]) * T - 0.5).astype(np.float32)
    tex = np.asarray(texture, dtype=np.float32)
    img = cv2.remap(tex, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    cover = r.mask.astype(np.float32)
    img = img * cover[..., None] + background * (1.0 - cover[..., None])
    img = img.reshape(h, supersample, w, supersample, 3).mean((1, 3))
    mask = cover.reshape(h, supersample, w, supersample).mean((1, 3)) >= 0.5
    return img.astype(np.float32), mask
