"""NeuralRTI teacher and DisK-NeuralRTI student training (torch, CPU).

NeuralRTI (Dulecha et al. 2020) is a per-pixel autoencoder: the encoder maps a
pixel's N observed colours (N lights x RGB) to a small latent code (9 values),
the decoder maps latent + light (lx, ly) back to RGB. After training, the latent
of every pixel is stored as coefficient planes and only the decoder is needed to
relight. DisK-NeuralRTI (Dulecha et al. 2025) distils the teacher into a student
with its own encoder and a much smaller decoder, trained on
``alpha * MSE(ground truth) + (1 - alpha) * MSE(teacher prediction)``.

Because the teacher can be queried at any light, the student can also be taught the
teacher's predictions at random extra upper-hemisphere lights (``extra_lights``, each
weighted like a captured light's teacher term), the part of distillation plain training
cannot do. Measured on Dome (49 train / 20 held-out lights, an earlier weighting) it did
not help (16 extra lights per batch: -0.03 dB held-out, 2.3x the training time), so it is
off by default.

Decoders are returned as ``[(W (out, in), b (out,)), ...]`` float32 numpy layers,
ELU between layers, no output activation, input = latent then (lx, ly): exactly
what :func:`pnrelight.rti.mlp.decode` evaluates.

This module imports torch; nothing else in pnrelight imports it at module level.
"""
from __future__ import annotations

import contextlib
import math
import time
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from . import mlp
from .model import RTIModel

DEFAULT_TEACHER_HIDDEN = (50, 50)
DEFAULT_STUDENT_HIDDEN = (20, 20)
DEFAULT_ENCODER_HIDDEN = (150, 150, 150)
LATENT_SIZE = 9
# Training defaults, chosen on Dome (49 lights, 56k masked pixels) for a 2-core CPU budget:
# small batches (many Adam steps) with a high peak rate made stable by gradient clipping,
# and a scaled light input, which speeds up learning of the light dependence most.
EPOCHS = 30
BATCH_PIXELS = 256
# The small decoder gains from 4x more (smaller) steps, where the teacher lost 0.7 dB with
# them. Dome held-out, DisK alpha 0.3: batch 256/20 epochs 23.21 dB; batch 64: 20 epochs
# 23.42, 30 epochs 23.51, 40 epochs 23.53; batch 32/20 epochs 23.34; lr 5e-3 23.31.
# Measured on Dome without gain over this recipe (seed 0 ~23.46-23.51 dB, seed 1 ~23.38-23.41): EMA
# weights, encoder lr x0.3, decoder lr x2, Adam beta2 0.99, clip 0.1, light scale 30,
# decoder warm-up on frozen teacher latents, a decoder pruned from the teacher as start,
# a 32x32 assistant between teacher and student, per-light loss weights, a loss that ignores
# errors clipped away at 0 and 1, per-pixel latent refinement and L-BFGS on the decoder after
# training (<= +0.02 dB), alpha 0 (23.38), batch 128 for 60 epochs (23.34). What helps is a longer
# schedule at batch 64: 60 epochs 23.54-23.60 (seed 1: 23.53, was 23.38-23.41 at 30); seeds differ by
# up to 0.25 dB at 45 epochs (23.61 vs 23.34), so 60 (~330 s on 2 cores; precomputed targets
# make a step ~6.3 ms instead of ~7.2). 80 epochs saturate (seed 0 23.55, seed 1 23.50). The
# student fits the training lights 0.7 dB worse than the teacher (25.48 vs 26.18), but width is not
# what limits it held-out: a 24x24 decoder fits them better (25.70) and is no better on new lights
# (seeds 0/1: 23.54, 23.51). Seeds spread the student more than the teacher (one teacher, student
# seeds 0-3: 23.60, 23.57, 23.33, 23.24 dB; teacher seeds 0-2: 23.86, 23.84, 23.76), so its mean gap
# is ~0.4 dB, not seed 0's 0.3. Four students trained side by side as one batched network, keeping
# the lowest training loss after 15 epochs, did not narrow it (seeds 0/1: 23.52, 23.44; 1.2x the
# time): that loss ranks the end result loosely, and equal final losses differ by up to 0.15 dB.
STUDENT_EPOCHS = 60
STUDENT_BATCH_PIXELS = 64
LR = 1e-2
CLIP_NORM = 0.2
LIGHT_SCALE = 15.0
# Distillation targets of all training pixels are precomputed up to this size (Dome: 33 MB).
PRECOMPUTED_TARGET_BYTES = 1 << 30


# ----------------------------------------------------------------------------- networks

def _mlp_layers(sizes: Sequence[int]) -> nn.ModuleList:
    return nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))


class Encoder(nn.Module):
    """(B, N, 3) observations -> (B, K) latent; ELU between layers, none at the output."""

    def __init__(self, n_lights: int, hidden: Sequence[int], latent_size: int):
        super().__init__()
        self.n_lights = n_lights
        self.layers = _mlp_layers([3 * n_lights, *hidden, latent_size])
        # Fixed input standardisation (per light and channel); folded into the first layer on export.
        self.register_buffer("in_mean", torch.zeros(3 * n_lights))
        self.register_buffer("in_scale", torch.ones(3 * n_lights))

    def set_input_statistics(self, obs: torch.Tensor) -> None:
        flat = obs.reshape(obs.shape[0], -1)
        self.in_mean.copy_(flat.mean(0))
        self.in_scale.copy_(1.0 / flat.std(0).clamp_min(1e-3))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        h = (obs.reshape(obs.shape[0], -1) - self.in_mean) * self.in_scale
        for i, layer in enumerate(self.layers):
            if i:
                h = nn.functional.elu(h)
            h = layer(h)
        return h


class Decoder(nn.Module):
    """latent (B, K) + lights -> RGB; the same function as :func:`mlp.decode`."""

    def __init__(self, latent_size: int, hidden: Sequence[int], light_scale: float = 1.0):
        super().__init__()
        self.latent_size = latent_size
        self.layers = _mlp_layers([latent_size + 2, *hidden, 3])
        # Lights enter training multiplied by light_scale (a faster-learning light pathway
        # under Adam); to_numpy folds the factor into the first layer's weights.
        self.light_scale = float(light_scale)

    def forward_grid(self, latent: torch.Tensor, light_xy: torch.Tensor) -> torch.Tensor:
        """Every pixel under every light: latent (B, K), light_xy (M, 2) -> (B, M, 3).

        The first layer is split into its latent and light parts so the (B, M, K + 2)
        input is never built: (B, H) + (M, H) broadcast to (B, M, H).
        """
        k = self.latent_size
        first = self.layers[0]
        h = (latent @ first.weight[:, :k].T + first.bias)[:, None, :] + ((light_xy * self.light_scale) @ first.weight[:, k:].T)[None, :, :]
        for layer in self.layers[1:]:
            h = layer(nn.functional.elu(h))
        return h

    def forward(self, latent: torch.Tensor, light_xy: torch.Tensor) -> torch.Tensor:
        """One light per row: latent (B, K), light_xy (B, 2) -> (B, 3)."""
        h = self.layers[0](torch.cat([latent, light_xy * self.light_scale], dim=1))
        for layer in self.layers[1:]:
            h = layer(nn.functional.elu(h))
        return h

    def to_numpy(self) -> list:
        layers = [(l.weight.detach().cpu().numpy().astype(np.float32).copy(),
                   l.bias.detach().cpu().numpy().astype(np.float32).copy()) for l in self.layers]
        layers[0][0][:, self.latent_size:] *= np.float32(self.light_scale)
        return layers

    @classmethod
    def from_numpy(cls, layers: list) -> "Decoder":
        k = int(np.asarray(layers[0][0]).shape[1]) - 2
        dec = cls(k, [int(np.asarray(w).shape[0]) for w, _ in layers[:-1]])
        _load_layers(dec.layers, layers)
        return dec


def _load_layers(modules: nn.ModuleList, layers: list) -> None:
    with torch.no_grad():
        for mod, (w, b) in zip(modules, layers):
            w = torch.as_tensor(np.asarray(w, np.float32))
            if tuple(w.shape) != tuple(mod.weight.shape):
                raise InputError(f"layer shape {tuple(w.shape)} does not match {tuple(mod.weight.shape)} (incompatible weights)")
            mod.weight.copy_(w)
            mod.bias.copy_(torch.as_tensor(np.asarray(b, np.float32)))


def encoder_to_numpy(encoder: Encoder) -> list:
    """Plain encoder layers [(W (out, in), b), ...] with the input standardisation folded into the first."""
    layers = [(l.weight.detach().double().numpy(), l.bias.detach().double().numpy()) for l in encoder.layers]
    mean, scale = encoder.in_mean.double().numpy(), encoder.in_scale.double().numpy()
    w0, b0 = layers[0]
    layers[0] = (w0 * scale, b0 - (w0 * scale) @ mean)
    return [(w.astype(np.float32), b.astype(np.float32)) for w, b in layers]


def encode(observations: np.ndarray, encoder_layers: list, *, chunk: int = 1 << 15) -> np.ndarray:
    """Latent codes from observations with numpy (torch-free maths, usable anywhere).

    observations : (P, N, 3) float32 pixel colours under the N training lights, in
        the training light order. encoder_layers : ``record["encoder"]`` of a training run.
    Returns (P, K) float32.
    """
    obs = np.asarray(observations, np.float32)
    flat = obs.reshape(obs.shape[0], -1)
    layers = [(np.asarray(w, np.float32), np.asarray(b, np.float32)) for w, b in encoder_layers]
    if flat.shape[1] != layers[0][0].shape[1]:
        raise InputError(f"encoder expects {layers[0][0].shape[1] // 3} lights, observations have {flat.shape[1] // 3} (use the training MLIC's lights)")
    out = np.empty((flat.shape[0], layers[-1][0].shape[0]), np.float32)
    for s in range(0, flat.shape[0], chunk):
        h = flat[s:s + chunk]
        for i, (w, b) in enumerate(layers):
            if i:
                h = np.where(h > 0, h, np.expm1(np.minimum(h, 0)))
            h = h @ w.T + b
        out[s:s + chunk] = h
    return out


# ----------------------------------------------------------------------------- helpers

@contextlib.contextmanager
def _torch_threads(threads: int | None):
    old = torch.get_num_threads()
    torch.set_num_threads(int(threads) if threads else min(2, old))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _pixels(mlic) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(P, N, 3) observations, (N, 2) light xy, (P,) training-pixel indices (mask-aware)."""
    images = mlic.float_images()
    n, h, w, _ = images.shape
    obs = torch.from_numpy(np.ascontiguousarray(images.reshape(n, h * w, 3).transpose(1, 0, 2)))
    lights = torch.from_numpy(np.asarray(mlic.directions, np.float32)[:, :2].copy())
    mask = getattr(mlic, "mask", None)
    train_idx = np.flatnonzero(mask.reshape(-1)) if mask is not None and mask.any() else np.arange(h * w)
    return obs, lights, train_idx


def _check_mlic(mlic, min_lights: int = 2) -> None:
    if mlic.images.ndim != 4 or mlic.images.shape[-1] != 3:
        raise InputError("MLIC images must be (N, H, W, 3) RGB (load the folder with load_mlic)")
    if mlic.images.shape[0] < min_lights:
        raise InputError(f"neural RTI needs at least {min_lights} lights, the MLIC has {mlic.images.shape[0]} (capture more lights)")


def _init_from_data(encoder: Encoder | None, decoder: Decoder, obs: torch.Tensor, train_idx: np.ndarray) -> None:
    """Standardise the encoder's input and start the decoder's output at the mean colour."""
    sample = obs[torch.from_numpy(train_idx[:: max(1, len(train_idx) // 20000)])]
    with torch.no_grad():
        if encoder is not None:
            encoder.set_input_statistics(sample)
        decoder.layers[-1].bias.copy_(sample.reshape(-1, 3).mean(0))


def _encode_all(encoder: Encoder, obs: torch.Tensor, chunk: int = 1 << 14) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([encoder(obs[s:s + chunk]) for s in range(0, obs.shape[0], chunk)])


def _steps_schedule(opt, lr: float, total_steps: int, schedule: str):
    if schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(total_steps, 2), pct_start=0.15,
                                                   div_factor=10.0, final_div_factor=100.0)
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total_steps, 1), eta_min=lr * 0.01)
    if schedule == "constant":
        return None
    raise InputError(f"unknown schedule {schedule!r} (use onecycle, cosine or constant)")


def sample_hemisphere_xy(count: int, generator: torch.Generator, *, min_z: float = 0.0) -> torch.Tensor:
    """(count, 2) light (lx, ly) of directions uniform in solid angle with lz in [min_z, 1]."""
    u = torch.rand(count, generator=generator)
    v = torch.rand(count, generator=generator)
    z = min_z + (1.0 - min_z) * u
    r = torch.sqrt(torch.clamp(1.0 - z * z, min=0.0))
    phi = 2.0 * math.pi * v
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi)], dim=1)


def _neural_model(mlic, latent: np.ndarray, decoder: Decoder, meta: dict) -> RTIModel:
    h, w = mlic.images.shape[1:3]
    return RTIModel(kind="neural", colorspace="rgb", coefficients=latent.reshape(h, w, -1).astype(np.float32),
                    terms=int(latent.shape[1]), layers=decoder.to_numpy(),
                    mask=None if getattr(mlic, "mask", None) is None else np.asarray(mlic.mask, bool).copy(), meta=meta)


# ----------------------------------------------------------------------------- training loop

def _train(obs: torch.Tensor, lights: torch.Tensor, train_idx: np.ndarray, *, encoder: Encoder, decoder: Decoder, loss_fn: Callable, epochs: int, batch_pixels: int,
           pixels_per_epoch: int | None, lr: float, schedule: str, clip_norm: float, progress, desc: str,
           generator: torch.Generator) -> tuple[list[float], float]:
    """Shared loop: each step takes ``batch_pixels`` training pixels with all their lights.

    obs, lights, train_idx : as :func:`_pixels` returns them.
    """
    train_idx_t = torch.from_numpy(train_idx)
    per_epoch = len(train_idx) if not pixels_per_epoch else min(int(pixels_per_epoch), len(train_idx))
    batch = max(1, min(int(batch_pixels), per_epoch))
    steps_per_epoch = max(1, per_epoch // batch)
    params = list(encoder.parameters()) + list(decoder.parameters())
    # fused: one kernel for all parameters; ~1 ms of a ~8 ms student step on 2 cores
    opt = torch.optim.Adam(params, lr=lr, fused=True)
    sched = _steps_schedule(opt, lr, epochs * steps_per_epoch, schedule)
    losses = []
    t0 = time.perf_counter()
    epoch_iter = range(epochs)
    if progress is not None:
        epoch_iter = progress(epoch_iter, total=epochs, desc=desc)
    for _ in epoch_iter:
        order = train_idx_t[torch.randperm(len(train_idx), generator=generator)[:steps_per_epoch * batch]]
        total = 0.0
        for s in range(steps_per_epoch):
            idx = order[s * batch:(s + 1) * batch]
            loss = loss_fn(idx, obs[idx], lights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip_norm:
                torch.nn.utils.clip_grad_norm_(params, clip_norm)
            opt.step()
            if sched is not None:
                sched.step()
            total += float(loss.detach())
        losses.append(total / steps_per_epoch)
        if progress is not None and hasattr(epoch_iter, "set_postfix"):
            epoch_iter.set_postfix(loss=f"{losses[-1]:.2e}")
    return losses, time.perf_counter() - t0


def _settings(**kw) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()}


def train_teacher(mlic, *, hidden: Sequence[int] = DEFAULT_TEACHER_HIDDEN,
                  encoder_hidden: Sequence[int] = DEFAULT_ENCODER_HIDDEN, latent_size: int = LATENT_SIZE,
                  epochs: int = EPOCHS, batch_pixels: int = BATCH_PIXELS, pixels_per_epoch: int | None = None,
                  lr: float = LR, schedule: str = "onecycle", clip_norm: float = CLIP_NORM,
                  light_scale: float = LIGHT_SCALE, seed: int = 0, threads: int | None = None,
                  progress=None) -> tuple[RTIModel, dict]:
    """Train a NeuralRTI autoencoder on an MLIC.

    mlic : :class:`pnrelight.formats.mlic.MLIC` with images (N, H, W, 3) and directions (N, 3).
        With a mask, training uses the masked pixels; latents are computed for all pixels.
    progress : optional ``progress(iterable, total=, desc=)`` wrapper (e.g. pnrelight.progress.progress).
    Returns (model, record): a "neural" RTIModel (coefficients (H, W, latent_size),
    decoder layers) and the training record (losses per epoch, seconds, seed, settings,
    ``encoder``: the encoder layers as float32 numpy [(W (out, in), b), ...]).
    """
    return _train_autoencoder(mlic, "neuralrti-teacher", hidden=hidden, encoder_hidden=encoder_hidden,
                              latent_size=latent_size, epochs=epochs, batch_pixels=batch_pixels,
                              pixels_per_epoch=pixels_per_epoch, lr=lr, schedule=schedule, clip_norm=clip_norm,
                              light_scale=light_scale, seed=seed, threads=threads, progress=progress)


def _check_epochs(epochs: int) -> None:
    if epochs < 1:
        raise InputError(f"epochs must be at least 1, not {epochs} (use --epochs 1 or more)")


def _new_networks(mlic, encoder_hidden, hidden, latent_size, light_scale, seed):
    """Seed torch, build an encoder and decoder, gather the pixels: shared start of every training run.

    Returns (generator, encoder, decoder, observations, light xy, training pixel indices).
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    encoder = Encoder(mlic.images.shape[0], encoder_hidden, latent_size)
    decoder = Decoder(latent_size, hidden, light_scale)
    obs, lights, train_idx = _pixels(mlic)
    return gen, encoder, decoder, obs, lights, train_idx


def _train_autoencoder(mlic, method: str, *, hidden, encoder_hidden, latent_size, epochs, batch_pixels,
                       pixels_per_epoch, lr, schedule, clip_norm, light_scale, seed, threads, progress):
    _check_mlic(mlic)
    _check_epochs(epochs)
    with _torch_threads(threads):
        used_threads = torch.get_num_threads()
        gen, encoder, decoder, obs, lights, train_idx = _new_networks(mlic, encoder_hidden, hidden, latent_size, light_scale, seed)
        _init_from_data(encoder, decoder, obs, train_idx)

        def loss_fn(idx, target, lights):
            pred = decoder.forward_grid(encoder(target), lights)
            return torch.mean((pred - target) ** 2)

        losses, seconds = _train(obs, lights, train_idx, encoder=encoder, decoder=decoder, loss_fn=loss_fn, epochs=epochs,
                                 batch_pixels=batch_pixels, pixels_per_epoch=pixels_per_epoch, lr=lr,
                                 schedule=schedule, clip_norm=clip_norm, progress=progress,
                                 desc="teacher" if method == "neuralrti-teacher" else "plain student", generator=gen)
        latent = _encode_all(encoder, obs).numpy()
    record = {
        "method": method, "seed": int(seed), "epochs": int(epochs), "losses": [float(x) for x in losses],
        "seconds": round(seconds, 3), "threads": used_threads,
        "settings": _settings(hidden=tuple(hidden), encoder_hidden=tuple(encoder_hidden), latent_size=latent_size,
                              batch_pixels=batch_pixels, pixels_per_epoch=pixels_per_epoch, lr=lr, schedule=schedule,
                              clip_norm=clip_norm, light_scale=light_scale, optimizer="adam", loss="mse"),
        "decoder_parameters": mlp.decoder_parameters(decoder.to_numpy()),
        "encoder": encoder_to_numpy(encoder),
    }
    model = _neural_model(mlic, latent, decoder, {"method": method, "seed": int(seed)})
    return model, record


def distill_student(teacher: RTIModel, mlic, *, hidden: Sequence[int] = DEFAULT_STUDENT_HIDDEN, alpha: float = 0.3,
                    encoder_hidden: Sequence[int] = DEFAULT_ENCODER_HIDDEN, epochs: int = STUDENT_EPOCHS,
                    batch_pixels: int = STUDENT_BATCH_PIXELS, pixels_per_epoch: int | None = None, lr: float = LR,
                    schedule: str = "onecycle", clip_norm: float = CLIP_NORM, light_scale: float = LIGHT_SCALE,
                    extra_lights: int = 0, extra_min_z: float | None = None,
                    teacher_encoder: list | str | None = "auto", seed: int = 0, threads: int | None = None,
                    progress=None) -> tuple[RTIModel, dict]:
    """DisK-NeuralRTI: train a student (own encoder, small decoder) from a teacher model.

    teacher : "neural" RTIModel fitted on the same MLIC (its latent gives the teacher's
        prediction for every training pixel under any light).
    alpha : weight of the ground-truth MSE; 1 - alpha weighs the teacher MSE.
    extra_lights : random upper-hemisphere lights per batch at which the student is also
        taught the teacher's prediction (0, the default = only the captured lights, as in
        DisK; 16 measured no better on Dome at 2.3x the time).
        Their directions are uniform in solid angle with lz >= extra_min_z (default: the
        lowest captured light's lz).
    teacher_encoder : teacher encoder layers (``record["encoder"]`` of :func:`train_teacher`)
        to start the student's encoder from, so the student begins with the teacher's
        latents; "auto" takes them from ``teacher.meta["training"]["encoder"]`` when present
        and compatible; None trains the student's encoder from scratch.
    Returns (model, record) like :func:`train_teacher`.
    """
    _check_mlic(mlic)
    if teacher.kind != "neural" or not teacher.layers:
        raise InputError(f"the teacher must be a neural RTI model, not {teacher.label} (fit one with --basis neural)")
    if teacher.shape != tuple(mlic.images.shape[1:3]):
        raise InputError(f"teacher is {teacher.shape[1]}x{teacher.shape[0]} but the MLIC is {mlic.images.shape[2]}x{mlic.images.shape[1]} (distil on the MLIC the teacher was fitted on)")
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be in [0, 1], not {alpha} (0.3 is the DisK default)")
    _check_epochs(epochs)
    latent_size = int(teacher.coefficients.shape[-1])
    if isinstance(teacher_encoder, str):
        teacher_encoder = _compatible_encoder(teacher, mlic.images.shape[0], encoder_hidden, latent_size)
    min_z = float(np.min(mlic.directions[:, 2])) if extra_min_z is None else float(extra_min_z)
    with _torch_threads(threads):
        used_threads = torch.get_num_threads()
        gen, encoder, decoder, obs, lights, train_idx = _new_networks(mlic, encoder_hidden, hidden, latent_size, light_scale, seed)
        _init_from_data(encoder if teacher_encoder is None else None, decoder, obs, train_idx)
        if teacher_encoder is not None:
            _load_layers(encoder.layers, teacher_encoder)
        t_decoder = Decoder.from_numpy(teacher.layers).requires_grad_(False)
        t_latent = torch.from_numpy(teacher.coefficients.reshape(-1, latent_size).astype(np.float32))
        use_teacher = alpha < 1.0
        n_extra = int(extra_lights) if use_teacher else 0
        # alpha*|p-g|^2 + (1-alpha)*|p-t|^2 = |p - (alpha*g + (1-alpha)*t)|^2 + const: one error
        # term against the blended target, same gradient. The targets of all training pixels are
        # computed once when they fit in memory (the teacher's forward pass was ~1/4 of a step).
        blended = None
        if use_teacher and len(train_idx) * obs[0].numel() * obs.element_size() <= PRECOMPUTED_TARGET_BYTES:
            blended, blended_row = _blended_targets(t_decoder, t_latent, obs, lights, train_idx, alpha)

        def loss_fn(idx, observed, lights):
            z = encoder(observed)
            pred = decoder.forward_grid(z, lights)
            if not use_teacher:
                return torch.mean((pred - observed) ** 2)
            if blended is not None:
                target = blended[blended_row[idx]]
            else:
                target = _blend(t_decoder, t_latent, idx, observed, lights, alpha)
            loss = torch.mean((pred - target) ** 2)
            if n_extra:  # teacher-only targets; each extra light weighs as a captured light's teacher term
                extra = sample_hemisphere_xy(n_extra, gen, min_z=min_z)
                with torch.no_grad():
                    t_extra = t_decoder.forward_grid(t_latent[idx], extra)
                loss = loss + (1.0 - alpha) * n_extra / len(lights) * torch.mean((decoder.forward_grid(z, extra) - t_extra) ** 2)
            return loss

        losses, seconds = _train(obs, lights, train_idx, encoder=encoder, decoder=decoder, loss_fn=loss_fn, epochs=epochs,
                                 batch_pixels=batch_pixels, pixels_per_epoch=pixels_per_epoch, lr=lr,
                                 schedule=schedule, clip_norm=clip_norm, progress=progress,
                                 desc="student" if use_teacher else "plain student", generator=gen)
        latent = _encode_all(encoder, obs).numpy()
    method = "disk-student" if use_teacher else "plain-student"
    record = {
        "method": method, "seed": int(seed), "epochs": int(epochs), "losses": [float(x) for x in losses],
        "seconds": round(seconds, 3), "threads": used_threads,
        "settings": _settings(hidden=tuple(hidden), encoder_hidden=tuple(encoder_hidden), latent_size=latent_size,
                              alpha=alpha, extra_lights=n_extra, extra_min_z=min_z if n_extra else None,
                              teacher_encoder_init=teacher_encoder is not None, batch_pixels=batch_pixels,
                              pixels_per_epoch=pixels_per_epoch, lr=lr, schedule=schedule, clip_norm=clip_norm,
                              light_scale=light_scale, optimizer="adam",
                              loss="mse(alpha*gt + (1-alpha)*teacher), = alpha*mse(gt) + (1-alpha)*mse(teacher) + const"),
        "decoder_parameters": mlp.decoder_parameters(decoder.to_numpy()),
        "teacher_decoder_parameters": mlp.decoder_parameters(teacher.layers),
        "encoder": encoder_to_numpy(encoder),
    }
    model = _neural_model(mlic, latent, decoder, {"method": method, "seed": int(seed)})
    return model, record


def _blended_targets(t_decoder: Decoder, t_latent: torch.Tensor, obs: torch.Tensor, lights: torch.Tensor,
                     train_idx: np.ndarray, alpha: float, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha * observed + (1 - alpha) * teacher prediction at the training pixels.

    Returns (targets (len(train_idx), N, 3), row (P,) int64: the targets row of each pixel, -1 off the training set).
    """
    idx = torch.from_numpy(train_idx)
    row = torch.full((obs.shape[0],), -1, dtype=torch.int64)
    row[idx] = torch.arange(len(idx))
    target = torch.empty((len(idx), *obs.shape[1:]), dtype=obs.dtype)
    for s in range(0, len(idx), chunk):
        i = idx[s:s + chunk]
        target[s:s + len(i)] = _blend(t_decoder, t_latent, i, obs[i], lights, alpha)
    return target, row


def _blend(t_decoder: Decoder, t_latent: torch.Tensor, idx: torch.Tensor, observed: torch.Tensor,
           lights: torch.Tensor, alpha: float) -> torch.Tensor:
    """(B, N, 3) distillation target alpha * observed + (1 - alpha) * teacher prediction of pixels idx."""
    with torch.no_grad():
        return alpha * observed + (1.0 - alpha) * t_decoder.forward_grid(t_latent[idx], lights)


def _compatible_encoder(teacher: RTIModel, n_lights: int, hidden: Sequence[int], latent_size: int) -> list | None:
    """The teacher's stored encoder layers when their shapes fit the student's encoder, else None."""
    layers = ((teacher.meta or {}).get("training") or {}).get("encoder")
    if not layers:
        return None
    try:
        layers = [(np.asarray(w, np.float32), np.asarray(b, np.float32)) for w, b in layers]
    except (TypeError, ValueError):
        return None
    sizes = [3 * n_lights, *hidden, latent_size]
    shapes_ok = len(layers) == len(sizes) - 1 and all(
        w.shape == (o, i) and b.shape == (o,) for (w, b), i, o in zip(layers, sizes[:-1], sizes[1:]))
    return layers if shapes_ok else None


def train_student_plain(mlic, *, hidden: Sequence[int] = DEFAULT_STUDENT_HIDDEN,
                        encoder_hidden: Sequence[int] = DEFAULT_ENCODER_HIDDEN, latent_size: int = LATENT_SIZE,
                        epochs: int = STUDENT_EPOCHS, batch_pixels: int = STUDENT_BATCH_PIXELS,
                        pixels_per_epoch: int | None = None,
                        lr: float = LR, schedule: str = "onecycle", clip_norm: float = CLIP_NORM,
                        light_scale: float = LIGHT_SCALE, seed: int = 0, threads: int | None = None,
                        progress=None) -> tuple[RTIModel, dict]:
    """The student architecture trained on ground truth alone (no teacher, own encoder from scratch),
    with the distilled student's schedule: the baseline DisK must beat."""
    return _train_autoencoder(mlic, "plain-student", hidden=hidden, encoder_hidden=encoder_hidden,
                              latent_size=latent_size, epochs=epochs, batch_pixels=batch_pixels,
                              pixels_per_epoch=pixels_per_epoch, lr=lr, schedule=schedule, clip_norm=clip_norm,
                              light_scale=light_scale, seed=seed, threads=threads, progress=progress)


def torch_decode(latent: np.ndarray, light_xy: np.ndarray, layers: list) -> np.ndarray:
    """Evaluate numpy decoder layers with torch (float32): latent (P, K), light_xy (2,) or (P, 2) -> (P, 3)."""
    dec = Decoder.from_numpy(layers)
    z = torch.from_numpy(np.asarray(latent, np.float32))
    l = torch.from_numpy(np.asarray(light_xy, np.float32))
    with torch.no_grad():
        if l.ndim == 1:
            return dec.forward_grid(z, l[None])[:, 0].numpy()
        return dec(z, l).numpy()
