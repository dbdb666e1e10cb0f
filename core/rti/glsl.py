"""RTI relighting in an OpenGL fragment shader: the web viewer's cost model, off screen.

A web viewer (OpenLIME) relights by drawing one quad whose fragment shader reads the
8-bit coefficient planes, dequantises them and evaluates the basis or the neural decoder
per pixel. :class:`ShaderRelighter` does the same on an offscreen EGL context (Mesa
llvmpipe on machines without a GPU), so the throughput it measures is what a viewer
pays per frame, and its images check that the model evaluates correctly in GLSL.

Planes are quantised per coefficient to 8 bits over [min, max], the same dequantisation
the model folder's neural planes use; :func:`dequantized` gives the numpy model whose
:func:`pnrelight.rti.model.relight` the shader must reproduce.

Needs PyOpenGL and pyrender's EGL platform (imported on first use, never by
``import pnrelight``).
"""
from __future__ import annotations

import os
import time

import numpy as np

from ..formats.rti_folder import quantize_min_max
from ..lights import normalize_directions
from .bases import basis_matrix
from .model import RTIModel, check_model

_VERTEX = """#version 330 core
const vec2 corners[3] = vec2[3](vec2(-1.0, -1.0), vec2(3.0, -1.0), vec2(-1.0, 3.0));
void main() { gl_Position = vec4(corners[gl_VertexID], 0.0, 1.0); }
"""


def quantize(coefficients: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model folder's per-coefficient 8-bit planes, packed for RGBA textures.

    (H, W, C) float -> (codes (H, W, 4L) uint8, lo (C,), span (C,) float32) with
    L = ceil(C / 4) textures; padding channels are 0. value = lo + span * code / 255.
    """
    h, w, k = np.shape(coefficients)
    codes = np.zeros((h, w, 4 * -(-k // 4)), np.uint8)
    codes[..., :k], lo, span = quantize_min_max(coefficients)
    return codes, lo.astype(np.float32), span.astype(np.float32)


def dequantized(model: RTIModel) -> RTIModel:
    """The model with its coefficients replaced by what the shader sees (8-bit planes)."""
    codes, lo, span = quantize(model.coefficients)
    k = model.coefficients.shape[-1]
    values = lo + span * (codes[..., :k].astype(np.float32) / 255.0)
    return RTIModel(kind=model.kind, colorspace=model.colorspace, coefficients=values.astype(np.float32),
                    terms=model.terms, layers=model.layers, mask=model.mask, meta=dict(model.meta))


def _linear_shader(n_tex: int, lrgb: bool) -> str:
    """Basis models: out = A @ c (rgb) or c.rgb * (a @ c) (lrgb), A recomputed per light on the CPU.

    Unrolled with constant indices (llvmpipe is slow with loops over uniform arrays).
    """
    rows = 1 if lrgb else 3
    lines = [f"""#version 330 core
uniform sampler2D planes[{n_tex}];
uniform vec4 lo[{n_tex}];
uniform vec4 span[{n_tex}];
uniform vec4 basis[{rows * n_tex}];
out vec4 frag;
void main() {{
    ivec2 p = ivec2(gl_FragCoord.xy);"""]
    lines += [f"    vec4 t{t} = lo[{t}] + span[{t}] * texelFetch(planes[{t}], p, 0);" for t in range(n_tex)]
    sums = [" + ".join(f"dot(basis[{r * n_tex + t}], t{t})" for t in range(n_tex)) for r in range(rows)]
    colour = f"t0.rgb * ({sums[0]})" if lrgb else f"vec3({', '.join(sums)})"
    lines.append(f"    frag = vec4(clamp({colour}, 0.0, 1.0), 1.0);\n}}\n")
    return "\n".join(lines)


def _neural_shader(n_tex: int, layers: list, k: int) -> str:
    """Decoder: latent (NTEX RGBA planes) + light -> hidden layers (ELU) -> RGB.

    One scalar statement per unit with the weights as literals: the shader is compiled
    for this model, every value stays in a register and the compiler sees the constants
    (llvmpipe runs uniform-array weights 5-10x slower). ``%.8e`` keeps float32 exact.
    """
    lines = [f"""#version 330 core
uniform sampler2D planes[{n_tex}];
uniform vec4 lo[{n_tex}];
uniform vec4 span[{n_tex}];
uniform vec2 light;
out vec4 frag;
float elu(float x) {{ return max(x, exp(min(x, 0.0)) - 1.0); }}
void main() {{
    ivec2 p = ivec2(gl_FragCoord.xy);"""]
    lines += [f"    vec4 t{t} = lo[{t}] + span[{t}] * texelFetch(planes[{t}], p, 0);" for t in range(n_tex)]
    inputs = [f"t{j // 4}.{'xyzw'[j % 4]}" for j in range(k)] + ["light.x", "light.y"]
    for i, (w, b) in enumerate(layers):
        w, b = np.asarray(w, np.float32), np.asarray(b, np.float32)
        last = i == len(layers) - 1
        outputs = []
        for o in range(w.shape[0]):
            value = f"{b[o]:.8e}" + "".join(f" + {w[o, j]:.8e} * {inputs[j]}" for j in range(min(w.shape[1], len(inputs))) if w[o, j] != 0.0)
            lines.append(f"    float h{i}_{o} = {value if last else f'elu({value})'};")
            outputs.append(f"h{i}_{o}")
        inputs = outputs
    lines.append(f"    frag = vec4(clamp(vec3({', '.join(inputs[:3])}), 0.0, 1.0), 1.0);\n}}\n")
    return "\n".join(lines)


class ShaderRelighter:
    """Relight one RTI model repeatedly with a GLSL fragment shader on an offscreen context.

    >>> with ShaderRelighter(model) as gl:   # uploads the quantised planes once
    ...     image = gl.render(light)          # (H, W, 3) float32 in [0, 1]
    """

    def __init__(self, model: RTIModel):
        check_model(model)
        os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
        from OpenGL import GL
        from pyrender.platforms.egl import EGLPlatform

        self.GL = GL
        self.model = model
        self.height, self.width = model.shape
        self._platform = EGLPlatform(self.width, self.height)
        self._platform.init_context()
        self._platform.make_current()
        try:
            self._setup(model)
        except Exception:
            self.close()
            raise

    # -- setup
    def _setup(self, model: RTIModel) -> None:
        GL = self.GL
        codes, lo, span = quantize(model.coefficients)
        self.n_tex = codes.shape[-1] // 4
        k = model.coefficients.shape[-1]
        lo4 = np.zeros(4 * self.n_tex, np.float32); lo4[:k] = lo
        span4 = np.zeros(4 * self.n_tex, np.float32); span4[:k] = span
        if model.kind == "neural":
            source = _neural_shader(self.n_tex, model.layers, k)
        else:
            source = _linear_shader(self.n_tex, model.colorspace == "lrgb")
        self.program = _program(GL, _VERTEX, source)
        GL.glUseProgram(self.program)
        vao = GL.glGenVertexArrays(1)
        GL.glBindVertexArray(vao)
        textures = list(np.atleast_1d(GL.glGenTextures(self.n_tex)))
        GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 1)
        for i, tex in enumerate(textures):
            GL.glActiveTexture(GL.GL_TEXTURE0 + i)
            GL.glBindTexture(GL.GL_TEXTURE_2D, tex)
            GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_MIN_FILTER, GL.GL_NEAREST)
            GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_MAG_FILTER, GL.GL_NEAREST)
            plane = np.ascontiguousarray(codes[..., 4 * i:4 * i + 4])
            GL.glTexImage2D(GL.GL_TEXTURE_2D, 0, GL.GL_RGBA8, self.width, self.height, 0, GL.GL_RGBA,
                            GL.GL_UNSIGNED_BYTE, plane)
        GL.glUniform1iv(self._loc("planes"), self.n_tex, np.arange(self.n_tex, dtype=np.int32))
        GL.glUniform4fv(self._loc("lo"), self.n_tex, lo4)
        GL.glUniform4fv(self._loc("span"), self.n_tex, span4)
        # Float target so the shader's result is read back without an extra 8-bit rounding.
        fbo = GL.glGenFramebuffers(1)
        rbo = GL.glGenRenderbuffers(1)
        GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, rbo)
        GL.glRenderbufferStorage(GL.GL_RENDERBUFFER, GL.GL_RGBA32F, self.width, self.height)
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, fbo)
        GL.glFramebufferRenderbuffer(GL.GL_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, GL.GL_RENDERBUFFER, rbo)
        if GL.glCheckFramebufferStatus(GL.GL_FRAMEBUFFER) != GL.GL_FRAMEBUFFER_COMPLETE:
            raise RuntimeError("offscreen framebuffer incomplete")
        GL.glViewport(0, 0, self.width, self.height)
        GL.glDisable(GL.GL_DEPTH_TEST)

    def _loc(self, name: str) -> int:
        return self.GL.glGetUniformLocation(self.program, name)

    # -- drawing
    def _set_light(self, light: np.ndarray) -> None:
        GL = self.GL
        d = normalize_directions(np.asarray(light, np.float64).reshape(1, 3))[0]
        if self.model.kind == "neural":
            GL.glUniform2f(self._loc("light"), float(d[0]), float(d[1]))
            return
        weights = basis_matrix(self.model.kind, d[None], self.model.terms)[0].astype(np.float32)
        c4 = 4 * self.n_tex
        if self.model.colorspace == "lrgb":
            a = np.zeros((1, c4), np.float32); a[0, 3:3 + weights.size] = weights
        else:
            a = np.zeros((3, c4), np.float32)
            for ch in range(3):
                a[ch, ch:3 * weights.size:3] = weights
        GL.glUniform4fv(self._loc("basis"), a.size // 4, a)  # rows are whole vec4s (c4 columns)

    def draw(self, light: np.ndarray) -> None:
        """Render under ``light`` (3,) and wait for the frame to finish (what throughput timings use)."""
        self._platform.make_current()
        self._set_light(light)
        self.GL.glDrawArrays(self.GL.GL_TRIANGLES, 0, 3)
        self.GL.glFinish()

    def render(self, light: np.ndarray) -> np.ndarray:
        """(H, W, 3) float32 image under ``light`` (3,); rows as in the model (row 0 first)."""
        GL = self.GL
        self.draw(light)
        GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)
        data = GL.glReadPixels(0, 0, self.width, self.height, GL.GL_RGBA, GL.GL_FLOAT)
        return np.frombuffer(data, np.float32).reshape(self.height, self.width, 4)[..., :3].copy()

    def megapixels_per_second(self, light: np.ndarray, repeat: int = 3) -> float:
        """Best-of-``repeat`` frame rate times image size (frames drawn and finished, no read-back)."""
        self.draw(light)  # first frame compiles the shader variant
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            self.draw(light)
            best = min(best, time.perf_counter() - t0)
        return self.width * self.height / best / 1e6

    def close(self) -> None:
        if getattr(self, "_platform", None) is not None:
            self._platform.delete_context()  # frees the textures, framebuffer and program with it
            self._platform = None

    def __enter__(self) -> "ShaderRelighter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _program(GL, vertex: str, fragment: str) -> int:
    def compile_one(kind, source):
        shader = GL.glCreateShader(kind)
        GL.glShaderSource(shader, source)
        GL.glCompileShader(shader)
        if not GL.glGetShaderiv(shader, GL.GL_COMPILE_STATUS):
            raise RuntimeError(f"shader compile failed: {GL.glGetShaderInfoLog(shader).decode(errors='replace')}")
        return shader

    prog = GL.glCreateProgram()
    shaders = [compile_one(GL.GL_VERTEX_SHADER, vertex), compile_one(GL.GL_FRAGMENT_SHADER, fragment)]
    for s in shaders:
        GL.glAttachShader(prog, s)
    GL.glLinkProgram(prog)
    if not GL.glGetProgramiv(prog, GL.GL_LINK_STATUS):
        raise RuntimeError(f"shader link failed: {GL.glGetProgramInfoLog(prog).decode(errors='replace')}")
    for s in shaders:
        GL.glDeleteShader(s)
    return prog
