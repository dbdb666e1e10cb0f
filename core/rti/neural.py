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

Where the captured lights leave gaps, both can also learn an HSH-9 fit's relighting at virtual
lights in those gaps (the light prior, :func:`gap_light_directions`, :func:`hsh9_relight`), chosen
per capture by :func:`light_prior_check` on training lights held out of the networks' input
(measurements: docs/neural_training.md).

Decoders are returned as ``[(W (out, in), b (out,)), ...]`` float32 numpy layers,
ELU between layers, no output activation, input = latent then (lx, ly): exactly
what :func:`pnrelight.rti.mlp.decode` evaluates.

This module imports torch; nothing else in pnrelight imports it at module level.
"""
from __future__ import annotations

import contextlib
import copy
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
# Training defaults (how they were chosen, and the recipes measured without gain:
# docs/neural_training.md): small batches with a high peak rate made stable by gradient
# clipping, and a scaled light input, which speeds up learning of the light dependence most.
EPOCHS = 30
BATCH_PIXELS = 256
STUDENT_EPOCHS = 60
STUDENT_BATCH_PIXELS = 64
LR = 1e-2
CLIP_NORM = 0.2
LIGHT_SCALE = 15.0
# Cost bounds for large captures: a run trains on at most MAX_TRAIN_PIXELS pixels for at most
# *_MAX_STEPS steps. The teacher's cap is above 30 full epochs of every shared capture but the
# pixel-sampled item11 (item1's 210k pixels need 24,570), so below ~0.2 MP it never binds.
# The student's binds above ~107k training pixels: 60,000 left item1 and item3 0.3-0.5 dB under
# every pixel; at 100,000 a 24 MP teacher + student take ~15 min (a student retry, bounded
# by RETRY_BUDGET_FACTOR, adds ~3.5).
MAX_TRAIN_PIXELS = 1 << 18
TEACHER_MAX_STEPS = 25000
STUDENT_MAX_STEPS = 100000
# Validation pixels (never trained on) select the returned state and detect divergence.
VAL_FRACTION = 0.05
VAL_MIN_PIXELS = 32
VAL_MAX_PIXELS = 4096
DIVERGENCE_FACTOR = 3.0
MAX_RECOVERIES = 6
# A student whose best validation error is above this multiple of its teacher's (on the same
# pixels and lights) is retried like one that loses to HSH-9: on item7 one run of six ended at
# 1.95x (0.8 dB under its siblings, the others 1.16-1.57x; docs/neural_training.md).
STUDENT_RETRY_FACTOR = 1.5
# A retry trains what is left of this multiple of the step budget after the first attempt (never
# more than its full epochs): a capped large capture's retry costs half a run (24 MP student:
# ~4 min instead of ~7), a small capture's retry still trains its full epochs when they fit.
RETRY_BUDGET_FACTOR = 1.5
# Light prior (docs/neural_training.md): where the captured lights leave gaps, the networks also
# learn an HSH-9 fit's relighting at virtual lights, so they do not invent what lies between.
PRIOR_CANDIDATES = 192
PRIOR_MIN_SEPARATION_DEG = 10.0
LIGHT_PRIORS = ("auto", "hsh9", "none")
# The auto choice: short teacher runs with and without the prior on the training lights minus
# every CHECK_HOLD_EVERY-th, compared on those held lights; the prior is used when it lowers their
# error by more than 1 - PRIOR_MARGIN (a near tie keeps the captured lights alone). Each run takes
# a quarter of the real run's steps, at most CHECK_STEPS.
PRIOR_MARGIN = 0.9
CHECK_STEPS = 3000
CHECK_HOLD_EVERY = 6
CHECK_MAX_PIXELS = 1 << 16


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


def _check_mlic(mlic, min_lights: int = 2) -> None:
    if mlic.images.ndim != 4 or mlic.images.shape[-1] != 3:
        raise InputError("MLIC images must be (N, H, W, 3) RGB (load the folder with load_mlic)")
    if mlic.images.shape[0] < min_lights:
        raise InputError(f"neural RTI needs at least {min_lights} lights, the MLIC has {mlic.images.shape[0]} (capture more lights)")


def _check_epochs(epochs: int) -> None:
    if epochs < 1:
        raise InputError(f"epochs must be at least 1, not {epochs} (use --epochs 1 or more)")


def _device(device: str | None) -> torch.device:
    name = device or "cpu"
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {name!r} asked for but torch sees no CUDA GPU (use --device cpu)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r} (use cpu, cuda or auto)") from None


def split_pixels(mlic, *, max_pixels: int = MAX_TRAIN_PIXELS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation pixels of an MLIC: (train (S,), val (V,)) sorted flat indices.

    Candidates are the masked pixels (all pixels without a mask). VAL_FRACTION of them,
    between VAL_MIN_PIXELS and VAL_MAX_PIXELS, are kept out of the steps and only used to
    select the returned model and to detect divergence; at most ``max_pixels`` of the
    rest, drawn uniformly, are trained on (large captures train on a sample).
    """
    h, w = mlic.shape
    mask = getattr(mlic, "mask", None)
    candidates = np.flatnonzero(mask.reshape(-1)) if mask is not None and mask.any() else np.arange(h * w)
    n_val = _val_count(len(candidates))
    order = np.random.default_rng(seed).permutation(len(candidates))
    val = np.sort(candidates[order[:n_val]])
    train = np.sort(candidates[order[n_val:n_val + int(max_pixels)]])
    return train, val


def _val_count(candidates: int) -> int:
    return int(np.clip(round(VAL_FRACTION * candidates), min(VAL_MIN_PIXELS, candidates // 4), VAL_MAX_PIXELS))


def _train_count(mlic, max_pixels: int) -> int:
    """How many training pixels :func:`split_pixels` gives (without drawing them)."""
    h, w = mlic.shape
    mask = getattr(mlic, "mask", None)
    candidates = int(mask.sum()) if mask is not None and mask.any() else h * w
    return max(0, min(int(max_pixels), candidates - _val_count(candidates)))


def _init_from_data(encoder: Encoder | None, decoder: Decoder, obs: torch.Tensor) -> None:
    """Standardise the encoder's input and start the decoder's output at the mean colour."""
    sample = obs[:: max(1, obs.shape[0] // 20000)]
    with torch.no_grad():
        if encoder is not None:
            encoder.set_input_statistics(sample)
        decoder.layers[-1].bias.copy_(sample.reshape(-1, 3).mean(0))


def _encode_mlic(encoder: Encoder, mlic, device: torch.device, progress=None, chunk_bytes: int = 1 << 26) -> np.ndarray:
    """Latent of every pixel, streamed in row blocks of the collection: (H·W, K) float32."""
    n = mlic.count
    h, w = mlic.shape
    rows = max(1, chunk_bytes // (w * n * 3 * 4))
    out = np.empty((h * w, encoder.layers[-1].out_features), np.float32)
    starts = range(0, h, rows)
    if progress is not None:
        starts = progress(starts, total=len(starts), desc="encoding")
    with torch.no_grad():
        for y0 in starts:
            y1 = min(h, y0 + rows)
            block = mlic.rows(y0, y1).transpose(1, 2, 0, 3).reshape(-1, n, 3)
            out[y0 * w:y1 * w] = encoder(torch.from_numpy(np.ascontiguousarray(block)).to(device)).cpu().numpy()
    return out


def _lr_at(step: int, total: int, lr: float, schedule: str) -> float:
    """Learning rate of ``step`` out of ``total``: onecycle (15 % cosine warm-up from lr/10, cosine
    decay to lr/1000), cosine (lr to lr/100) or constant."""
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return lr * 0.01 + lr * 0.99 * 0.5 * (1.0 + math.cos(math.pi * step / max(1, total)))
    warm = max(1, int(0.15 * total))
    start, end = lr / 10.0, lr / 1000.0
    if step < warm:
        return start + (lr - start) * 0.5 * (1.0 - math.cos(math.pi * step / warm))
    return end + (lr - end) * 0.5 * (1.0 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def _check_schedule(schedule: str) -> None:
    if schedule not in ("onecycle", "cosine", "constant"):
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
    h, w = mlic.shape
    return RTIModel(kind="neural", colorspace="rgb", coefficients=latent.reshape(h, w, -1).astype(np.float32, copy=False),
                    terms=int(latent.shape[1]), layers=decoder.to_numpy(),
                    mask=None if getattr(mlic, "mask", None) is None else np.asarray(mlic.mask, bool).copy(), meta=meta)


def hsh9_fit_mse(observations: np.ndarray, directions: np.ndarray) -> float | None:
    """Mean squared error of a per-pixel least-squares HSH-9 fit to observations (P, N, 3) under
    directions (N, 3): the simple baseline a neural model must beat (None with fewer than 9 lights)."""
    if len(directions) < 9:
        return None
    fit = hsh9_relight(observations, directions, directions)       # (P, N, 3)
    return float(np.mean((fit.astype(np.float64) - observations) ** 2))


def gap_light_directions(directions: np.ndarray, *, candidates: int = PRIOR_CANDIDATES,
                         min_separation_deg: float = PRIOR_MIN_SEPARATION_DEG) -> np.ndarray:
    """Virtual light directions in the gaps of a captured light set: (M, 3) unit vectors.

    directions : (N, 3) captured light directions. The candidates are ``candidates`` Fibonacci
    points of the upper hemisphere (even in solid angle); kept are those no lower than the lowest
    captured light and at least ``min_separation_deg`` from every captured light.
    """
    from ..lights import hemisphere_directions

    d = np.asarray(directions, np.float64).reshape(-1, 3)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    # The spiral's mirror image (y -> -y): the candidate set the prior was measured with.
    points = hemisphere_directions(int(candidates), min_elevation_deg=0.0) * np.array([1.0, -1.0, 1.0])
    points = points[points[:, 2] >= d[:, 2].min()]
    nearest = np.max(points @ d.T, axis=1)
    return points[nearest < math.cos(math.radians(min_separation_deg))].astype(np.float32)


def hsh9_relight(observations: np.ndarray, directions: np.ndarray, new_directions: np.ndarray,
                 chunk: int = 1 << 14) -> np.ndarray:
    """Per-pixel least-squares HSH-9 fit of observations (P, N, 3) under directions (N, 3),
    relit under new_directions (M, 3): (P, M, 3) float32 (the light prior's targets)."""
    from .bases import basis_matrix

    if len(directions) < 9:
        raise InputError(f"the HSH-9 light prior needs at least 9 lights, not {len(directions)} (use --light-prior none)")
    relight = (basis_matrix("hsh", new_directions, 9) @ np.linalg.pinv(basis_matrix("hsh", directions, 9))).astype(np.float32)
    obs = np.asarray(observations, np.float32)
    out = np.empty((obs.shape[0], relight.shape[0], obs.shape[2]), np.float32)
    for s in range(0, obs.shape[0], chunk):
        out[s:s + chunk] = np.einsum("mn,pnc->pmc", relight, obs[s:s + chunk])
    return out


def _val_mse(encoder: Encoder | None, decoder: Decoder, obs: torch.Tensor, lights: torch.Tensor, chunk: int = 2048,
             latent: torch.Tensor | None = None) -> float:
    """Reconstruction error of held-out pixels under the training lights.

    latent : (V, K) codes of the pixels to decode instead of encoding ``obs`` (a teacher's stored latents).
    """
    total = 0.0
    with torch.no_grad():
        for s in range(0, obs.shape[0], chunk):
            o = obs[s:s + chunk]
            z = encoder(o) if latent is None else latent[s:s + chunk]
            total += float(torch.sum((decoder.forward_grid(z, lights) - o) ** 2))
    return total / max(1, obs.numel())


# ----------------------------------------------------------------------------- training loop

def _fit(encoder: Encoder, decoder: Decoder, step_loss: Callable, val_loss: Callable, n_rows: int, *, epochs: int,
         batch_pixels: int, max_steps: int | None, lr: float, schedule: str, clip_norm: float, progress, desc: str,
         generator: torch.Generator, device: torch.device) -> dict:
    """The shared loop: Adam on ``step_loss(rows)`` over random batches of sample rows.

    Training is split into ``epochs`` rounds (passes over the sample, fewer steps when
    ``max_steps`` caps the total); each round ends with ``val_loss()``. The state with the
    lowest validation loss is kept. A non-finite step loss, or a validation loss above
    DIVERGENCE_FACTOR x the best, is a divergence: the networks and Adam's moments go back
    to the best state and, for the rest of the run, the rate is capped at half the highest
    rate of the failed round (the schedule's low-rate tail is kept). After MAX_RECOVERIES
    divergences training stops. Returns the history (losses, val_losses,
    best_val, best_round, recoveries, steps) with the networks left at their best state.
    """
    batch = max(1, min(int(batch_pixels), n_rows))
    total = _total_steps(n_rows, epochs, batch_pixels, max_steps)
    bounds = np.linspace(0, total, epochs + 1).round().astype(int)
    params = list(encoder.parameters()) + list(decoder.parameters())
    # fused: one kernel for all parameters; ~1 ms of a ~8 ms student step on 2 cores
    opt = torch.optim.Adam(params, lr=lr, fused=device.type in ("cpu", "cuda"))

    def snapshot():
        return copy.deepcopy((encoder.state_dict(), decoder.state_dict(), opt.state_dict()))

    def restore(state):
        encoder.load_state_dict(state[0])
        decoder.load_state_dict(state[1])
        opt.load_state_dict(state[2])

    best_val, best_state, best_round = val_loss(), snapshot(), 0
    lr_cap, recoveries, losses, val_losses = math.inf, [], [], []
    order, cursor = None, n_rows
    rounds = range(epochs)
    if progress is not None:
        rounds = progress(rounds, total=epochs, desc=desc)
    for r in rounds:
        total_loss = torch.zeros((), device=device)
        done, failure, top_rate = 0, None, 0.0
        for step in range(bounds[r], bounds[r + 1]):
            if cursor + batch > n_rows:
                order, cursor = torch.randperm(n_rows, generator=generator).to(device), 0
            rows = order[cursor:cursor + batch]
            cursor += batch
            rate = min(_lr_at(step, total, lr, schedule), lr_cap)
            top_rate = max(top_rate, rate)
            for group in opt.param_groups:
                group["lr"] = rate
            loss = step_loss(rows)
            if not torch.isfinite(loss):
                failure = f"non-finite training loss at step {step}"
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip_norm:
                torch.nn.utils.clip_grad_norm_(params, clip_norm)
            opt.step()
            total_loss += loss.detach()
            done += 1
        losses.append(float(total_loss) / max(1, done))
        val = val_loss() if failure is None else float("nan")
        if failure is None and not math.isfinite(val):
            failure = "non-finite validation loss"
        elif failure is None and val > DIVERGENCE_FACTOR * best_val:
            failure = f"validation loss {val:.3g} > {DIVERGENCE_FACTOR:g} x best {best_val:.3g}"
        if failure is not None:
            restore(best_state)
            lr_cap = 0.5 * top_rate
            recoveries.append({"round": r + 1, "step": int(step), "reason": failure, "rolled_back_to_round": best_round,
                               "lr_cap": lr_cap})
        elif val < best_val:
            best_val, best_state, best_round = val, snapshot(), r + 1
        val_losses.append(val)
        if hasattr(rounds, "set_postfix"):
            post = {"loss": f"{losses[-1]:.2e}", "val": f"{val:.2e}"}
            if recoveries:
                post["recovered"] = len(recoveries)
            rounds.set_postfix(**post)
        if len(recoveries) > MAX_RECOVERIES:
            break
    restore(best_state)
    return {"losses": losses, "val_losses": val_losses, "best_val": best_val, "best_round": best_round,
            "recoveries": recoveries, "steps": int(total), "batch_pixels": batch}


def _prior_record(requested: str, data: "_Data", check: dict | None, inherited: bool = False) -> dict:
    return {"requested": requested, "used": bool(len(data.prior_directions)), "virtual_lights": int(len(data.prior_directions)),
            "decided_by": "teacher" if inherited else ("check" if check else "setting"), "check": check}


def _settings(**kw) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()}


class _Data:
    """The pixels one training run sees, on its device: train/val observations, light xy and,
    with the light prior, the virtual lights' xy and HSH-9 targets of the training pixels (``both``:
    the observations then the prior targets; ``train`` is its observation part)."""

    def __init__(self, train_obs: np.ndarray, val_obs: np.ndarray, directions: np.ndarray, device: torch.device, *,
                 prior: bool = False, train_idx: np.ndarray | None = None, val_idx: np.ndarray | None = None):
        self.train_idx, self.val_idx = train_idx, val_idx
        n = len(directions)
        self.prior_directions = gap_light_directions(directions) if prior else np.zeros((0, 3), np.float32)
        # Observations and prior targets share one (S, N + M, 3) array: train and prior are views of it.
        if len(self.prior_directions):
            both = np.empty((len(train_obs), n + len(self.prior_directions), 3), np.float32)
            both[:, :n] = train_obs
            both[:, n:] = hsh9_relight(train_obs, directions, self.prior_directions)
        else:
            both = np.ascontiguousarray(train_obs, np.float32)
        self.both = torch.from_numpy(both).to(device)                              # (S, N + M, 3)
        self.train = self.both[:, :n]                                              # (S, N, 3)
        self.val = torch.from_numpy(np.ascontiguousarray(val_obs)).to(device)       # (V, N, 3)
        self.lights = torch.from_numpy(np.asarray(directions, np.float32)[:, :2].copy()).to(device)
        self.baseline = hsh9_fit_mse(val_obs, directions)
        self.all_lights = self.lights                                              # (N + M, 2)
        if len(self.prior_directions):
            self.all_lights = torch.cat([self.lights, torch.from_numpy(self.prior_directions[:, :2].copy()).to(device)])

    def release(self) -> None:
        """Drop the training sample's tensors (validation pixels and indices stay)."""
        self.both = self.train = None

    @classmethod
    def from_mlic(cls, mlic, max_pixels: int, seed: int, device: torch.device, prior: bool = False) -> "_Data":
        train_idx, val_idx = split_pixels(mlic, max_pixels=max_pixels, seed=seed)
        return cls(mlic.pixels(train_idx), mlic.pixels(val_idx), mlic.directions, device, prior=prior,
                   train_idx=train_idx, val_idx=val_idx)



def _autoencoder(data: _Data, n_lights: int, hidden, encoder_hidden, latent_size: int, light_scale: float,
                 device: torch.device) -> tuple:
    """A fresh encoder and decoder fitted to ``data``'s ground truth (and prior): (encoder, decoder, step_loss)."""
    encoder = Encoder(n_lights, encoder_hidden, latent_size).to(device)
    decoder = Decoder(latent_size, hidden, light_scale).to(device)
    _init_from_data(encoder, decoder, data.train)

    def step_loss(rows):
        return torch.mean((decoder.forward_grid(encoder(data.train[rows]), data.all_lights) - data.both[rows]) ** 2)
    return encoder, decoder, step_loss


def light_prior_check(mlic, *, seed: int = 0, steps: int = CHECK_STEPS, hold_every: int = CHECK_HOLD_EVERY,
                      max_pixels: int = CHECK_MAX_PIXELS, device: str | torch.device | None = None,
                      threads: int | None = None, progress=None) -> dict:
    """Does the HSH-9 light prior help on this capture? Measured on lights the networks never see.

    Every ``hold_every``-th captured light is held out; two short 50x50 teacher runs (at most
    ``steps`` steps and 10 passes over a sample of ``max_pixels`` pixels) are trained on the
    remaining lights, without and with the prior, and their errors on the validation pixels under
    the held lights are compared; the prior is used when it lowers that error by more than
    ``1 - PRIOR_MARGIN``. HSH-9 fitted to the same lights is scored too, for reference only (the
    short runs are under-trained, so it is no verdict on the final model). Returns a dict:
    ``use_prior`` (bool), ``mse_none``, ``mse_prior``, ``mse_hsh9``, ``held_lights``, ``steps``,
    ``seconds``.
    """
    dev = device if isinstance(device, torch.device) else _device(device)
    n = mlic.count
    held = np.arange(n) % hold_every == hold_every // 2
    keep = ~held
    if int(keep.sum()) < 9 or not held.any():
        return {"use_prior": False, "reason": f"{n} lights are too few to hold some out", "held_lights": int(held.sum())}
    start = time.perf_counter()
    train_idx, val_idx = split_pixels(mlic, max_pixels=max_pixels, seed=seed)
    obs_t, obs_v = mlic.pixels(train_idx), mlic.pixels(val_idx)
    dirs = np.asarray(mlic.directions, np.float32)
    held_xy = torch.from_numpy(dirs[held, :2].copy()).to(dev)
    truth = torch.from_numpy(np.ascontiguousarray(obs_v[:, held])).to(dev)
    result = {"held_lights": int(held.sum())}
    with _torch_threads(threads):
        for name, prior in (("mse_none", False), ("mse_prior", True)):
            data = _Data(obs_t[:, keep], obs_v[:, keep], dirs[keep], dev, prior=prior)
            torch.manual_seed(seed)
            encoder, decoder, step_loss = _autoencoder(data, int(keep.sum()), DEFAULT_TEACHER_HIDDEN,
                                                       DEFAULT_ENCODER_HIDDEN, LATENT_SIZE, LIGHT_SCALE, dev)
            hist = _fit(encoder, decoder, step_loss, lambda: _val_mse(encoder, decoder, data.val, data.lights),
                        data.train.shape[0], epochs=10, batch_pixels=BATCH_PIXELS, max_steps=steps, lr=LR,
                        schedule="onecycle", clip_norm=CLIP_NORM, progress=progress,
                        desc="light prior check" + (" (with prior)" if prior else ""),
                        generator=torch.Generator().manual_seed(seed), device=dev)
            with torch.no_grad():
                result[name] = float(torch.mean((decoder.forward_grid(encoder(data.val), held_xy) - truth) ** 2))
            result["steps"] = int(hist["steps"])
    hsh = hsh9_relight(obs_v[:, keep], dirs[keep], dirs[held])
    result["mse_hsh9"] = float(np.mean((hsh - obs_v[:, held]) ** 2))
    result["use_prior"] = bool(result["mse_prior"] < PRIOR_MARGIN * result["mse_none"])
    result["seconds"] = round(time.perf_counter() - start, 2)
    return result


def _total_steps(n_rows: int, epochs: int, batch_pixels: int, max_steps: int | None) -> int:
    """Steps of a run over ``n_rows`` sample rows: ``epochs`` passes at ``batch_pixels`` a step, capped by
    ``max_steps``, at least one step a round."""
    steps_per_epoch = max(1, n_rows // max(1, min(int(batch_pixels), n_rows)))
    total = epochs * steps_per_epoch if not max_steps else min(epochs * steps_per_epoch, int(max_steps))
    return max(total, epochs)


def _planned_steps(mlic, max_pixels: int, epochs: int, batch_pixels: int, max_steps: int | None) -> int:
    """The number of steps a run with these settings takes (as :func:`_fit` counts them)."""
    return _total_steps(max(1, _train_count(mlic, max_pixels)), epochs, batch_pixels, max_steps)


def _resolve_light_prior(light_prior: str, mlic, *, seed: int, device: torch.device, threads, progress,
                         run_steps: int, inherited: bool | None = None) -> tuple[bool, dict | None]:
    """(use the prior?, the auto check's result or None) for a light_prior setting."""
    if light_prior not in LIGHT_PRIORS:
        raise InputError(f"unknown light prior {light_prior!r} (use auto, hsh9 or none)")
    if light_prior == "none":
        return False, None
    if light_prior == "hsh9":
        if mlic.count < 9:
            raise InputError(f"the HSH-9 light prior needs at least 9 lights, the MLIC has {mlic.count} (use --light-prior none)")
        return True, None
    if inherited is not None:
        return inherited, None
    check = light_prior_check(mlic, seed=seed, steps=min(CHECK_STEPS, max(10, run_steps // 4)), device=device,
                              threads=threads, progress=progress)
    return check["use_prior"], check


def _train_guarded(build: Callable, data: _Data, *, seed: int, lr: float, label: str,
                   reference: float | None = None, **loop) -> tuple:
    """Train networks made by ``build(seed)`` -> (encoder, decoder, step_loss); guard the result
    against the HSH-9 baseline on the validation pixels and, for a student, against its teacher.

    reference : the teacher's error on the same validation pixels and lights, or None.
    When the best validation error is worse than HSH-9's, or above STUDENT_RETRY_FACTOR x
    ``reference``, training is repeated once from scratch with another seed at a quarter of the
    rate, for what is left of RETRY_BUDGET_FACTOR x ``max_steps``; the better attempt is kept.
    If neither beats HSH-9 the record says so in ``warning`` (one line). Returns
    (encoder, decoder, history, attempts, warning).
    """
    attempts, reason = [], None
    for s, rate in ((seed, lr), (seed + 1, lr * 0.25)):
        torch.manual_seed(s)
        encoder, decoder, step_loss = build(s)
        gen = torch.Generator().manual_seed(s)
        run = dict(loop)
        if attempts and loop.get("max_steps"):
            run["max_steps"] = max(1, int(RETRY_BUDGET_FACTOR * loop["max_steps"]) - attempts[0][3]["steps"])
        hist = _fit(encoder, decoder, step_loss, lambda: _val_mse(encoder, decoder, data.val, data.lights),
                    data.train.shape[0], lr=rate, generator=gen, **run)
        attempts.append((hist["best_val"], encoder, decoder, {**hist, "seed": s, "lr": rate, "retry_reason": reason}))
        if data.baseline is not None and hist["best_val"] > data.baseline:
            reason = "did not beat HSH-9 on the validation pixels"
        elif reference is not None and hist["best_val"] > STUDENT_RETRY_FACTOR * reference:
            reason = f"ended at {hist['best_val'] / reference:.2f} x the teacher's validation error"
        else:
            break
    best_val, encoder, decoder, hist = min(attempts, key=lambda a: a[0])
    warning = None
    if data.baseline is not None and best_val > data.baseline:
        warning = (f"{label} did not beat HSH-9 on the validation pixels (MSE {best_val:.3g} vs {data.baseline:.3g}) "
                   f"after {len(attempts)} attempts; keeping training's best (try more --epochs, or use --basis hsh)")
    summary = [{k: a[3][k] for k in ("seed", "lr", "steps", "best_val", "best_round", "recoveries", "retry_reason")}
               for a in attempts]
    return encoder, decoder, hist, summary, warning


def _record(method, data, hist, attempts, warning, *, seed, epochs, seconds, device, encoder, decoder, settings):
    return {
        "method": method, "seed": int(seed), "epochs": int(epochs), "steps": hist["steps"],
        "losses": [float(x) for x in hist["losses"]], "val_losses": [float(x) for x in hist["val_losses"]],
        "best_round": hist["best_round"], "recoveries": hist["recoveries"], "attempts": attempts,
        "baseline": {"hsh9_val_mse": data.baseline, "val_mse": float(hist["best_val"]),
                     "beats_hsh9": None if data.baseline is None else bool(hist["best_val"] <= data.baseline)},
        "warning": warning, "train_pixels": int(len(data.train_idx)), "val_pixels": int(len(data.val_idx)),
        "seconds": round(seconds, 3), "threads": torch.get_num_threads(), "device": str(device),
        "settings": settings, "decoder_parameters": mlp.decoder_parameters(decoder.to_numpy()),
        "encoder": encoder_to_numpy(encoder),
    }


def train_teacher(mlic, *, hidden: Sequence[int] = DEFAULT_TEACHER_HIDDEN,
                  encoder_hidden: Sequence[int] = DEFAULT_ENCODER_HIDDEN, latent_size: int = LATENT_SIZE,
                  epochs: int = EPOCHS, batch_pixels: int = BATCH_PIXELS, max_steps: int | None = TEACHER_MAX_STEPS,
                  max_pixels: int = MAX_TRAIN_PIXELS, lr: float = LR, schedule: str = "onecycle",
                  clip_norm: float = CLIP_NORM, light_scale: float = LIGHT_SCALE, light_prior: str = "auto",
                  seed: int = 0, threads: int | None = None, device: str | None = None,
                  progress=None) -> tuple[RTIModel, dict]:
    """Train a NeuralRTI autoencoder on an MLIC.

    mlic : :class:`pnrelight.formats.mlic.MLIC` with images (N, H, W, 3) and directions (N, 3).
        With a mask, training uses the masked pixels; latents are computed for all pixels.
    hidden : decoder widths; (50, 50) is NeuralRTI's reference (OpenLIME loads any two
        equal-width hidden layers); wider or deeper decoders make stronger teachers.
    max_steps, max_pixels : the step budget and training-sample cap that bound the cost on
        large captures (the latents of every pixel are then computed in row blocks).
    light_prior : "hsh9" also trains on an HSH-9 fit's relighting at virtual lights in the gaps
        of the captured ones (:func:`gap_light_directions`); "none" trains on the captured lights
        alone; "auto" (default) decides per capture with :func:`light_prior_check`.
    device : "cpu" (default), "cuda" or "auto".
    progress : optional ``progress(iterable, total=, desc=)`` wrapper (e.g. pnrelight.progress.progress).
    Returns (model, record): a "neural" RTIModel (coefficients (H, W, latent_size),
    decoder layers) and the training record (losses and validation losses per round,
    recoveries from divergence, the HSH-9 baseline check, seconds, seed, settings,
    ``encoder``: the encoder layers as float32 numpy [(W (out, in), b), ...]).
    """
    return _train_autoencoder(mlic, "neuralrti-teacher", hidden=hidden, encoder_hidden=encoder_hidden,
                              latent_size=latent_size, epochs=epochs, batch_pixels=batch_pixels, max_steps=max_steps,
                              max_pixels=max_pixels, lr=lr, schedule=schedule, clip_norm=clip_norm,
                              light_scale=light_scale, light_prior=light_prior, seed=seed, threads=threads,
                              device=device, progress=progress)


def _train_autoencoder(mlic, method: str, *, hidden, encoder_hidden, latent_size, epochs, batch_pixels, max_steps,
                       max_pixels, lr, schedule, clip_norm, light_scale, light_prior, seed, threads, device, progress):
    _check_mlic(mlic)
    _check_epochs(epochs)
    _check_schedule(schedule)
    dev = _device(device)
    label = "teacher" if method == "neuralrti-teacher" else "plain student"
    with _torch_threads(threads):
        start = time.perf_counter()
        use_prior, check = _resolve_light_prior(
            light_prior, mlic, seed=seed, device=dev, threads=threads, progress=progress,
            run_steps=_planned_steps(mlic, max_pixels, epochs, batch_pixels, max_steps))
        data = _Data.from_mlic(mlic, max_pixels, seed, dev, prior=use_prior)

        def build(s):
            return _autoencoder(data, mlic.count, hidden, encoder_hidden, latent_size, light_scale, dev)

        encoder, decoder, hist, attempts, warning = _train_guarded(
            build, data, seed=seed, lr=lr, label=label, epochs=epochs, batch_pixels=batch_pixels, max_steps=max_steps,
            schedule=schedule, clip_norm=clip_norm, progress=progress, desc=label, device=dev)
        data.release()  # the training sample is not needed to encode every pixel
        latent = _encode_mlic(encoder, mlic, dev, progress)
        settings = _settings(hidden=tuple(hidden), encoder_hidden=tuple(encoder_hidden), latent_size=latent_size,
                             batch_pixels=batch_pixels, max_steps=max_steps, max_pixels=max_pixels, lr=lr,
                             schedule=schedule, clip_norm=clip_norm, light_scale=light_scale, light_prior=light_prior,
                             optimizer="adam", loss="mse")
        record = _record(method, data, hist, attempts, warning, seed=seed, epochs=epochs,
                         seconds=time.perf_counter() - start, device=dev, encoder=encoder.cpu(), decoder=decoder.cpu(),
                         settings=settings)
        record["light_prior"] = _prior_record(light_prior, data, check)
    model = _neural_model(mlic, latent, decoder, {"method": method, "seed": int(seed)})
    return model, record


def distill_student(teacher: RTIModel, mlic, *, hidden: Sequence[int] = DEFAULT_STUDENT_HIDDEN, alpha: float = 0.3,
                    encoder_hidden: Sequence[int] = DEFAULT_ENCODER_HIDDEN, epochs: int = STUDENT_EPOCHS,
                    batch_pixels: int = STUDENT_BATCH_PIXELS, max_steps: int | None = STUDENT_MAX_STEPS,
                    max_pixels: int = MAX_TRAIN_PIXELS, lr: float = LR, schedule: str = "onecycle",
                    clip_norm: float = CLIP_NORM, light_scale: float = LIGHT_SCALE, extra_lights: int = 0,
                    extra_min_z: float | None = None, teacher_encoder: list | str | None = "auto",
                    light_prior: str = "auto", seed: int = 0, threads: int | None = None, device: str | None = None,
                    progress=None) -> tuple[RTIModel, dict]:
    """DisK-NeuralRTI: train a student (own encoder, small decoder) from a teacher model.

    teacher : any "neural" RTIModel fitted on the same MLIC (NeuralRTI's 50x50 reference or a
        larger decoder): its latent gives the teacher's prediction for every pixel under any light.
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
    light_prior : as in :func:`train_teacher`; "auto" follows the teacher's training record (runs
        :func:`light_prior_check` when there is none). At the virtual lights the student's target
        is ``alpha * HSH-9 + (1 - alpha) * teacher``, as at captured lights with HSH-9 for the photograph.
    The returned model is selected on validation pixels against the ground truth, with the
    divergence recovery and HSH-9 guard of :func:`train_teacher`.
    Returns (model, record) like :func:`train_teacher`.
    """
    _check_mlic(mlic)
    if teacher.kind != "neural" or not teacher.layers:
        raise InputError(f"the teacher must be a neural RTI model, not {teacher.label} (fit one with --basis neural)")
    if teacher.shape != tuple(mlic.shape):
        raise InputError(f"teacher is {teacher.shape[1]}x{teacher.shape[0]} but the MLIC is {mlic.shape[1]}x{mlic.shape[0]} (distil on the MLIC the teacher was fitted on)")
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be in [0, 1], not {alpha} (0.3 is the DisK default)")
    _check_epochs(epochs)
    _check_schedule(schedule)
    dev = _device(device)
    latent_size = int(teacher.coefficients.shape[-1])
    if isinstance(teacher_encoder, str):
        teacher_encoder = _compatible_encoder(teacher, mlic.count, encoder_hidden, latent_size)
    min_z = float(np.min(mlic.directions[:, 2])) if extra_min_z is None else float(extra_min_z)
    use_teacher = alpha < 1.0
    n_extra = int(extra_lights) if use_teacher else 0
    label = "student" if use_teacher else "plain student"
    with _torch_threads(threads):
        start = time.perf_counter()
        inherited = (((teacher.meta or {}).get("training") or {}).get("light_prior") or {}).get("used")
        use_prior, check = _resolve_light_prior(
            light_prior, mlic, seed=seed, device=dev, threads=threads, progress=progress, inherited=inherited,
            run_steps=_planned_steps(mlic, max_pixels, epochs, batch_pixels, max_steps))
        data = _Data.from_mlic(mlic, max_pixels, seed, dev, prior=use_prior)
        t_decoder = Decoder.from_numpy(teacher.layers).requires_grad_(False).to(dev)
        def teacher_latent(idx):  # (len(idx), K) stored teacher codes of these pixels, on the device
            return torch.from_numpy(np.ascontiguousarray(
                teacher.coefficients.reshape(-1, latent_size)[idx], np.float32)).to(dev)

        t_latent = teacher_latent(data.train_idx)                                                 # (S, K)
        # alpha*|p-g|^2 + (1-alpha)*|p-t|^2 = |p - (alpha*g + (1-alpha)*t)|^2 + const: one error
        # term against the blended target, computed once for the whole (bounded) sample.
        target = _blended_targets(t_decoder, t_latent, data.both, data.all_lights, alpha) if use_teacher else data.both
        t_val = teacher_latent(data.val_idx)                                                      # (V, K)
        # the teacher's error where the student's is measured: its retry reference
        reference = _val_mse(None, t_decoder, data.val, data.lights, latent=t_val)

        def build(s):
            gen = torch.Generator().manual_seed(s + 7919)  # extra lights: a stream apart from the batch order
            encoder = Encoder(mlic.count, encoder_hidden, latent_size).to(dev)
            decoder = Decoder(latent_size, hidden, light_scale).to(dev)
            _init_from_data(encoder if teacher_encoder is None else None, decoder, data.train)
            if teacher_encoder is not None:
                _load_layers(encoder.layers, teacher_encoder)

            def step_loss(rows):
                z = encoder(data.train[rows])
                loss = torch.mean((decoder.forward_grid(z, data.all_lights) - target[rows]) ** 2)
                if n_extra:  # teacher-only targets; each extra light weighs as a captured light's teacher term
                    extra = sample_hemisphere_xy(n_extra, gen, min_z=min_z).to(dev)
                    with torch.no_grad():
                        t_extra = t_decoder.forward_grid(t_latent[rows], extra)
                    loss = loss + (1.0 - alpha) * n_extra / len(data.lights) * torch.mean((decoder.forward_grid(z, extra) - t_extra) ** 2)
                return loss
            return encoder, decoder, step_loss

        encoder, decoder, hist, attempts, warning = _train_guarded(
            build, data, seed=seed, lr=lr, label=label, reference=reference if use_teacher else None, epochs=epochs,
            batch_pixels=batch_pixels, max_steps=max_steps, schedule=schedule, clip_norm=clip_norm, progress=progress,
            desc=label, device=dev)
        del target, t_latent, t_val
        data.release()  # the training sample is not needed to encode every pixel
        latent = _encode_mlic(encoder, mlic, dev, progress)
        method = "disk-student" if use_teacher else "plain-student"
        settings = _settings(hidden=tuple(hidden), encoder_hidden=tuple(encoder_hidden), latent_size=latent_size,
                             alpha=alpha, extra_lights=n_extra, extra_min_z=min_z if n_extra else None,
                             teacher_encoder_init=teacher_encoder is not None, batch_pixels=batch_pixels,
                             max_steps=max_steps, max_pixels=max_pixels, lr=lr, schedule=schedule, clip_norm=clip_norm,
                             light_scale=light_scale, light_prior=light_prior, optimizer="adam",
                             loss="mse(alpha*gt + (1-alpha)*teacher), = alpha*mse(gt) + (1-alpha)*mse(teacher) + const")
        record = _record(method, data, hist, attempts, warning, seed=seed, epochs=epochs,
                         seconds=time.perf_counter() - start, device=dev, encoder=encoder.cpu(), decoder=decoder.cpu(),
                         settings=settings)
        record["light_prior"] = _prior_record(light_prior, data, check, inherited=inherited is not None)
        record["teacher_decoder_parameters"] = mlp.decoder_parameters(teacher.layers)
        record["baseline"]["teacher_val_mse"] = reference
    model = _neural_model(mlic, latent, decoder, {"method": method, "seed": int(seed)})
    return model, record


def _blended_targets(t_decoder: Decoder, t_latent: torch.Tensor, obs: torch.Tensor, lights: torch.Tensor,
                     alpha: float, chunk: int = 4096) -> torch.Tensor:
    """alpha * observed (or prior) + (1 - alpha) * teacher prediction for every sample row: (S, L, 3)."""
    target = torch.empty_like(obs)
    with torch.no_grad():
        for s in range(0, obs.shape[0], chunk):
            target[s:s + chunk] = alpha * obs[s:s + chunk] + (1.0 - alpha) * t_decoder.forward_grid(t_latent[s:s + chunk], lights)
    return target


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
                        max_steps: int | None = STUDENT_MAX_STEPS, max_pixels: int = MAX_TRAIN_PIXELS,
                        lr: float = LR, schedule: str = "onecycle", clip_norm: float = CLIP_NORM,
                        light_scale: float = LIGHT_SCALE, light_prior: str = "none", seed: int = 0,
                        threads: int | None = None, device: str | None = None,
                        progress=None) -> tuple[RTIModel, dict]:
    """The student architecture trained on ground truth alone (no teacher, own encoder from scratch,
    no light prior unless asked), with the distilled student's schedule: the baseline DisK must beat."""
    return _train_autoencoder(mlic, "plain-student", hidden=hidden, encoder_hidden=encoder_hidden,
                              latent_size=latent_size, epochs=epochs, batch_pixels=batch_pixels, max_steps=max_steps,
                              max_pixels=max_pixels, lr=lr, schedule=schedule, clip_norm=clip_norm,
                              light_scale=light_scale, light_prior=light_prior, seed=seed, threads=threads,
                              device=device, progress=progress)


def torch_decode(latent: np.ndarray, light_xy: np.ndarray, layers: list) -> np.ndarray:
    """Evaluate numpy decoder layers with torch (float32): latent (P, K), light_xy (2,) or (P, 2) -> (P, 3)."""
    dec = Decoder.from_numpy(layers)
    z = torch.from_numpy(np.asarray(latent, np.float32))
    l = torch.from_numpy(np.asarray(light_xy, np.float32))
    with torch.no_grad():
        if l.ndim == 1:
            return dec.forward_grid(z, l[None])[:, 0].numpy()
        return dec(z, l).numpy()
