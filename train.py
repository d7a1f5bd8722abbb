"""Progressive-growing StyleGAN trainer on Hugging Face Accelerate.

The same code runs on one CPU, one GPU, several GPUs and several machines:

    accelerate launch train.py                                  # the default: synthetic faces, 32x32, CPU-sized
    accelerate launch train.py --data ~/ffhq --preset ffhq256   # the paper's settings at 256x256
    torchrun --nproc_per_node 2 train.py --kimg 20              # two CPU processes (gloo)
    accelerate launch train.py --resume runs/00003-synthetic-32-cpu
    accelerate launch train.py --init runs/00003-synthetic-32-cpu --data ~/few --preset finetune  # docs/finetune.md

Everything that changes during training (resolution, fade-in alpha, batch size, learning rate) is a pure function of
the number of real images shown so far, `cur_nimg` (as in the official code), so a resumed run needs only `cur_nimg`,
the weights, the optimizer states and the RNG states to continue exactly where it stopped.
"""

from __future__ import annotations

import argparse
import copy
import errno
import json
import math
import os
import pickle
import shutil
import sys
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError

import augment
import ops
from common import (RUNS_DIR, ArgumentParser, UsageError, float_in, int_at_least, positive_float, run_cli,
                    seed_type, to_uint8)
from model import (PRESETS, WEIGHTS_NAME, Discriminator, Generator, NetworkConfig, NetworkError, load_network,
                   save_network, seed_to_z)

# ----------------------------------------------------------------------------------------------------------------
# Training presets. Batch sizes are global (summed over processes); learning rates per resolution (paper, App. C).

PAPER_BATCH = {4: 512, 8: 256, 16: 128, 32: 64, 64: 32, 128: 32, 256: 32, 512: 32, 1024: 32}
PAPER_LR = {128: 0.0015, 256: 0.002, 512: 0.003, 1024: 0.003}  # 0.001 below 128^2

TRAIN_PRESETS = {
    # The paper's FFHQ schedule: start at 8x8, 600k images of fade-in and 600k stable per resolution, 25M in all.
    "ffhq1024": dict(network="ffhq1024", start_res=8, fade_kimg=600, stable_kimg=600, kimg=25000, batch=PAPER_BATCH,
                     lr=PAPER_LR, base_lr=0.001, gamma=10.0, mirror=True, tick_kimg=160, snap_kimg=1000, ema_rampup=None),
    "ffhq256": dict(network="ffhq256", start_res=8, fade_kimg=600, stable_kimg=600, kimg=25000, batch=PAPER_BATCH,
                    lr=PAPER_LR, base_lr=0.001, gamma=10.0, mirror=True, tick_kimg=160, snap_kimg=1000, ema_rampup=None),
    # A laptop CPU: 32x32 synthetic faces, a narrow network and a short schedule: 88k images, 17-20 minutes on 2
    # idle cores with bf16. Each departure was chosen at equal wall time by FID-2k (docs/default-network.md).
    "cpu": dict(network="cpu", start_res=8, fade_kimg=6, stable_kimg=6, kimg=88, batch={8: 16, 16: 16, 32: 16},
                lr={}, gamma=1.0, mirror=False, tick_kimg=2, snap_kimg=8,
                # bf16 where the CPU computes in it ('auto'), and R1 every 16th D step with 16 times the weight (lazy
                # regularization, StyleGAN2): 2.7x the images per second at 32x32. Short growing phases (6k images)
                # and batch 16 leave most of the run to 32x32 and double the steps: FID-2k 128 against 164 for 12k
                # phases at batch 32, in the same time. Then lr 0.01 (the paper: 0.001 at 32x32): FID-2k 128, 115,
                # 110, 95, 87, 73, 72 at 0.002, 0.003, 0.004, 0.005, 0.007, 0.01, 0.014; a short run gains from large
                # steps, and the gain stops between 0.01 and 0.014, where the smaller step is the safer one.
                base_lr=0.01,
                mixed_precision="auto", r1_interval=16,
                # A 10k-image EMA half-life would leave the EMA of an 88k-image run mostly random init. StyleGAN2-ADA's
                # ramp-up caps the half-life at 5% of the images seen so far.
                ema_rampup=0.05),
    # Fine-tuning a trained network (--init) on a few hundred or thousand images: no growing (start_res is clipped
    # to the network's resolution), kimg set by the user (20k images shown here as a default). Without --init it
    # trains the cpu network from scratch with the same settings (the baseline of docs/finetune.md).
    "finetune": dict(network="cpu", start_res=1024, fade_kimg=1, stable_kimg=0, kimg=20, batch={r: 16 for r in PAPER_BATCH},
                     lr={},
                     # Below the cpu preset's from-scratch rate: with Adam's beta1 = 0 every step moves each weight by
                     # about lr, and the first steps, against a D that is fresh or meets a new domain, are the noisiest.
                     base_lr=0.001,
                     # The cpu preset's R1 weight at 32x32; StyleGAN2-ADA's transfer runs keep the source's gamma,
                     # which is 10 at 1024x1024 (pass --gamma 10 to fine-tune an official FFHQ network).
                     gamma=1.0, mirror=False, tick_kimg=2, snap_kimg=4,
                     # No EMA ramp-up: G_ema starts from the source's G_ema, not from random weights. A 2k-image
                     # half-life (StyleGAN2-ADA's 10k x batch / 32 would be 5k at batch 16) lets a 10-20k-image run
                     # leave the source behind.
                     ema_kimg=2, ema_rampup=None),
}


@dataclass
class TrainConfig:
    preset: str = "cpu"
    data: str = "synthetic"
    resolution: int = 0  # 0 = the preset network's resolution
    kimg: float = 0  # total thousands of real images shown; 0 = the preset's
    start_res: int = 8
    fade_kimg: float = 600
    stable_kimg: float = 600
    batch: dict = field(default_factory=dict)  # {resolution: global batch}
    lr: dict = field(default_factory=dict)  # {resolution: learning rate}, base_lr elsewhere
    base_lr: float = 0.001
    loss: str = "logistic"  # "logistic" (non-saturating + R1) or "wgangp" (WGAN-GP, as for CelebA-HQ)
    gamma: float = 10.0  # R1 weight (logistic) or gradient-penalty weight lambda (wgangp)
    r1_interval: int = 1  # 1 = R1 every step, as the paper; k > 1 = lazy regularization (StyleGAN2), an option
    r1_scaling: str = "official"  # "official": gamma * (res / final)^2 while growing (see r1_weight); "plain": gamma
    style_mixing: float = 0.9  # probability of mixing regularization (paper Sec. 3.1)
    ema_kimg: float = 10.0  # generator EMA half-life in thousands of images (paper: 10k)
    ema_rampup: float | None = None  # cap the half-life at this fraction of images seen (StyleGAN2-ADA); None = paper
    w_avg_beta: float = 0.995  # moving-average decay of w_avg, for truncation
    mirror: bool = False  # horizontal flips of the real images
    mixed_precision: str = "no"  # no, bf16 or fp16 (through Accelerate); "auto" is resolved by make_config
    seed: int = 0
    tick_kimg: float = 4
    snap_kimg: float = 8
    keep_checkpoints: int = 2
    workers: int = 2
    network: dict = field(default_factory=dict)  # NetworkConfig as a dict
    max_images: int | None = None  # limit the data set size
    pad: bool = False  # pad non-square images to a square with black instead of centre-cropping them
    cache_dir: str | None = None  # decoded-image cache; None = data.cache_root()/data
    stream: bool = False  # build the cache from a Hub data set streamed over the network, never downloaded whole
    cpu: bool = False  # train on the CPU even where a GPU is available
    channels_last: bool = True  # NHWC memory layout: the same maths, faster convolutions (docs/benchmarks.md)
    init: str = ""  # the trained network or run this run started from (--init); "" = random weights
    diffaugment: str = ""  # DiffAugment policy for everything D sees, e.g. "color,translation,cutout"; "" = off
    freeze_d: int = 0  # FreezeD: D's highest-resolution blocks (with their fromRGB) left untrained
    compile: bool = False  # torch.compile every pass but R1's

    def batch_at(self, res: int) -> int:
        """Global minibatch at a resolution (JSON round trips turn the keys into strings)."""
        return int(self.batch.get(res, self.batch.get(str(res), min(self.batch.values(), default=32))))

    def lr_at(self, res: int) -> float:
        return float(self.lr.get(res, self.lr.get(str(res), self.base_lr)))

    def r1_weight(self, res: int) -> float:
        """The R1 weight at a growing resolution. The official code tiles the reals up to the final resolution R
        ('UpscaleLOD') and takes R1 with respect to those pixels; D averages them back down, so every gradient is
        divided by f^2 (f = R / res) and each squared norm by f^2 (f^2 tiled copies of each pixel, each (1/f^2)^2).
        R1 at `res` with gamma * (res / R)^2 is therefore the official penalty, without tiling."""
        if self.r1_scaling == "plain":
            return self.gamma
        return self.gamma * (res / self.network["resolution"]) ** 2


# ----------------------------------------------------------------------------------------------------------------
# Schedule: a pure function of images seen


@dataclass
class Phase:
    res: int  # resolution being trained
    alpha: float  # fade-in of the block at `res` (1 = fully grown)
    batch: int  # global minibatch
    lr: float
    end_nimg: int | None  # where this phase (a fade or a stable stretch) ends; None: at the end of training

    @property
    def key(self):
        return (self.res, self.end_nimg)


def schedule(cur_nimg: int, cfg: TrainConfig) -> Phase:
    """Official progressive growing: train `stable_kimg` at a resolution, then fade the next one in over `fade_kimg`."""
    final = cfg.network["resolution"]
    stable, fade = round(cfg.stable_kimg * 1000), round(cfg.fade_kimg * 1000)  # integer images: no float drift
    period = stable + fade
    k = cur_nimg // period if period > 0 else 0
    into = cur_nimg - k * period
    res = cfg.start_res * 2**k
    if res >= final:  # fully grown: one last phase to the end
        return Phase(final, 1.0, cfg.batch_at(final), cfg.lr_at(final), None)
    if into < stable:
        return Phase(res, 1.0, cfg.batch_at(res), cfg.lr_at(res), k * period + stable)
    alpha = (into - stable) / fade
    return Phase(res * 2, alpha, cfg.batch_at(res * 2), cfg.lr_at(res * 2), (k + 1) * period)




# ----------------------------------------------------------------------------------------------------------------
# Losses (pure functions, called directly by the tests)


def d_logistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def g_nonsaturating_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Mean over the batch of |grad_x D(x)|^2 on real images (Mescheder et al. 2018). `scale` is the fp16 loss scale:
    gradients are taken of the scaled logits (so they do not underflow) and unscaled in fp32. The first pass skips
    D's weight gradients, which it would throw away; the second, through `grad`, computes them."""
    with ops.no_weight_gradients():
        (grad,) = torch.autograd.grad(real_logits.sum() * scale, real, create_graph=True)
    return (grad.float() / scale).square().sum(dim=[1, 2, 3]).mean()


def wgan_gp_penalty(D, real: torch.Tensor, fake: torch.Tensor, res: int, alpha: float) -> torch.Tensor:
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    mixed = real.lerp(fake, eps).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(mixed, res=res, alpha=alpha).sum(), mixed, create_graph=True)
    return (grad.float().flatten(1).norm(dim=1) - 1).square().mean()


# ----------------------------------------------------------------------------------------------------------------
# Data: a sampler that is a pure function of images seen, so a resumed run reads exactly what it would have


class StreamSampler(torch.utils.data.Sampler):
    """Indices [start, stop) of an endless stream of per-epoch permutations (seeded by seed and epoch)."""

    def __init__(self, size: int, seed: int, start: int, stop: int):
        self.size, self.seed, self.start, self.stop = size, seed, start, stop

    def __len__(self):
        return self.stop - self.start

    def __iter__(self):
        pos = self.start
        while pos < self.stop:
            epoch, offset = divmod(pos, self.size)
            perm = np.random.RandomState((self.seed * 100003 + epoch) % 2**32).permutation(self.size)
            take = perm[offset: offset + (self.stop - pos)]
            yield from take.tolist()
            pos += len(take)


def downsample(img: torch.Tensor, res: int) -> torch.Tensor:
    """Box-filter (2x2 average, repeated) to `res`, as the official multi-resolution data sets are built."""
    while img.shape[-1] > res:
        img = F.avg_pool2d(img, 2)
    return img


def prepare_reals(uint8: torch.Tensor, phase: Phase, mirror: bool) -> torch.Tensor:
    """uint8 (N, C, R, R) -> float in [-1, 1] at the phase resolution, blended across the fade like the generator's output."""
    x = uint8.float() / 127.5 - 1
    x = downsample(x, phase.res)
    if phase.alpha < 1.0:  # official process_reals: lerp from the lower resolution, nearest-upsampled
        low = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")
        x = low + (x - low) * phase.alpha
    if mirror:
        flip = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < 0.5
        x = torch.where(flip, x.flip(3), x)
    return x


# ----------------------------------------------------------------------------------------------------------------
# Run folders and checkpoints


def run_ids(outdir: Path) -> list[int]:
    return [int(p.name.split("-")[0]) for p in outdir.glob("*") if p.is_dir() and p.name.split("-")[0].isdigit()]


def next_run_dir(outdir: Path, name: str) -> Path:
    """Create and return outdir/NNNNN-name, one past the highest number there. Creating the folder is the claim: of
    two runs started at once under one name, the second finds the folder taken and numbers itself again, instead of
    writing into the first's folder. (Two names started at once may still get the same number: harmless.)"""
    outdir.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        run_dir = outdir / f"{max(run_ids(outdir), default=-1) + 1:05d}-{name}"
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise UsageError(f"could not create a new run folder in {outdir}: other runs keep taking the numbers; try again")


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoint folders, oldest first (the temporary `.tmp` folders of unfinished writes excluded)."""
    return sorted((run_dir / "checkpoints").glob("ckpt-*[0-9]"), key=lambda p: int(p.name.split("-")[1]))


def latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = [c for c in list_checkpoints(run_dir) if (c / "state.json").is_file()]
    return ckpts[-1] if ckpts else None


RNG_STATE_PREFIX = "random_states_"  # Accelerate's per-process RNG files: random_states_<rank>.pkl


def verify_checkpoint(ckpt: Path, processes: int = 1) -> dict[str, str]:
    """What is wrong with a checkpoint, as {file: problem}; empty when every file a resume reads is there and readable.

    Checked: the safetensors headers and sizes of both networks' weights and of G_ema (safetensors has no checksum,
    so flipped bits inside tensor data cannot be seen; truncation and a damaged header can), the optimizer, RNG and
    (if present) gradient-scaler states, and state.json. The .bin/.pkl files are torch.save zip archives holding a
    pickle: their CRC-32s are checked, then they are read with Accelerate's own loader, the one load_state uses:
    torch.load(weights_only=True), whose unpickler admits only tensors, plain containers and an allowlist of numpy
    types, so reading them runs no code from the file. Reading them in full is the only way to know load_state will
    succeed: Accelerate skips an unreadable RNG file silently.
    """
    from accelerate.utils import load as accelerate_load
    from safetensors import safe_open

    problems = {}
    for name in ("model.safetensors", "model_1.safetensors", "G_ema/model.safetensors"):  # G, D, G_ema
        f = ckpt / name
        if not f.is_file():
            problems[name] = "is missing"
            continue
        try:
            with safe_open(str(f), framework="pt") as st:  # checks the header against the file size
                st.keys()
        except Exception as e:  # SafetensorError, or OSError for an unreadable file
            problems[name] = f"is unreadable ({_one_line(e)})"
    pickles = ["optimizer.bin", "optimizer_1.bin"] + [f"{RNG_STATE_PREFIX}{i}.pkl" for i in range(processes)]
    if (ckpt / "scaler.pt").exists():  # fp16 runs only
        pickles.append("scaler.pt")
    for name in pickles:
        f = ckpt / name
        if not f.is_file():
            problems[name] = "is missing"
            continue
        try:
            with zipfile.ZipFile(f) as z:  # torch.save writes a zip archive with a CRC-32 per member
                bad = z.testzip()
        except (zipfile.BadZipFile, OSError):
            problems[name] = "is unreadable (not a complete torch.save archive: truncated or overwritten)"
            continue
        if bad is not None:
            problems[name] = f"is unreadable (checksum mismatch in {bad})"
            continue
        try:
            obj = accelerate_load(f, map_location="cpu")
        except pickle.UnpicklingError:
            problems[name] = "is unreadable (holds objects other than tensors and plain data; not loaded)"
            continue
        except Exception as e:
            problems[name] = f"is unreadable ({_one_line(e)})"
            continue
        if name.startswith(RNG_STATE_PREFIX):
            keys = ["random_state", "numpy_random_seed", "torch_manual_seed"]
            if torch.cuda.is_available():  # load_state restores the CUDA generators too, when there are any
                keys.append("torch_cuda_manual_seed")
            missing = [k for k in keys if not isinstance(obj, dict) or k not in obj]
            if missing:
                problems[name] = f"lacks {', '.join(missing)}"
    try:
        state = json.loads((ckpt / "state.json").read_text())
        if not isinstance(state, dict) or not isinstance(state.get("cur_nimg"), int) or "stats" not in state:
            problems["state.json"] = "lacks cur_nimg or stats"
    except FileNotFoundError:
        problems["state.json"] = "is missing"
    except (OSError, ValueError) as e:
        problems["state.json"] = f"is unreadable ({_one_line(e)})"
    return problems


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _describe(ckpt: Path, problems: dict[str, str]) -> str:
    return f"{ckpt.name}: " + ", ".join(f"{f} {p}" for f, p in problems.items())


def _rng_only(problems: dict[str, str]) -> bool:
    return bool(problems) and all(f.startswith(RNG_STATE_PREFIX) for f in problems)


def resume_checkpoint(run_dir: Path, chosen: Path | None = None, processes: int = 1, allow_inexact: bool = False,
                      warn=print) -> Path:
    """The checkpoint to resume from, verified: `chosen` if given (refused if damaged), else the newest intact one.
    A checkpoint whose only problem is its RNG states would resume, but not bit-identically: it is used only with
    allow_inexact. Falling back past a damaged checkpoint warns, naming both."""
    if chosen is not None and not chosen.is_dir():
        raise UsageError(f"{chosen} does not exist: pass a run folder or one of its checkpoints/ckpt-N folders")
    candidates = [chosen] if chosen is not None else list_checkpoints(run_dir)[::-1]  # newest first
    if not candidates:
        raise UsageError(f"{run_dir} has no complete checkpoint to resume from")
    skipped = []  # (checkpoint, problems), newest first
    for ckpt in candidates:
        problems = verify_checkpoint(ckpt, processes)
        if not problems or (allow_inexact and _rng_only(problems)):
            if skipped:
                warn(f"warning: damaged checkpoint {'; '.join(_describe(c, p) for c, p in skipped)}; resuming from "
                     f"{ckpt.name} instead, the newest intact one")
            if problems:
                warn(f"warning: {_describe(ckpt, problems)}; resuming from {ckpt.name} with fresh RNG states "
                     "(--allow-inexact-resume): the run goes on, but not bit-identically to an uninterrupted one")
            return ckpt
        skipped.append((ckpt, problems))
    damage = "; ".join(_describe(c, p) for c, p in skipped)
    inexact = [c.name for c, p in skipped if _rng_only(p)]
    if chosen is not None and inexact:
        raise UsageError(f"{damage}: the resume would not be bit-identical; add --allow-inexact-resume to go on "
                         f"anyway, or resume {run_dir} to use its newest intact checkpoint")
    if chosen is not None:
        raise UsageError(f"damaged checkpoint {damage}; resume {run_dir} to use its newest intact checkpoint")
    hint = (f"; {inexact[0]} has only unreadable RNG states: add --allow-inexact-resume to resume from it anyway"
            if inexact else "")
    raise UsageError(f"no intact checkpoint in {run_dir}: {damage}{hint}")


# torch.save reports a failed write as RuntimeError (without errno), safetensors as SafetensorError, Python as OSError.
WRITE_ERRORS = (OSError, RuntimeError, SafetensorError)


def fp32_bytes(*modules: torch.nn.Module) -> int:
    return sum(t.numel() * 4 for m in modules for t in [*m.parameters(), *m.buffers()])


def write_error(e: BaseException) -> str:
    """Why a write failed, in a few words: an OSError's text repeats the path; torch.save's names no cause (a full disk
    reads "unexpected pos"), so the free space in write_failed's message tells."""
    return e.strerror if isinstance(e, OSError) and e.strerror else _one_line(e)


def write_failed(path: Path, why: str, need: int, intact: str, run_dir: Path) -> UsageError:
    """The one-line message for a write that failed: what, why, the free space it needs, and what is intact."""
    free = shutil.disk_usage(path.parent if path.parent.exists() else run_dir).free
    return UsageError(f"could not write {path} ({why}): it needs about {need / 2**20:.1f} MB free in {path.parent}, "
                      f"which has {free / 2**20:.1f} MB free. {intact}")


def save_grid(images: np.ndarray, path: Path, cols: int) -> np.ndarray:
    """uint8 (N, H, W, C) -> one PNG grid."""
    from PIL import Image

    n, h, w, c = images.shape
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * h, cols * w, c), np.uint8)
    for i, img in enumerate(images):
        grid[(i // cols) * h:(i // cols + 1) * h, (i % cols) * w:(i % cols + 1) * w] = img
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    Image.fromarray(grid.squeeze(-1) if c == 1 else grid).save(tmp)
    os.replace(tmp, path)
    return grid


# ----------------------------------------------------------------------------------------------------------------
# Fine-tuning: the weights a run starts from (--init), and the discriminator layers it leaves frozen (--freeze-d)


@dataclass
class InitSource:
    network: dict  # NetworkConfig as a dict
    G: dict  # state dicts: the training generator,
    G_ema: dict  # its moving average,
    D: dict | None  # and the discriminator; None = D starts from random weights
    description: str  # where each came from, for the log


def load_init(path: str | os.PathLike) -> InitSource:
    """The weights a fine-tuning run starts from, resolved from any --init source:

    a checkpoint (runs/<run>/checkpoints/ckpt-N)  G, D (Accelerate's model.safetensors, model_1.safetensors), G_ema/
    a run folder (runs/<run>)                     its newest complete checkpoint, as above
    a network folder (config.json + model.safetensors) or .safetensors file
                                                  G_ema; G from G.safetensors and D from D.safetensors beside it
                                                  when present (converted official networks hold both), else G is
                                                  a copy of G_ema and D starts fresh
    an official .pkl (karras2019stylegan-*.pkl)    G, D and Gs (as G_ema), through official.py
    Only safetensors, JSON and the allow-listed contents of an official pickle are read: nothing in the source is
    executed."""
    from safetensors.torch import load_file

    p = Path(path)
    if not p.exists():
        raise UsageError(f"--init {path} does not exist: pass a network folder, a run folder or a checkpoint")
    if p.suffix == ".pkl":  # NVIDIA's file, read by official.py's restricted unpickler: G, D and Gs
        import official

        cfg, G, D, Gs = official.read_official(p)
        return InitSource(cfg.to_dict(), G, Gs, D, f"official network {p} (G, D and Gs)")
    if p.is_dir() and (p / "checkpoints").is_dir():
        ckpt = latest_checkpoint(p)
        if ckpt is None:
            raise UsageError(f"--init {path}: the run has no complete checkpoint; pass its network folder instead")
        p = ckpt
    if p.is_dir() and (p / "state.json").is_file():
        G_ema = load_network(p / "G_ema")
        missing = [f for f in (WEIGHTS_NAME, "model_1.safetensors") if not (p / f).is_file()]
        if missing:
            raise UsageError(f"--init {p}: incomplete checkpoint (no {', '.join(missing)})")
        return InitSource(G_ema.cfg.to_dict(), load_file(str(p / WEIGHTS_NAME)), G_ema.state_dict(),
                          load_file(str(p / "model_1.safetensors")), f"checkpoint {p} (G, G_ema and D)")
    G_ema = load_network(p)  # a network folder or a .safetensors file; NetworkError if it is neither
    folder = p if p.is_dir() else p.parent
    has_G, has_D = (folder / "G.safetensors").is_file(), (folder / "D.safetensors").is_file()
    G = load_file(str(folder / "G.safetensors")) if has_G else G_ema.state_dict()
    D = load_file(str(folder / "D.safetensors")) if has_D else None
    return InitSource(G_ema.cfg.to_dict(), G, G_ema.state_dict(), D,
                      f"network {p} (G_ema; G {'from G.safetensors' if has_G else '= a copy of G_ema'}; "
                      f"D {'from D.safetensors' if has_D else 'fresh'})")


def load_init_weights(init: InitSource, G: Generator, G_ema: Generator, D: Discriminator) -> None:
    """Copy the source's weights into freshly built networks of the same config (a clear error if they differ)."""
    for name, module, state in (("G", G, init.G), ("G_ema", G_ema, init.G_ema), ("D", D, init.D)):
        if state is None:
            continue
        try:
            module.load_state_dict(state)
        except RuntimeError:
            raise NetworkError(f"--init {init.description}: its {name} weights do not match its network "
                               "config") from None


def frozen_d_resolutions(cfg: NetworkConfig, n: int) -> list[int]:
    """FreezeD (Mo et al. 2020) freezes D's first layers, the ones nearest the image: here its `n` highest-resolution
    blocks, each with the fromRGB layer that feeds it at that resolution. The 4x4 epilogue (minibatch stddev, conv,
    dense, output) always trains."""
    return sorted(cfg.resolutions[1:], reverse=True)[:n]


def trainable_d_parameters(D: Discriminator, n_frozen: int) -> list[torch.nn.Parameter]:
    """D's parameters minus the frozen ones: the optimizer never updates those (their gradients are still computed,
    as the R1 penalty and the generator's gradient have to pass through them anyway)."""
    frozen = tuple(f"{part}.b{r}." for r in frozen_d_resolutions(D.cfg, n_frozen) for part in ("blocks", "fromrgb"))
    return [p for name, p in D.named_parameters() if not name.startswith(frozen)]


# ----------------------------------------------------------------------------------------------------------------
# The training loop


def make_config(args, init: InitSource | None = None) -> TrainConfig:
    preset = TRAIN_PRESETS[args.preset]
    cfg = TrainConfig(preset=args.preset, data=args.data)
    for k in ("start_res", "fade_kimg", "stable_kimg", "kimg", "batch", "lr", "base_lr", "gamma", "mirror",
              "tick_kimg", "snap_kimg", "ema_rampup"):
        setattr(cfg, k, copy.deepcopy(preset[k]))
    for k in ("ema_kimg", "r1_interval", "mixed_precision"):  # keys that only some presets set
        setattr(cfg, k, preset.get(k, getattr(cfg, k)))
    net = PRESETS[preset["network"]].to_dict() if init is None else dict(init.network)
    if init is not None:
        taken = [f"--{k.replace('_', '-')}" for k in ("mapping_layers", "architecture", "no_noise", "channel_base",
                                                     "channel_max") if getattr(args, k, None)]
        if taken:
            raise UsageError(f"{', '.join(taken)} cannot change a network given by --init: leave it out")
        if args.resolution and args.resolution != net["resolution"]:
            raise UsageError(f"--init {args.init} is a {net['resolution']}x{net['resolution']} network: leave out "
                             f"--resolution (the data are resized to the network's resolution)")
        cfg.init = str(args.init)
    for k in ("kimg", "start_res", "fade_kimg", "stable_kimg", "gamma", "loss", "style_mixing", "ema_kimg",
              "mixed_precision", "seed", "tick_kimg", "snap_kimg", "workers", "r1_interval", "r1_scaling",
              "max_images", "cpu", "ema_rampup", "channels_last", "pad", "cache_dir", "stream", "diffaugment",
              "freeze_d", "compile"):
        v = getattr(args, k, None)
        if v is not None:
            setattr(cfg, k, v)
    if args.mirror is not None:
        cfg.mirror = args.mirror
    if args.lr is not None:
        cfg.base_lr, cfg.lr = args.lr, {}
    if args.batch is not None:
        cfg.batch = {2**i: args.batch for i in range(2, 11)}
    if args.resolution:
        net["resolution"] = args.resolution
    for k in ("mapping_layers", "architecture", "channel_base", "channel_max"):
        if getattr(args, k, None) is not None:
            net[k] = getattr(args, k)
    if args.no_noise:
        net["use_noise"] = False
    if net["architecture"] == "traditional" and args.no_noise is None:
        net["use_noise"] = False
    try:
        NetworkConfig.from_dict(net)
    except ValueError as e:
        raise UsageError(f"invalid network: {e}") from None
    cfg.network = net
    cfg.start_res = net["resolution"] if init is not None else min(cfg.start_res, net["resolution"])  # --init: no growing
    if cfg.start_res < 4 or cfg.start_res & (cfg.start_res - 1):
        raise UsageError(f"--start-res must be a power of two >= 4, not {cfg.start_res}")
    if cfg.kimg <= 0:
        raise UsageError(f"--kimg must be positive, not {cfg.kimg}")
    if cfg.fade_kimg <= 0 or cfg.stable_kimg < 0:
        raise UsageError("--fade-kimg must be > 0 and --stable-kimg >= 0")
    if not 0 <= cfg.style_mixing <= 1:
        raise UsageError(f"--style-mixing is a probability in [0, 1], not {cfg.style_mixing}")
    if cfg.diffaugment:
        try:
            augment.parse_policy(cfg.diffaugment)
        except ValueError as e:
            raise UsageError(f"--diffaugment: {e}") from None
    cfg.mixed_precision = resolve_precision(cfg)  # config.json records what ran, so a resume runs the same
    blocks = len(frozen_d_resolutions(NetworkConfig.from_dict(net), 99))
    if not 0 <= cfg.freeze_d <= blocks:
        raise UsageError(f"--freeze-d must be between 0 and {blocks} (D's blocks at {net['resolution']}x"
                         f"{net['resolution']}), not {cfg.freeze_d}")
    return cfg


def native_bf16(on_cpu: bool, cpuinfo: str = "/proc/cpuinfo") -> str:
    """Why bf16 is fast on this machine ('' if it is not): a CPU with bf16 arithmetic (AVX512-BF16 or AMX, read
    from /proc/cpuinfo, so Linux only), or a GPU that reports bf16 support. Elsewhere bf16 is emulated: slower
    than fp32."""
    if not on_cpu:
        return "this GPU has bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else ""
    try:
        flags = next((line.split(":", 1)[1].split() for line in Path(cpuinfo).read_text().splitlines()
                      if line.startswith("flags")), [])
    except OSError:
        return ""
    found = [f.upper().replace("_", "-") for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return f"this CPU has {' and '.join(found)}" if found else ""


def resolve_precision(cfg: TrainConfig) -> str:
    """'auto' -> 'bf16' where the hardware computes in bf16, else 'no' (fp32); anything else as given."""
    if cfg.mixed_precision != "auto":
        return cfg.mixed_precision
    return "bf16" if native_bf16(use_cpu(cfg)) else "no"


def precision_note(precision: str, device: torch.device) -> str:
    why = native_bf16(device.type == "cpu")
    if precision == "bf16":
        return f"precision: bf16 autocast ({why})" if why else ("precision: bf16 autocast, emulated on this "
                                                                 "hardware: expect it slower than fp32")
    return f"precision: {'fp32' if precision == 'no' else precision}"


def use_cpu(cfg: TrainConfig) -> bool:
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    return cfg.cpu or not (torch.cuda.is_available() or mps)


def cpu_threads(requested: int = 0) -> int:
    """Threads for CPU training. `accelerate launch` without a config exports OMP_NUM_THREADS=1, which would leave
    every core but one idle in a single-process run (1.7x the time of the default run); unless --threads is
    given, the usable cores are shared out among this machine's processes instead."""
    if requested < 0:
        raise UsageError(f"--threads must be positive (or 0 for automatic), not {requested}")
    if requested:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, cores // max(local, 1))


def initial_networks(cfg: TrainConfig) -> tuple[Generator, Discriminator]:
    """G and D as a run with this config starts them, before any step: a function of cfg.network and cfg.seed only.
    (ablation.py measures this G as the untrained control of each variant.)"""
    from accelerate.utils import set_seed

    set_seed(cfg.seed)
    net_cfg = NetworkConfig.from_dict(cfg.network)
    return Generator(net_cfg), Discriminator(net_cfg)


def make_networks(cfg: TrainConfig, accel, init: InitSource | None = None):
    """G, D, G_ema and the two Adam optimizers, the same on every process, prepared by `accel`: G, D and the
    optimizers come back wrapped for distributed training where it applies (unwrap them with accel.unwrap_model)."""
    from accelerate.utils import set_seed

    G, D = initial_networks(cfg)  # the same initial networks on every process, whatever their number
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
    G, D = G.train().to(memory_format=layout), D.train().to(memory_format=layout)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    if init is not None:
        load_init_weights(init, G, G_ema, D)
    set_seed(cfg.seed, device_specific=True)  # then seed + rank: every process draws its own latents
    adam = dict(lr=cfg.base_lr, betas=(0.0, 0.99), eps=1e-8, fused=accel.device.type == "cuda" or None)  # one kernel
    opt_G = torch.optim.Adam(G.parameters(), **adam)
    opt_D = torch.optim.Adam(trainable_d_parameters(D, cfg.freeze_d), **adam)
    G, D, opt_G, opt_D = accel.prepare(G, D, opt_G, opt_D)
    G_ema.to(accel.device)
    return G, D, G_ema, opt_G, opt_D


class TrainStep:
    """One training iteration: a D step, a G step, then the w_avg and EMA updates. train() runs it on every
    minibatch and bench.py times it, so the benchmark measures exactly what training runs.

    G, D, opt_G and opt_D are as `accel.prepare` returned them (see make_networks); the learning rate, resolution
    and fade-in come from the phase of each call. A step never waits for the device: whether its losses were finite
    is kept on the device, and check_finite() asks at each tick and before each checkpoint."""

    def __init__(self, cfg: TrainConfig, accel, G, D, G_ema: Generator, opt_G, opt_D):
        self.cfg, self.accel = cfg, accel
        self.G, self.D, self.G_ema, self.opt_G, self.opt_D = G, D, G_ema, opt_G, opt_D
        self.G_raw, self.D_raw = accel.unwrap_model(G), accel.unwrap_model(D)
        self.z_dim, self.device = self.G_raw.cfg.z_dim, accel.device
        # DiffAugment: D sees reals and fakes, in both steps, through the same kind of random transformation.
        self.aug = (lambda x: augment.diff_augment(x, cfg.diffaugment)) if cfg.diffaugment else (lambda x: x)
        # --compile: every pass but R1's. torch.compile cannot differentiate its graphs twice, so a D step with R1
        # runs eagerly, on the same parameters.
        fast = compiled if cfg.compile else (lambda module: module)
        self.G_fast, self.D_fast, self.G_raw_fast, self.D_raw_fast = (fast(m) for m in (G, D, self.G_raw, self.D_raw))
        self.ema_pairs = (list(G_ema.parameters()), [p.detach() for p in self.G_raw.parameters()])
        self.buffer_pairs = (list(G_ema.buffers()), list(self.G_raw.buffers()))
        self.bad_nimg = self.bad_losses = None  # the first step whose losses were not finite, on the device
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # the fastest kernels for each layer shape, found once per shape

    def mixing_args(self, batch: int, res: int) -> dict:
        """Style-mixing regularization (paper Sec. 3.1) for one generator call: with probability `style_mixing`, a
        second latent takes over from one crossover layer per minibatch, drawn among the layers in use."""
        n_layers = self.G_raw.num_ws_at(res)
        if self.cfg.style_mixing > 0 and torch.rand(()) < self.cfg.style_mixing and n_layers > 1:
            return dict(mix_z=torch.randn(batch, self.z_dim, device=self.device),
                        mix_layer=int(torch.randint(1, n_layers, ())))
        return {}

    def ema_beta(self, batch: int, cur_nimg: int) -> float:
        half_life = self.cfg.ema_kimg * 1000
        if self.cfg.ema_rampup:
            half_life = min(half_life, cur_nimg * self.cfg.ema_rampup)
        return 0.5 ** (batch / max(half_life, 1e-8))

    def __call__(self, real: torch.Tensor, phase: Phase, step: int, cur_nimg: int) -> torch.Tensor:
        """One iteration on this process's reals (in [-1, 1] at phase.res), the `step`-th of the run, with
        `cur_nimg` images shown before it. Returns the D loss, the penalty and the G loss, averaged over processes,
        on the device."""
        for opt in (self.opt_G, self.opt_D):
            for group in opt.param_groups:
                group["lr"] = phase.lr
        d_loss, pen = self.d_step(real, phase, step)
        g_loss, w = self.g_step(real.shape[0], phase)
        losses = self.accel.reduce(torch.stack([d_loss.detach(), pen.detach(), g_loss.detach()]).float(), "mean")
        self.note_finite(losses, cur_nimg)
        self.update_averages(w, phase.batch, cur_nimg)
        return losses

    def d_step(self, real: torch.Tensor, phase: Phase, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """D's loss on fakes and reals, with R1 (or the WGAN-GP penalty), and its optimizer step."""
        cfg, accel, res, alpha, b = self.cfg, self.accel, phase.res, phase.alpha, real.shape[0]
        self.D_raw.requires_grad_(True)
        with torch.no_grad(), accel.autocast():  # the fakes D sees are mixed too, as in the official G_style
            fake = self.G_raw_fast(torch.randn(b, self.z_dim, device=self.device), res=res, alpha=alpha,
                                   **self.mixing_args(b, res))
        do_r1 = cfg.loss == "logistic" and cfg.gamma > 0 and step % cfg.r1_interval == 0
        D = self.D if do_r1 or cfg.loss != "logistic" else self.D_fast
        real = real.detach().requires_grad_(do_r1)
        with accel.autocast():
            real_logits = D(self.aug(real), res=res, alpha=alpha).float()
            fake_logits = D(self.aug(fake.detach()), res=res, alpha=alpha).float()
            if cfg.loss == "logistic":
                d_loss = d_logistic_loss(real_logits, fake_logits)
                scale = accel.scaler.get_scale() if accel.scaler is not None else 1.0
                pen = r1_penalty(real_logits, real, scale) if do_r1 else torch.zeros((), device=self.device)
                # lazy R1 (StyleGAN2): applied every r1_interval steps, so weighted r1_interval times more
                d_total = d_loss + pen * (cfg.r1_weight(res) / 2) * cfg.r1_interval
            else:  # WGAN-GP with epsilon drift 0.001 (ProGAN / the paper's CelebA-HQ runs)
                d_loss = fake_logits.mean() - real_logits.mean()
                pen = wgan_gp_penalty(self.D, real.detach(), fake.detach(), res, alpha)
                d_total = d_loss + cfg.gamma * pen + 0.001 * real_logits.square().mean()
        self.opt_D.zero_grad(set_to_none=True)
        accel.backward(d_total)
        self.opt_D.step()
        return d_loss, pen

    def g_step(self, batch: int, phase: Phase) -> tuple[torch.Tensor, torch.Tensor]:
        """G's non-saturating loss, with style-mixing regularization, and its optimizer step; returns the loss and
        the minibatch's w (for w_avg)."""
        res, alpha = phase.res, phase.alpha
        self.D_raw.requires_grad_(False)
        z = torch.randn(batch, self.z_dim, device=self.device)
        with self.accel.autocast():
            fake, w = self.G_fast(z, res=res, alpha=alpha, return_w=True, **self.mixing_args(batch, res))
            # D is called unwrapped here: its parameters need no gradient, so its DDP hooks must not fire.
            fake_logits = self.D_raw_fast(self.aug(fake), res=res, alpha=alpha).float()
            g_loss = g_nonsaturating_loss(fake_logits) if self.cfg.loss == "logistic" else -fake_logits.mean()
        self.opt_G.zero_grad(set_to_none=True)
        self.accel.backward(g_loss)
        self.opt_G.step()
        return g_loss, w

    @torch.no_grad()
    def update_averages(self, w: torch.Tensor, batch: int, cur_nimg: int) -> None:
        """w_avg (over all processes) and G's EMA, each parameter list in one foreach update."""
        self.G_raw.update_w_avg(self.accel.gather(w.detach().float()), self.cfg.w_avg_beta)
        torch._foreach_lerp_(*self.ema_pairs, 1 - self.ema_beta(batch, cur_nimg))
        torch._foreach_copy_(*self.buffer_pairs)

    def note_finite(self, losses: torch.Tensor, cur_nimg: int) -> None:
        """Remember the first step whose losses were not finite, without waiting for the device."""
        if self.bad_nimg is None:
            self.bad_nimg = torch.full((), -1, dtype=torch.int64, device=losses.device)
            self.bad_losses = torch.zeros_like(losses)
        new = (self.bad_nimg < 0) & ~torch.isfinite(losses).all()
        self.bad_nimg = torch.where(new, cur_nimg, self.bad_nimg)
        self.bad_losses = torch.where(new, losses, self.bad_losses)

    def check_finite(self) -> None:
        """Raise FloatingPointError if a step so far had a non-finite loss: the weights are then not worth keeping,
        and the last checkpoint written is the last good state. One wait for the device."""
        if self.bad_nimg is None or self.bad_nimg.item() < 0:
            return
        raise FloatingPointError(f"loss became {self.bad_losses.tolist()} at kimg {self.bad_nimg.item() / 1000:.1f}")


def compiled(module: torch.nn.Module):
    """torch.compile for a network that each phase of progressive growing calls at another resolution and fade: one
    graph per (resolution, fading or not, mixing or not), so the cache holds more than torch's default of 8. The
    noise inputs are drawn by torch's own generator, as in eager mode: a seed trains the same run either way."""
    import torch._inductor.config

    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    torch._inductor.config.fallback_random = True
    return torch.compile(module)


def phase_batches(dataset, cfg: TrainConfig, phase: Phase, cur_nimg: int, total_nimg: int, accel,
                  loader_gen: torch.Generator):
    """This process's minibatches from cur_nimg to the end of the phase (rounded up to whole global batches), in
    the order a pure function of cur_nimg gives, so that a resumed run reads what an uninterrupted one would."""
    world = accel.num_processes
    stop = min(phase.end_nimg or total_nimg, total_nimg)
    stop = cur_nimg + math.ceil((stop - cur_nimg) / phase.batch) * phase.batch
    loader_gen.manual_seed(cfg.seed * 7919 + cur_nimg)  # worker seeds: a function of cur_nimg too
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=phase.batch // world, sampler=StreamSampler(len(dataset), cfg.seed, cur_nimg, stop),
        num_workers=cfg.workers, drop_last=True, generator=loader_gen,
        persistent_workers=False, pin_memory=accel.device.type == "cuda")
    return iter(accel.prepare_data_loader(loader, device_placement=True))


def start_run_folder(run_dir: Path, cfg: TrainConfig, dataset, accel) -> None:
    """The main process writes config.json and a grid of the first reals, and starts the tensorboard logs."""
    if not accel.is_main_process:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    accel.init_trackers("logs")
    reals = torch.stack([dataset[i][0] for i in range(min(32, len(dataset)))])
    save_grid(reals.permute(0, 2, 3, 1).numpy(), run_dir / "reals.png", cols=8)


def load_checkpoint_state(accel, resume: Path, G_ema: Generator) -> tuple[int, dict, tuple | None]:
    """Models, optimizers and RNG states (weights-only loading) from `resume`; returns cur_nimg, the run's timing
    stats and the phase the Adam states belong to."""
    accel.load_state(str(resume))
    G_ema.load_state_dict(load_network(resume / "G_ema").state_dict())
    state = json.loads((resume / "state.json").read_text())
    return state["cur_nimg"], state["stats"], tuple(state["phase_key"]) if state.get("phase_key") else None


def save_checkpoint(accel, run_dir: Path, cfg: TrainConfig, G_ema: Generator, G_raw, D_raw, cur_nimg: int,
                    stats: dict, opt_key: tuple | None, final: bool = False) -> None:
    """Every process calls save_state into a temporary folder; the main process adds G_ema and the JSON state,
    renames it into place, and only then deletes the oldest checkpoint and rewrites the network. A failed write
    (a full disk) removes the partial folder and stops the run with the previous checkpoint and network intact."""
    main = accel.is_main_process
    ckdir = run_dir / "checkpoints"
    tmp = ckdir / f"ckpt-{cur_nimg:09d}.tmp"
    dest = ckdir / f"ckpt-{cur_nimg:09d}"
    if main and tmp.exists():
        shutil.rmtree(tmp)
    accel.wait_for_everyone()
    why = None  # the text only: a kept exception would keep the failed writer's file open, and its space taken
    try:
        accel.save_state(str(tmp))
        if main:
            save_network(G_ema, tmp / "G_ema")
            (tmp / "state.json").write_text(json.dumps({"cur_nimg": cur_nimg, "stats": stats, "phase_key": opt_key}) + "\n")
    except WRITE_ERRORS as e:
        why = write_error(e)
    if accel.reduce(torch.tensor([float(why is not None)], device=accel.device), "sum").item():  # on any process
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        need = 3 * fp32_bytes(G_raw, D_raw) + fp32_bytes(G_ema)  # G and D with two Adam moments each, G_ema
        prev = latest_checkpoint(run_dir)
        raise write_failed(dest, why or "a write failed on another process", need,
                           f"{prev.name} and the network are intact: free some space, then continue with "
                           f"--resume {run_dir}" if prev else "Nothing was saved yet: free some space, then start "
                           "the run again", run_dir)
    if main:
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
        old = sorted(ckdir.glob("ckpt-*[0-9]"), key=lambda p: int(p.name.split("-")[1]))
        for p in old[:-cfg.keep_checkpoints]:
            shutil.rmtree(p, ignore_errors=True)
        try:
            save_network(G_ema, run_dir / "network", extra={"kimg": cur_nimg / 1000, "final": final,
                                                          "data": cfg.data, "run": run_dir.name,
                                                          "preset": cfg.preset, "mirror": cfg.mirror,
                                                          "pad": cfg.pad})
        except WRITE_ERRORS as e:  # each file is written atomically: the previous network stays whole
            why = write_error(e)
        if why is not None:
            raise write_failed(run_dir / "network", why, fp32_bytes(G_ema), f"The network stays loadable and "
                               f"{dest.name} is complete: free some space, then continue with --resume {run_dir}",
                               run_dir)
    accel.wait_for_everyone()


def save_snapshot_images(accel, G_ema: Generator, grid_z: torch.Tensor, phase: Phase, run_dir: Path,
                         cur_nimg: int) -> None:
    """G_ema's images of the fixed grid latents, at the final resolution, to samples/ and tensorboard."""
    with torch.no_grad():
        img = G_ema(grid_z, res=phase.res, alpha=phase.alpha, noise_mode="const")
    img = F.interpolate(img, size=G_ema.cfg.resolution, mode="nearest")
    grid = save_grid(to_uint8(img), run_dir / "samples" / f"fakes-{cur_nimg:09d}.png", cols=8)
    accel.get_tracker("tensorboard").writer.add_image("fakes", grid, cur_nimg, dataformats="HWC")


class StepLog:
    """The main process's record of the steps since the last tick, their losses left on the device: at each tick,
    one wait for the device gives the tracker every step's scalars and the progress bar its status."""

    def __init__(self, accel, bar):
        self.accel, self.bar, self.steps = accel, bar, []

    def add(self, phase: Phase, losses: torch.Tensor, cur_nimg: int, dt: float) -> None:
        self.bar.update(min(phase.batch / 1000, self.bar.total - self.bar.n))  # the last batch may overshoot --kimg
        self.steps.append((phase, losses, cur_nimg, dt))

    def flush(self) -> torch.Tensor | None:
        """Log the steps since the last flush; returns the last one's losses (D, penalty, G) on the CPU."""
        if not self.steps:
            return None
        values = torch.stack([losses for _, losses, _, _ in self.steps]).cpu()
        for (phase, _, nimg, dt), (d, pen, g) in zip(self.steps, values.tolist()):
            self.accel.log({"loss/D": d, "loss/G": g, "loss/penalty": pen, "progress/resolution": phase.res,
                            "progress/alpha": phase.alpha, "progress/kimg": nimg / 1000,
                            "perf/images_per_sec": phase.batch / max(dt, 1e-9), "lr": phase.lr}, step=nimg)
        phase, _, _, dt = self.steps[-1]
        d, pen, g = values[-1].tolist()
        self.bar.set_postfix_str(f"res {phase.res} alpha {phase.alpha:.2f} D {d:.3f} G {g:.3f} R1 {pen:.3f}",
                                 refresh=False)
        self.steps = []
        return values[-1]


def tick_line(phase: Phase, losses: torch.Tensor, cur_nimg: int, sec_kimg: float) -> str:
    """The status line printed every tick_kimg."""
    return (f"kimg {cur_nimg / 1000:8.1f}  res {phase.res:4d}  alpha {phase.alpha:4.2f}  "
            f"batch {phase.batch:4d}  lossD {losses[0]:7.4f}  lossG {losses[2]:7.4f}  "
            f"pen {losses[1]:7.4f}  sec/kimg {sec_kimg:7.2f}")


def add_res_time(stats: dict, res_time: dict) -> None:
    """Add the training-step seconds and images per resolution since the last tick to the run's totals."""
    for r, (t, n) in res_time.items():
        s = stats["sec_per_kimg"].setdefault(str(r), [0.0, 0])
        s[0] += t
        s[1] += n


def steps_taken(cur_nimg: int, cfg: TrainConfig) -> int:
    """Training iterations that show the first cur_nimg images (each shows one global batch of the phase it starts
    in): a pure function of cur_nimg, so a resumed run applies lazy R1 on the steps an uninterrupted one would."""
    nimg = step = 0
    while nimg < cur_nimg:
        phase = schedule(nimg, cfg)
        n = math.ceil((min(phase.end_nimg or cur_nimg, cur_nimg) - nimg) / phase.batch)
        nimg, step = nimg + n * phase.batch, step + n
    return step


def train(cfg: TrainConfig, run_dir: Path, resume: Path | None = None, log_fn=print,
          init: InitSource | None = None) -> dict:
    """Train from scratch, from the weights `init` (fine-tuning) or from the checkpoint `resume` (which wins over
    `init`); returns a summary (also for the tests)."""
    from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
    from accelerate.state import AcceleratorState
    from tqdm import tqdm

    import data as data_module

    # Accelerate keeps one precision per process: a second train() in the same process (tests, a notebook) may ask
    # for another. Forget the previous run's accelerator settings; the process group (PartialState) stays.
    AcceleratorState._reset_state()
    accel = Accelerator(
        cpu=use_cpu(cfg),  # Accelerate needs cpu=True to see a torchrun launch without GPUs as MULTI_CPU (gloo)
        mixed_precision=cfg.mixed_precision,
        # Progressive growing leaves the layers above the current resolution unused: DDP must expect that.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        # the reals are pinned (phase_batches) and copied to a GPU while the previous step runs
        dataloader_config=DataLoaderConfiguration(non_blocking=not use_cpu(cfg)),
        log_with="tensorboard", project_dir=str(run_dir))
    rank, world, main = accel.process_index, accel.num_processes, accel.is_main_process
    device = accel.device
    if main:
        log_fn(precision_note(cfg.mixed_precision, device))

    dataset = data_module.make_dataset(cfg.data, cfg.network["resolution"], max_images=cfg.max_images, pad=cfg.pad,
                                       cache_dir=cfg.cache_dir, stream=cfg.stream)
    net_cfg = NetworkConfig.from_dict(cfg.network)
    if dataset[0][0].shape[0] != net_cfg.img_channels:
        raise UsageError(f"the network makes {net_cfg.img_channels}-channel images but {cfg.data} has "
                         f"{dataset[0][0].shape[0]} channels: train on data with as many channels as the network")
    init = init if resume is None else None
    G, D, G_ema, opt_G, opt_D = make_networks(cfg, accel, init)
    if init is not None and main:
        log_fn(f"fine-tuning from {init.description}" +
               ("; it holds no discriminator, so D starts from random weights" if init.D is None else ""))
    train_step = TrainStep(cfg, accel, G, D, G_ema, opt_G, opt_D)
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format

    cur_nimg, stats, opt_key = 0, {"sec_per_kimg": {}}, None  # opt_key: the phase the Adam states belong to
    if resume is not None:
        cur_nimg, stats, opt_key = load_checkpoint_state(accel, resume, G_ema)
    start_run_folder(run_dir, cfg, dataset, accel)
    grid_z = seed_to_z(range(32), net_cfg.z_dim).to(device)

    def checkpoint(final: bool = False):
        train_step.check_finite()  # a NaN since the last tick: keep the last checkpoint, the last good state
        save_checkpoint(accel, run_dir, cfg, G_ema, train_step.G_raw, train_step.D_raw, cur_nimg, stats, opt_key,
                        final)

    total_nimg = int(cfg.kimg * 1000)
    loader_it, loader_key, loader_gen = None, None, torch.Generator()
    tick_start_nimg, tick_start_time = cur_nimg, time.time()
    res_time = {}
    bar = tqdm(total=cfg.kimg, initial=cur_nimg / 1000, unit="kimg", disable=not main, dynamic_ncols=True,
               bar_format="{l_bar}{bar}| {n:.1f}/{total:.0f} kimg [{elapsed}<{remaining}{postfix}]")
    step_log = StepLog(accel, bar)
    step = steps_taken(cur_nimg, cfg)
    summary = {"first_batch": None, "rank": rank, "world": world}
    next_tick = (cur_nimg // int(cfg.tick_kimg * 1000) + 1) * int(cfg.tick_kimg * 1000)
    next_snap = (cur_nimg // int(cfg.snap_kimg * 1000) + 1) * int(cfg.snap_kimg * 1000)
    try:
        while cur_nimg < total_nimg:
            phase = schedule(cur_nimg, cfg)
            if phase.batch % world:
                raise UsageError(f"batch {phase.batch} at {phase.res}^2 does not split over {world} processes")
            if opt_key is not None and phase.key != opt_key:
                # The paper resets Adam whenever a resolution is added (start and end of each fade).
                for opt in (opt_G, opt_D):
                    opt.optimizer.state.clear()
            opt_key = phase.key
            if phase.key != loader_key or loader_it is None:
                loader_it, loader_key = phase_batches(dataset, cfg, phase, cur_nimg, total_nimg, accel, loader_gen), phase.key
            try:
                real_u8, _labels = next(loader_it)
            except StopIteration:
                loader_it = None
                continue
            if summary["first_batch"] is None:
                summary["first_batch"] = real_u8[:4].float().mean().item()
            real = prepare_reals(real_u8.to(device), phase, cfg.mirror).contiguous(memory_format=layout)
            t0 = time.time()
            losses = train_step(real, phase, step, cur_nimg)
            cur_nimg += phase.batch
            step += 1
            dt = time.time() - t0
            res_time.setdefault(phase.res, [0.0, 0])
            res_time[phase.res][0] += dt
            res_time[phase.res][1] += phase.batch
            if main:
                step_log.add(phase, losses, cur_nimg, dt)
            done = cur_nimg >= total_nimg
            if cur_nimg >= next_tick or done:
                next_tick += int(cfg.tick_kimg * 1000)
                train_step.check_finite()  # waits for the device: the tick's time below is the device's too
                add_res_time(stats, res_time)
                res_time = {}
                if main:
                    sec_kimg = (time.time() - tick_start_time) / max((cur_nimg - tick_start_nimg) / 1000, 1e-9)
                    bar.write(tick_line(phase, step_log.flush(), cur_nimg, sec_kimg))
                    save_snapshot_images(accel, G_ema, grid_z, phase, run_dir, cur_nimg)
                tick_start_nimg, tick_start_time = cur_nimg, time.time()
            if cur_nimg >= next_snap or done:
                next_snap += int(cfg.snap_kimg * 1000)
                checkpoint(final=done)
    except KeyboardInterrupt:
        if world == 1:
            checkpoint()
            log_fn(f"\ninterrupted: checkpoint saved at kimg {cur_nimg / 1000:.1f}; continue with --resume {run_dir}")
        raise
    finally:
        bar.close()
        if main:
            accel.end_training()

    # sec/kimg per resolution, over the whole run (resumes included)
    table = {int(r): t / (n / 1000) for r, (t, n) in stats["sec_per_kimg"].items() if n}
    if main:
        where = f"{torch.get_num_threads()} CPU threads per process" if device.type == "cpu" else device.type
        log_fn(f"sec/kimg per resolution (training steps only; {where}): " +
               ", ".join(f"{r}x{r}: {v:.2f}" for r, v in sorted(table.items())))
        log_fn(f"network: {run_dir / 'network'}")
    summary.update(cur_nimg=cur_nimg, sec_per_kimg=table,
                   **{name: {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
                      for name, net in (("G_ema", G_ema), ("G", train_step.G_raw), ("D", train_step.D_raw))})
    return summary


# ----------------------------------------------------------------------------------------------------------------
# Command line


def parse_args(argv=None):
    p = ArgumentParser(
        "train.py", "Train a StyleGAN with progressive growing (Karras et al. 2019) on Accelerate.",
        "examples:\n"
               "  accelerate launch train.py                                   # synthetic faces, CPU-sized\n"
               "  accelerate launch train.py --data ~/images --resolution 64   # your own folder (or a .zip)\n"
               "  accelerate launch train.py --data user/dataset --preset ffhq256  # a Hub data set\n"
               "  accelerate launch train.py --resume runs/00000-synthetic-32-cpu\n"
               "  accelerate launch train.py --init runs/00000-synthetic-32-cpu --data ~/few --preset finetune \\\n"
               "      --kimg 10 --diffaugment color,translation,cutout   # fine-tune on a few hundred images\n")
    p.add_argument("--data", default="synthetic", help="synthetic, synthetic:N, a folder, a .zip or a Hub name")
    p.add_argument("--preset", default="cpu", choices=sorted(TRAIN_PRESETS), help="training preset (default: cpu)")
    p.add_argument("--resolution", type=int_at_least(4), help="target resolution (default: the preset's)")
    p.add_argument("--kimg", type=positive_float, help="total thousands of real images to show")
    p.add_argument("--outdir", default=RUNS_DIR, help="where run folders go (default: runs)")
    p.add_argument("--allow-inexact-resume", dest="allow_inexact_resume", action="store_true",
                   help="resume even from a checkpoint whose RNG states are unreadable (the run is then not "
                        "bit-identical to an uninterrupted one)")
    p.add_argument("--resume", help="a run folder (or one of its checkpoints) to continue")
    p.add_argument("--init", help="fine-tune: start from this network folder, run folder or checkpoint, at its full "
                                  "resolution with no growing (see --preset finetune)")
    p.add_argument("--start-res", dest="start_res", type=int_at_least(4), help="resolution to start growing from")
    p.add_argument("--fade-kimg", dest="fade_kimg", type=positive_float, help="thousands of images per fade-in")
    p.add_argument("--stable-kimg", dest="stable_kimg", type=float_in(0), help="thousands of images per stable phase")
    p.add_argument("--batch", type=int_at_least(1), help="global minibatch at every resolution (default: the preset's per resolution)")
    p.add_argument("--lr", type=positive_float, help="learning rate at every resolution (default: the preset's)")
    p.add_argument("--loss", choices=["logistic", "wgangp"], help="logistic + R1 (default) or WGAN-GP")
    p.add_argument("--gamma", type=float_in(0), help="R1 weight (logistic) or gradient-penalty lambda (wgangp)")
    p.add_argument("--r1-interval", dest="r1_interval", type=int_at_least(1), help="apply R1 every k steps (lazy; default 1)")
    p.add_argument("--r1-scaling", dest="r1_scaling", choices=["official", "plain"],
                   help="R1 weight while growing: official = gamma * (res / final)^2, as NVIDIA's code (default); "
                        "plain = gamma at every resolution")
    p.add_argument("--style-mixing", dest="style_mixing", type=float_in(0, 1), help="mixing-regularization probability (0.9)")
    p.add_argument("--ema-kimg", dest="ema_kimg", type=positive_float, help="generator EMA half-life in kimg (10)")
    p.add_argument("--ema-rampup", dest="ema_rampup", type=positive_float,
                   help="cap the EMA half-life at this fraction of images seen (cpu preset: 0.05; paper: none)")
    p.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=None, help="horizontal flips of reals")
    p.add_argument("--diffaugment", metavar="POLICY",
                   help="DiffAugment (Zhao et al. 2020) of all D inputs for small data: color,translation,cutout")
    p.add_argument("--freeze-d", dest="freeze_d", type=int_at_least(0), metavar="N",
                   help="FreezeD (Mo et al. 2020): keep D's N highest-resolution blocks fixed (default 0)")
    p.add_argument("--mapping-layers", dest="mapping_layers", type=int_at_least(0), help="mapping network depth (paper: 8)")
    p.add_argument("--channel-base", dest="channel_base", type=int_at_least(1),
                   help="channels at resolution r are min(base / r, max) (default: the preset network's)")
    p.add_argument("--channel-max", dest="channel_max", type=int_at_least(1), help="the most channels of any layer")
    p.add_argument("--architecture", choices=["style", "traditional"], help="generator type (default: style)")
    p.add_argument("--no-noise", dest="no_noise", action="store_true", default=None, help="no per-layer noise inputs")
    p.add_argument("--mixed-precision", dest="mixed_precision", choices=["auto", "no", "bf16", "fp16"],
                   help="auto (the cpu preset's default): bf16 where the CPU or GPU computes in bf16, else fp32; "
                        "no (fp32, the paper presets' default), bf16 or fp16")
    p.add_argument("--seed", type=seed_type, help="random seed (default 0)")
    p.add_argument("--cpu", action="store_true", default=None, help="train on the CPU even if a GPU is available")
    p.add_argument("--channels-last", dest="channels_last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC memory layout (default on: same maths, faster)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile every pass but R1's (default off; minutes of compiling per resolution)")
    p.add_argument("--tick-kimg", dest="tick_kimg", type=positive_float, help="status line and sample grid every N kimg")
    p.add_argument("--snap-kimg", dest="snap_kimg", type=positive_float, help="checkpoint and network every N kimg")
    p.add_argument("--workers", type=int_at_least(0), help="DataLoader worker processes (default 2)")
    p.add_argument("--threads", type=int_at_least(0), default=0,
                   help="CPU threads per process (default: the cores divided among this machine's processes)")
    p.add_argument("--max-images", dest="max_images", type=int_at_least(1), help="use only the first N images of the data")
    p.add_argument("--pad", action="store_true", default=None,
                   help="pad non-square images to a square with black (default: centre-crop)")
    p.add_argument("--cache-dir", dest="cache_dir",
                   help="decoded-image cache (default: $STYLEGAN_CACHE/data, else ~/.cache/stylegan-pytorch/data)")
    p.add_argument("--stream", action="store_true", default=None,
                   help="Hub data: stream it into the cache, never downloaded whole (for sets larger than the disk)")
    p.add_argument("--name", help="run folder name after its number (default: data-resolution-preset)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import data as data_module

    try:
        if args.init and args.resume:
            raise UsageError("--init starts a new run from a network and --resume continues a run: pass one of them")
        if args.resume:
            path = Path(args.resume)
            run_dir = path.parent.parent if path.name.startswith("ckpt-") else path
            if not (run_dir / "config.json").is_file():
                raise UsageError(f"{args.resume} is not a run folder (no config.json): pass runs/<run>")
            cfg = TrainConfig(**json.loads((run_dir / "config.json").read_text()))
            if args.kimg is not None:
                cfg.kimg = args.kimg
            if args.cache_dir is not None:  # the cache may live elsewhere on the machine that resumes
                cfg.cache_dir = args.cache_dir
            from accelerate import PartialState

            state = PartialState(cpu=use_cpu(cfg))
            ckpt = resume_checkpoint(run_dir, path if path.name.startswith("ckpt-") else None, state.num_processes,
                                     args.allow_inexact_resume, warn=warn if state.is_main_process else lambda _: None)
            init = None
        else:
            init = load_init(args.init) if args.init else None
            cfg = make_config(args, init)
            name = args.name or f"{Path(cfg.data.rstrip('/')).name.replace(':', '')}-{cfg.network['resolution']}-{cfg.preset}"
            run_dir, ckpt = None, None
            from accelerate import PartialState

            state = PartialState(cpu=use_cpu(cfg))
            if state.is_main_process:
                run_dir = next_run_dir(Path(args.outdir), name)
            run_dir = Path(broadcast_str(str(run_dir) if run_dir else "", state))
        if use_cpu(cfg):
            torch.set_num_threads(cpu_threads(args.threads))
        summary = train(cfg, run_dir, ckpt, init=init)
    except data_module.DataError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise UsageError(f"disk full while writing {e.filename or run_dir}: free some space, then continue with "
                         f"--resume {run_dir}") from None
    except FloatingPointError as e:
        ck = latest_checkpoint(run_dir) if run_dir else None
        if ck is None:
            raise UsageError(f"{e}: training stopped before its first checkpoint; start again with a lower --lr "
                             "or a higher --gamma") from None
        raise UsageError(f"{e}: training stopped; the last good checkpoint is {ck}. Resume with --resume {run_dir} "
                         "(add --lr or --gamma to a new run if it happens again)") from None
    return summary


def warn(message: str):
    print(message, file=sys.stderr)


def broadcast_str(s: str, state) -> str:
    """The main process's string on every process (the run folder name)."""
    if state.num_processes == 1:
        return s
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([s])[0]


if __name__ == "__main__":
    run_cli(main)
