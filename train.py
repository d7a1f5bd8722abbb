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
import contextlib
import copy
import dataclasses
import errno
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch._inductor.config
import torch.nn.functional as F
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs, PartialState
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed

import augment
import data
import metrics
import ops
from checkpoint import (InitSource, checkpoint_to_resume, claim_run_dir, latest_checkpoint, load_checkpoint_state,
                        load_init, load_init_weights, open_run, save_checkpoint, start_run_folder)
from common import (RUNS_DIR, ArgumentParser, UsageError, cpu_threads, float_in, int_at_least, mps_available,
                    native_bf16, positive_float, run_cli, seed_type)
from data import StreamSampler
from model import PRESETS, Discriminator, Generator, NetworkConfig
from monitor import FiniteWatch, Monitor, check_tracker, precision_note, start_trackers, tracker_setup

# ----------------------------------------------------------------------------------------------------------------
# Configuration: every training option is declared once, as a TrainConfig field with its help and its parser; the
# command line is built from the fields, and a preset is a set of field values applied over the defaults.

PAPER_BATCH = {4: 512, 8: 256, 16: 128, 32: 64, 64: 32, 128: 32, 256: 32, 512: 32, 1024: 32}  # global (all processes)
PAPER_LR = {128: 0.0015, 256: 0.002, 512: 0.003, 1024: 0.003}  # base_lr (0.001) below 128^2 (paper, App. C)
RESOLUTIONS = [2**i for i in range(2, 11)]


def option(default, help: str, parse=None, choices=None, metavar: str | None = None, cli=None):
    """A TrainConfig field that is also a command-line option --name-with-dashes: `parse` checks its value (a bool
    option is --name / --no-name), `cli` turns the parsed value into the field's (--batch 16 -> a batch at every
    resolution)."""
    meta = dict(help=help, parse=parse, choices=choices, metavar=metavar, cli=cli)
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta)
    return field(default=default, metadata=meta)


def every_resolution(value):
    return {r: value for r in RESOLUTIONS}


@dataclass
class TrainConfig:
    """A run's settings, saved as its config.json. The defaults are the paper's (FFHQ, Appendix C); the presets
    below set their own."""
    preset: str = option("cpu", "training preset: cpu, ffhq256, ffhq1024 or finetune",
                         choices=["cpu", "ffhq256", "ffhq1024", "finetune"])
    data: str = option("synthetic", "synthetic, synthetic:N, a folder, a .zip or a Hub name", metavar="SOURCE")
    kimg: float = option(25000, "total thousands of real images to show", positive_float)
    start_res: int = option(8, "resolution to start growing from", int_at_least(4))
    fade_kimg: float = option(600, "thousands of images per fade-in", positive_float)
    stable_kimg: float = option(600, "thousands of images per stable phase", float_in(0))
    batch: dict = option(PAPER_BATCH, "global minibatch (all processes) at every resolution", int_at_least(1),
                         metavar="N", cli=every_resolution)
    lr: dict = option(PAPER_LR, "learning rate at every resolution (default: per resolution, base-lr elsewhere)",
                      positive_float, metavar="LR", cli=every_resolution)
    base_lr: float = option(0.001, "learning rate at the resolutions that --lr does not name", positive_float)
    loss: str = option("logistic", "logistic (non-saturating + R1) or wgangp (WGAN-GP, the paper's CelebA-HQ runs)",
                       choices=["logistic", "wgangp"])
    gamma: float = option(10.0, "R1 weight (logistic) or gradient-penalty lambda (wgangp)", float_in(0))
    r1_interval: int = option(1, "apply R1 every k D steps with k times the weight (lazy R1, StyleGAN2); 1 = every "
                                 "step, as the paper", int_at_least(1))
    r1_scaling: str = option("official", "R1 weight while growing: official = gamma * (res / final)^2, as NVIDIA's "
                                         "code; plain = gamma", choices=["official", "plain"])
    style_mixing: float = option(0.9, "probability of mixing regularization (paper Sec. 3.1)", float_in(0, 1))
    ema_kimg: float = option(10.0, "generator EMA half-life in thousands of images", positive_float)
    ema_rampup: float | None = option(None, "cap the EMA half-life at this fraction of the images seen "
                                            "(StyleGAN2-ADA); default none", positive_float)
    w_avg_beta: float = option(0.995, "moving-average decay of w_avg, for truncation", float_in(0, 1))
    mirror: bool = option(False, "horizontal flips of the real images")
    mixed_precision: str = option("no", "auto (bf16 where the CPU or GPU computes in it, else fp32), no (fp32), "
                                        "bf16 or fp16", choices=["auto", "no", "bf16", "fp16"])
    seed: int = option(0, "random seed", seed_type)
    tick_kimg: float = option(160, "status line and sample grid every N kimg", positive_float)
    snap_kimg: float = option(1000, "checkpoint and network every N kimg", positive_float)
    keep_checkpoints: int = option(2, "checkpoints kept (the newest)", int_at_least(1))
    workers: int = option(2, "DataLoader worker processes", int_at_least(0))
    network: dict = field(default_factory=dict)  # NetworkConfig as a dict: set by the preset and NETWORK_OPTIONS
    max_images: int | None = option(None, "use only the first N images of the data", int_at_least(1))
    pad: bool = option(False, "pad non-square images to a square with black (default: centre-crop)")
    cache_dir: str | None = option(None, "decoded-image cache (default: $STYLEGAN_CACHE/data, else "
                                         "~/.cache/stylegan-pytorch/data)", metavar="FOLDER")
    stream: bool = option(False, "Hub data: stream it into the cache, never downloaded whole")
    cpu: bool = option(False, "train on the CPU even where a GPU is available")
    channels_last: bool = option(True, "NHWC memory layout: the same maths, faster convolutions")
    init: str = option("", "fine-tune: start from this network folder, run folder, checkpoint or official .pkl, at "
                           "its full resolution with no growing (see --preset finetune)", metavar="SOURCE")
    diffaugment: str = option("", "DiffAugment (Zhao et al. 2020) of all D inputs for small data, e.g. "
                                  "color,translation,cutout", metavar="POLICY")
    freeze_d: int = option(0, "FreezeD (Mo et al. 2020): keep D's N highest-resolution blocks fixed",
                           int_at_least(0), metavar="N")
    compile: bool = option(False, "torch.compile every pass but R1's")
    tracker: str = option("tensorboard", "where the scalars and sample grids go: tensorboard, wandb or mlflow (the "
                                          "last two: pip install wandb / mlflow-skinny), or none",
                          choices=["tensorboard", "wandb", "mlflow", "none"])
    metrics: str = option("", "metrics.py's metrics at every checkpoint, on G_ema, comma-separated (e.g. "
                              "fid2k,ppl_wend): to metrics.jsonl, the tracker and the status line", metavar="NAMES")
    metrics_num: int | None = option(None, "samples for each of --metrics (default: each metric's own; fidN: N)",
                                     int_at_least(2), metavar="N")
    cond: bool = option(False, "conditional training (the official label_size): labels from dataset.json beside the "
                               "images, else one class per subfolder; the synthetic faces' 10 attributes")
    batch_gpu: int | None = option(None, "hold at most N images per process at a time (gradient accumulation over "
                                         "the minibatch; the same training, less memory)", int_at_least(1), metavar="N")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """A config.json: its keys must be fields ("resolution", always 0 and derived from the network, is read
        from the config.json of older runs and dropped)."""
        d = {k: v for k, v in d.items() if not (k == "resolution" and not v)}
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise UsageError(f"unknown settings {sorted(unknown)} in the run's config.json: it was written by a "
                             "newer version of this code")
        return cls(**d)

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


TRAIN_PRESETS = {  # field values over TrainConfig's defaults; how the cpu preset was tuned: docs/default-network.md
    # The paper's FFHQ schedule: start at 8x8, 600k images of fade-in and 600k stable per resolution, 25M in all.
    "ffhq1024": dict(network=PRESETS["ffhq1024"].to_dict(), mirror=True),
    "ffhq256": dict(network=PRESETS["ffhq256"].to_dict(), mirror=True),
    # A laptop CPU: 32x32 synthetic faces, a narrow network, 88k images in about 20 minutes on 2 cores. Each
    # departure from the paper won at equal wall time by FID-2k: short phases at batch 16, lr 0.01, lazy R1, bf16
    # where the CPU computes in it, and an EMA whose half-life grows with the images seen (an 88k-image run's EMA
    # with the paper's 10k half-life is still mostly its random start).
    "cpu": dict(network=PRESETS["cpu"].to_dict(), fade_kimg=6, stable_kimg=6, kimg=88, batch={8: 16, 16: 16, 32: 16},
                lr={}, base_lr=0.01, gamma=1.0, r1_interval=16, mixed_precision="auto", ema_rampup=0.05,
                tick_kimg=2, snap_kimg=8),
    # Fine-tuning a trained network (--init) on a few hundred or thousand images, at its resolution (start_res is
    # clipped to it): lr below the cpu preset's (with Adam's beta1 = 0 every step moves each weight by about lr, and
    # the first steps against a new domain are the noisiest), the cpu preset's gamma (pass --gamma 10 for an
    # official FFHQ network), and a 2k-image EMA half-life from the source's G_ema. Without --init it trains the cpu
    # network from scratch with the same settings (the baseline of docs/finetune.md).
    "finetune": dict(network=PRESETS["cpu"].to_dict(), start_res=1024, fade_kimg=1, stable_kimg=0, kimg=20,
                     batch=every_resolution(16), lr={}, base_lr=0.001, gamma=1.0, ema_kimg=2, tick_kimg=2,
                     snap_kimg=4),
}

NETWORK_OPTIONS = {  # NetworkConfig fields that the command line sets over the preset's network (argparse keywords)
    "resolution": dict(type=int_at_least(4), help="target resolution (default: the preset's network's)"),
    "mapping_layers": dict(type=int_at_least(0), help="mapping network depth (paper: 8; 0: w = the normalised z)"),
    "channel_base": dict(type=int_at_least(1), help="channels at resolution r are min(base / r, max)"),
    "channel_max": dict(type=int_at_least(1), help="the most channels of any layer"),
    "architecture": dict(choices=["style", "traditional"],
                         help="style (the paper's generator) or traditional (ProGAN's input layer, no noise)"),
    "use_noise": dict(flag="--noise", action=argparse.BooleanOptionalAction,
                      help="per-layer noise inputs (default on; off for the traditional generator)"),
}


def network_flag(name: str) -> str:
    return NETWORK_OPTIONS[name].get("flag", "--" + name.replace("_", "-"))


def preset_config(name: str, **overrides) -> TrainConfig:
    """The one place presets are applied: TrainConfig's defaults, then the preset's values, then `overrides`."""
    return TrainConfig(**{**copy.deepcopy(TRAIN_PRESETS[name]), "preset": name, **overrides})


def add_options(parser: argparse.ArgumentParser) -> None:
    """The command line of TrainConfig's fields and of NETWORK_OPTIONS, each defaulting to None (= not given)."""
    p = parser.add_argument_group("training (over the preset's)")
    for f in fields(TrainConfig):
        if "help" not in f.metadata:
            continue
        m, flag = f.metadata, "--" + f.name.replace("_", "-")
        shown = f.default not in (None, "") and not isinstance(f.default, (bool, type(dataclasses.MISSING)))
        text = m["help"] + (f" (default {f.default})" if shown else "")
        if f.type == "bool":
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            p.add_argument(flag, dest=f.name, type=m["parse"], choices=m["choices"], metavar=m["metavar"], help=text)
    group = parser.add_argument_group("network (over the preset's)")
    for name, kwargs in NETWORK_OPTIONS.items():
        kwargs = {"metavar": name.split("_")[-1].upper() if "type" in kwargs else None, **kwargs}
        group.add_argument(network_flag(name), dest=f"net_{name}", **{k: v for k, v in kwargs.items() if k != "flag"})


def make_config(args, init=None) -> TrainConfig:
    """TrainConfig from the parsed command line: the preset, the options given, the network (init's network when
    fine-tuning, whose options cannot change), checked."""
    given = {}
    for f in fields(TrainConfig):
        value = getattr(args, f.name, None)
        if "help" in f.metadata and value is not None:
            given[f.name] = f.metadata["cli"](value) if f.metadata["cli"] else value
    cfg = preset_config(given.pop("preset", "cpu"), **given)
    net_given = {name: getattr(args, f"net_{name}") for name in NETWORK_OPTIONS
                 if getattr(args, f"net_{name}", None) is not None}
    if init is not None:
        if set(net_given) - {"resolution"}:
            flags = ", ".join(network_flag(k) for k in net_given if k != "resolution")
            raise UsageError(f"{flags} cannot change a network given by --init: leave it out")
        res = init.network["resolution"]
        if net_given.get("resolution", res) != res:
            raise UsageError(f"--init {cfg.init} is a {res}x{res} network: leave out --resolution (the data are "
                             "resized to the network's resolution)")
        cfg.network = dict(init.network)
    else:
        cfg.network.update(net_given)
        if cfg.network["architecture"] == "traditional" and "use_noise" not in net_given:
            cfg.network["use_noise"] = False  # the paper's traditional generator has no noise inputs
    return check_config(cfg, fine_tuning=init is not None)


def check_config(cfg: TrainConfig, fine_tuning: bool = False) -> TrainConfig:
    """What the option parsers cannot check alone; 'auto' precision resolved (config.json records what ran)."""
    try:
        net = NetworkConfig.from_dict(cfg.network)
    except ValueError as e:
        raise UsageError(f"invalid network: {e}") from None
    cfg.start_res = net.resolution if fine_tuning else min(cfg.start_res, net.resolution)  # --init: no growing
    if cfg.start_res & (cfg.start_res - 1):
        raise UsageError(f"--start-res must be a power of two >= 4, not {cfg.start_res}")
    if cfg.diffaugment:
        try:
            augment.parse_policy(cfg.diffaugment)
        except ValueError as e:
            raise UsageError(f"--diffaugment: {e}") from None
    check_tracker(cfg.tracker)
    if cfg.metrics:
        metrics.parse_metrics(cfg.metrics)  # a misspelt name now, not at the first checkpoint
    blocks = len(frozen_d_resolutions(net, 99))
    if cfg.freeze_d > blocks:
        raise UsageError(f"--freeze-d must be between 0 and {blocks} (D's blocks at {net.resolution}x"
                         f"{net.resolution}), not {cfg.freeze_d}")
    cfg.mixed_precision = resolve_precision(cfg)
    return cfg


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


def wgan_gp_penalty(D, real: torch.Tensor, fake: torch.Tensor, res: int, alpha: float,
                    labels: torch.Tensor | None = None) -> torch.Tensor:
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    mixed = real.lerp(fake, eps).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(mixed, res=res, alpha=alpha, labels=labels).sum(), mixed, create_graph=True)
    return (grad.float().flatten(1).norm(dim=1) - 1).square().mean()


# ----------------------------------------------------------------------------------------------------------------
# Data: a sampler that is a pure function of images seen, so a resumed run reads exactly what it would have


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
# Networks and optimizers; FreezeD's frozen layers


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


def resolve_precision(cfg: TrainConfig) -> str:
    """'auto' -> 'bf16' where the hardware computes in bf16, else 'no' (fp32); anything else as given."""
    if cfg.mixed_precision != "auto":
        return cfg.mixed_precision
    return "bf16" if native_bf16(use_cpu(cfg)) else "no"


def use_cpu(cfg: TrainConfig) -> bool:
    return cfg.cpu or not (torch.cuda.is_available() or mps_available())


def initial_networks(cfg: TrainConfig) -> tuple[Generator, Discriminator]:
    """G and D as a run with this config starts them, before any step: a function of cfg.network and cfg.seed only.
    (ablation.py measures this G as the untrained control of each variant.)"""
    set_seed(cfg.seed)
    net_cfg = NetworkConfig.from_dict(cfg.network)
    return Generator(net_cfg), Discriminator(net_cfg)


def make_networks(cfg: TrainConfig, accel, init: InitSource | None = None):
    """G, D, G_ema and the two Adam optimizers, the same on every process, prepared by `accel`: G, D and the
    optimizers come back wrapped for distributed training where it applies (unwrap them with accel.unwrap_model)."""
    G, D = initial_networks(cfg)  # the same initial networks on every process, whatever their number
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
    G, D = G.train().to(memory_format=layout), D.train().to(memory_format=layout)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    if init is not None:
        load_init_weights(init, G, G_ema, D)
    set_seed(cfg.seed, device_specific=True)  # then seed + rank: every process draws its own latents
    adam = dict(lr=cfg.base_lr, betas=(0.0, 0.99), eps=1e-8, fused=True)  # one kernel: 4x faster than a loop on a CPU
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
    is kept on the device (self.finite), and train() asks at each tick and before each checkpoint."""

    def __init__(self, cfg: TrainConfig, accel, G, D, G_ema: Generator, opt_G, opt_D, labels=None):
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
        self.finite = FiniteWatch()
        # A conditional network's fakes take the labels of random training images, as the official code draws
        # them (training_set.get_random_labels): the data's own label distribution.
        self.label_pool = None
        if self.G_raw.cfg.label_size:
            assert labels is not None and labels.shape[1] == self.G_raw.cfg.label_size, "a conditional run needs labels"
            self.label_pool = torch.as_tensor(labels, dtype=torch.float32).to(self.device)
        self.streams = SliceStreams(cfg.seed, accel.process_index, accel.num_processes, self.device)
        self.layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
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

    def fake_labels(self, batch: int) -> torch.Tensor | None:
        if self.label_pool is None:
            return None
        return self.label_pool[torch.randint(len(self.label_pool), (batch,), device=self.device)]

    def ema_beta(self, batch: int, cur_nimg: int) -> float:
        half_life = self.cfg.ema_kimg * 1000
        if self.cfg.ema_rampup:
            half_life = min(half_life, cur_nimg * self.cfg.ema_rampup)
        return 0.5 ** (batch / max(half_life, 1e-8))

    def __call__(self, real_u8: torch.Tensor, phase: Phase, step: int, cur_nimg: int,
                 real_labels: torch.Tensor | None = None) -> torch.Tensor:
        """One iteration on this process's reals (uint8 at the data's resolution; with their labels for a
        conditional network), the `step`-th of the run, with `cur_nimg` images shown before it. Returns the D loss,
        the penalty and the G loss, averaged over processes, on the device. With --batch-gpu the process's
        minibatch is run in slices whose gradients add up before each optimizer step: the same step as that many
        processes would take (see SliceStreams)."""
        for opt in (self.opt_G, self.opt_D):
            for group in opt.param_groups:
                group["lr"] = phase.lr
        parts = self.slices(real_u8.shape[0], phase)
        if self.label_pool is not None:
            real_labels = real_labels.to(self.device, torch.float32)
        d_loss, pen = self.d_step(real_u8, real_labels, phase, step, parts)
        g_loss, w = self.g_step(phase, parts)
        losses = self.accel.reduce(torch.stack([d_loss, pen, g_loss]).float(), "mean")
        self.finite.note(losses, cur_nimg)
        self.update_averages(w, phase.batch, cur_nimg)
        return losses

    def slices(self, batch: int, phase: Phase) -> list[slice]:
        n = min(self.cfg.batch_gpu or batch, batch)
        if batch % n:
            raise UsageError(f"--batch-gpu {n} does not divide the {batch} images per process at {phase.res}x"
                             f"{phase.res}: pick a divisor of it")
        return [slice(i, i + n) for i in range(0, batch, n)]

    @contextlib.contextmanager
    def part(self, j: int, parts: list, model):
        """Slice j's random stream; and before the last slice, no gradient sync across processes."""
        with self.streams.use(j), contextlib.nullcontext() if j == len(parts) - 1 else self.accel.no_sync(model):
            yield

    def d_step(self, real_u8: torch.Tensor, real_labels, phase: Phase, step: int,
               parts: list) -> tuple[torch.Tensor, ...]:
        """D's loss on fakes and reals, with R1 (or the WGAN-GP penalty), summed over the slices, and its step."""
        self.D_raw.requires_grad_(True)
        self.opt_D.zero_grad(set_to_none=True)
        n, d_sum, pen_sum = real_u8.shape[0], 0.0, 0.0
        for j, part in enumerate(parts):
            with self.part(j, parts, self.D):
                real = prepare_reals(real_u8[part], phase, self.cfg.mirror).contiguous(memory_format=self.layout)
                c = None if real_labels is None else real_labels[part]
                d_loss, pen, d_total = self.d_losses(real, c, phase, step)
                self.accel.backward(d_total * (real.shape[0] / n))
            d_sum, pen_sum = d_sum + d_loss.detach() * (real.shape[0] / n), pen_sum + pen.detach() * (real.shape[0] / n)
        self.opt_D.step()
        return d_sum, pen_sum

    def d_losses(self, real: torch.Tensor, real_c, phase: Phase, step: int) -> tuple[torch.Tensor, ...]:
        """(D loss, penalty, total) of one slice of reals (in [-1, 1] at phase.res), with their labels (a
        conditional network) or None."""
        cfg, accel, res, alpha, b = self.cfg, self.accel, phase.res, phase.alpha, real.shape[0]
        z = torch.randn(b, self.z_dim, device=self.device)
        fake_c = self.fake_labels(b)
        with torch.no_grad(), accel.autocast():  # the fakes D sees are mixed too, as in the official G_style
            fake = self.G_raw_fast(z, res=res, alpha=alpha, labels=fake_c, **self.mixing_args(b, res))
        do_r1 = cfg.loss == "logistic" and cfg.gamma > 0 and step % cfg.r1_interval == 0
        D = self.D if do_r1 or cfg.loss != "logistic" else self.D_fast
        real = real.detach().requires_grad_(do_r1)
        with accel.autocast():
            real_logits = D(self.aug(real), res=res, alpha=alpha, labels=real_c).float()
            fake_logits = D(self.aug(fake.detach()), res=res, alpha=alpha, labels=fake_c).float()
            if cfg.loss == "logistic":
                d_loss = d_logistic_loss(real_logits, fake_logits)
                scale = accel.scaler.get_scale() if accel.scaler is not None else 1.0
                pen = r1_penalty(real_logits, real, scale) if do_r1 else torch.zeros((), device=self.device)
                # lazy R1 (StyleGAN2): applied every r1_interval steps, so weighted r1_interval times more
                return d_loss, pen, d_loss + pen * (cfg.r1_weight(res) / 2) * cfg.r1_interval
            # WGAN-GP with epsilon drift 0.001 (ProGAN / the paper's CelebA-HQ runs)
            d_loss = fake_logits.mean() - real_logits.mean()
            pen = wgan_gp_penalty(self.D, real.detach(), fake.detach(), res, alpha, real_c)
            return d_loss, pen, d_loss + cfg.gamma * pen + 0.001 * real_logits.square().mean()

    def g_step(self, phase: Phase, parts: list) -> tuple[torch.Tensor, torch.Tensor]:
        """G's non-saturating loss, with style-mixing regularization, summed over the slices, and its optimizer
        step; returns the loss and the minibatch's w (for w_avg)."""
        res, alpha = phase.res, phase.alpha
        self.D_raw.requires_grad_(False)
        self.opt_G.zero_grad(set_to_none=True)
        n, g_sum, ws = parts[-1].stop, 0.0, []
        for j, part in enumerate(parts):
            b = part.stop - part.start
            with self.part(j, parts, self.G):
                z = torch.randn(b, self.z_dim, device=self.device)
                c = self.fake_labels(b)
                with self.accel.autocast():
                    fake, w = self.G_fast(z, res=res, alpha=alpha, return_w=True, labels=c, **self.mixing_args(b, res))
                    # D is called unwrapped here: its parameters need no gradient, so its DDP hooks must not fire.
                    fake_logits = self.D_raw_fast(self.aug(fake), res=res, alpha=alpha, labels=c).float()
                    g_loss = g_nonsaturating_loss(fake_logits) if self.cfg.loss == "logistic" else -fake_logits.mean()
                self.accel.backward(g_loss * (b / n))
            g_sum, ws = g_sum + g_loss.detach() * (b / n), ws + [w.detach()]
        self.opt_G.step()
        return g_sum, torch.cat(ws)

    @torch.no_grad()
    def update_averages(self, w: torch.Tensor, batch: int, cur_nimg: int) -> None:
        """w_avg (over all processes) and G's EMA, each parameter list in one foreach update."""
        self.G_raw.update_w_avg(self.accel.gather(w.detach().float()), self.cfg.w_avg_beta)
        torch._foreach_lerp_(*self.ema_pairs, 1 - self.ema_beta(batch, cur_nimg))
        torch._foreach_copy_(*self.buffer_pairs)


class SliceStreams:
    """The random streams of a process's slices (--batch-gpu). Slice 0 draws from the process's own generators;
    slice j > 0 from generators seeded as process j * world + rank of a run with that many more processes would be
    seeded (train seeds process r with seed + r). Each slice then draws what that process would, in the same order:
    one process with --batch-gpu 4 and a minibatch of 8 takes the step of two processes of 4 each."""

    def __init__(self, seed: int, rank: int, world: int, device: torch.device):
        self.seed, self.rank, self.world, self.device = seed, rank, world, device
        self.states: dict[int, list[torch.Tensor]] = {}  # slice -> [CPU state, device state]

    def _get(self) -> list[torch.Tensor]:
        return [torch.get_rng_state()] + ([torch.cuda.get_rng_state(self.device)] if self.device.type == "cuda" else [])

    def _set(self, states: list[torch.Tensor]) -> None:
        torch.set_rng_state(states[0])
        if self.device.type == "cuda":
            torch.cuda.set_rng_state(states[1], self.device)

    @contextlib.contextmanager
    def use(self, j: int):
        if j == 0:
            yield
            return
        outer = self._get()
        if j in self.states:
            self._set(self.states[j])
        else:
            torch.manual_seed(self.seed + j * self.world + self.rank)
        try:
            yield
        finally:
            self.states[j] = self._get()
            self._set(outer)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"{j}.{k}": t for j, states in self.states.items() for k, t in enumerate(states)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        slices = sorted({int(key.split(".")[0]) for key in state})
        self.states = {j: [state[f"{j}.{k}"] for k in range(len(self._get()))] for j in slices}


def compiled(module: torch.nn.Module):
    """torch.compile for a network that each phase of progressive growing calls at another resolution and fade: one
    graph per (resolution, fading or not, mixing or not), so the cache holds more than torch's default of 8. The
    noise inputs are drawn by torch's own generator, as in eager mode: a seed trains the same run either way."""
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


def steps_taken(cur_nimg: int, cfg: TrainConfig) -> int:
    """Training iterations that show the first cur_nimg images (each shows one global batch of the phase it starts
    in): a pure function of cur_nimg, so a resumed run applies lazy R1 on the steps an uninterrupted one would."""
    nimg = step = 0
    while nimg < cur_nimg:
        phase = schedule(nimg, cfg)
        n = math.ceil((min(phase.end_nimg or cur_nimg, cur_nimg) - nimg) / phase.batch)
        nimg, step = nimg + n * phase.batch, step + n
    return step


def make_accelerator(cfg: TrainConfig, run_dir: Path) -> Accelerator:
    # Accelerate keeps one precision per process: a second train() in the same process (tests, a notebook) may ask
    # for another. Forget the previous run's accelerator settings; the process group (PartialState) stays.
    AcceleratorState._reset_state()
    return Accelerator(
        cpu=use_cpu(cfg),  # Accelerate needs cpu=True to see a torchrun launch without GPUs as MULTI_CPU (gloo)
        mixed_precision=cfg.mixed_precision,
        # Progressive growing leaves the layers above the current resolution unused: DDP must expect that.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        # the reals are pinned (phase_batches) and copied to a GPU while the previous step runs
        dataloader_config=DataLoaderConfiguration(non_blocking=not use_cpu(cfg)),
        log_with=tracker_setup(cfg.tracker, run_dir), project_dir=str(run_dir))


def every(kimg: float, cur_nimg: int) -> int:
    """The first multiple of `kimg` thousand images after cur_nimg: where the next tick or checkpoint falls."""
    n = int(kimg * 1000)
    return (cur_nimg // n + 1) * n


def training_data(cfg: TrainConfig):
    """The run's data set (built into the cache the first time), checked against the network. With --cond the
    network's label_size, label names, kind and the data's label distribution come from the data's labels."""
    dataset = data.make_dataset(cfg.data, cfg.network["resolution"], max_images=cfg.max_images, pad=cfg.pad,
                                cache_dir=cfg.cache_dir, stream=cfg.stream, cond=cfg.cond)
    channels = cfg.network["img_channels"]
    if dataset[0][0].shape[0] != channels:
        raise UsageError(f"the network makes {channels}-channel images but {cfg.data} has {dataset[0][0].shape[0]} "
                         "channels: train on data with as many channels as the network")
    if cfg.cond:
        cfg.network.update(data_labels(dataset, cfg))
    return dataset


def data_labels(dataset, cfg: TrainConfig) -> dict:
    """The label fields of a conditional network trained on `dataset`; a resumed or fine-tuned network's own must
    agree with them."""
    labels = dataset.labels
    if not labels.shape[1]:
        raise UsageError(f"--cond: {cfg.data} carries no labels: give a dataset.json, one subfolder per class, or "
                         "train on the synthetic faces")
    fields = dict(label_size=labels.shape[1], label_names=list(dataset.attribute_names), label_kind=dataset.label_kind,
                  label_prior=[round(float(x), 6) for x in labels.mean(0)])
    had = cfg.network.get("label_size", 0), cfg.network.get("label_names")
    if cfg.init and not had[0]:
        raise UsageError(f"--cond with --init {cfg.init}: that network is unconditional, so its mapping and D have no "
                         "place for labels; fine-tune without --cond, or from a conditional network")
    if had[0] and had != (fields["label_size"], fields["label_names"]):
        raise UsageError(f"--cond: the network has {had[0]} labels ({', '.join(had[1] or [])}) but {cfg.data} gives "
                         f"{fields['label_size']} ({', '.join(fields['label_names'])}): train on data with its labels")
    return fields


def train(cfg: TrainConfig, run_dir: Path, resume: Path | None = None, log_fn=print,
          init: InitSource | None = None, dataset=None) -> dict:
    """Train from scratch, from the weights `init` (fine-tuning) or from the checkpoint `resume` (which wins over
    `init`), on `dataset` (default: training_data(cfg)); returns a summary (also for the tests)."""
    dataset = dataset if dataset is not None else training_data(cfg)
    accel = make_accelerator(cfg, run_dir)
    main, world, device = accel.is_main_process, accel.num_processes, accel.device
    if main:
        log_fn(precision_note(cfg.mixed_precision, device))
    init = init if resume is None else None
    G, D, G_ema, opt_G, opt_D = make_networks(cfg, accel, init)
    if init is not None and main:
        log_fn(f"fine-tuning from {init.description}" +
               ("; it holds no discriminator, so D starts from random weights" if init.D is None else ""))
    train_step = TrainStep(cfg, accel, G, D, G_ema, opt_G, opt_D, labels=dataset.labels if cfg.cond else None)
    cur_nimg, stats, opt_key = 0, {"sec_per_kimg": {}}, None  # opt_key: the phase the Adam states belong to
    if resume is not None:
        cur_nimg, stats, opt_key, process_state = load_checkpoint_state(accel, resume, G_ema)
        train_step.streams.load_state_dict(process_state)
    start_run_folder(run_dir, asdict(cfg), dataset, accel)
    start_trackers(accel, cfg.tracker, run_dir, asdict(cfg))
    monitor = Monitor(accel, run_dir, G_ema, cfg, cur_nimg, stats, log_fn)

    def checkpoint(final: bool = False):
        train_step.finite.check()  # a NaN since the last tick: keep the last checkpoint, the last good state
        info = {"data": cfg.data, "preset": cfg.preset, "mirror": cfg.mirror, "pad": cfg.pad}
        save_checkpoint(accel, run_dir, G_ema, train_step.G_raw, train_step.D_raw, cur_nimg, stats, opt_key,
                        cfg.keep_checkpoints, info, final, train_step.streams.state_dict())

    total_nimg, step = int(cfg.kimg * 1000), steps_taken(cur_nimg, cfg)
    next_tick, next_snap = every(cfg.tick_kimg, cur_nimg), every(cfg.snap_kimg, cur_nimg)
    batches, batches_key, loader_gen = None, None, torch.Generator()
    summary = {"first_batch": None, "rank": accel.process_index, "world": world}
    try:
        while cur_nimg < total_nimg:
            phase = schedule(cur_nimg, cfg)
            if phase.batch % world:
                raise UsageError(f"batch {phase.batch} at {phase.res}^2 does not split over {world} processes")
            if opt_key is not None and phase.key != opt_key:  # the paper resets Adam whenever a resolution is added
                for opt in (opt_G, opt_D):
                    opt.optimizer.state.clear()
            opt_key = phase.key
            if phase.key != batches_key or batches is None:
                batches, batches_key = phase_batches(dataset, cfg, phase, cur_nimg, total_nimg, accel, loader_gen), phase.key
            try:
                real_u8, real_labels = next(batches)
            except StopIteration:
                batches = None
                continue
            if summary["first_batch"] is None:
                summary["first_batch"] = real_u8[:4].float().mean().item()
            t0 = time.time()
            losses = train_step(real_u8.to(device), phase, step, cur_nimg, real_labels if cfg.cond else None)
            cur_nimg, step = cur_nimg + phase.batch, step + 1
            monitor.step(phase, losses, cur_nimg, time.time() - t0)
            done = cur_nimg >= total_nimg
            if cur_nimg >= next_tick or done:
                next_tick += int(cfg.tick_kimg * 1000)
                train_step.finite.check()  # waits for the device: the tick's time is then the device's too
                monitor.tick(phase, cur_nimg)
            if cur_nimg >= next_snap or done:
                next_snap += int(cfg.snap_kimg * 1000)
                checkpoint(final=done)
                monitor.measure(cur_nimg)
    except KeyboardInterrupt:
        if world == 1:
            checkpoint()
            log_fn(f"\ninterrupted: checkpoint saved at kimg {cur_nimg / 1000:.1f}; continue with --resume {run_dir}")
        raise
    finally:
        monitor.close()
        if main:
            accel.end_training()
    table = monitor.sec_per_kimg()
    if main:
        log_fn(f"network: {run_dir / 'network'}")
    nets = {"G_ema": G_ema, "G": train_step.G_raw, "D": train_step.D_raw}
    summary.update(cur_nimg=cur_nimg, sec_per_kimg=table,
                   **{name: {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
                      for name, net in nets.items()},
                   **{f"grad_{name}": {k: p.grad.detach().cpu().clone() for k, p in nets[name].named_parameters()
                                       if p.grad is not None} for name in ("G", "D")})  # the last step's
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
               "      --kimg 10 --diffaugment color,translation,cutout   # fine-tune on a few hundred images\n"
               "An option left out takes the preset's value, else the default shown (the paper's).\n")
    run = p.add_argument_group("the run")
    run.add_argument("--outdir", default=RUNS_DIR, help="where run folders go (default: runs)")
    run.add_argument("--name", help="run folder name after its number (default: data-resolution-preset)")
    run.add_argument("--resume", help="a run folder (or one of its checkpoints) to continue")
    run.add_argument("--allow-inexact-resume", dest="allow_inexact_resume", action="store_true",
                     help="resume even from a checkpoint whose RNG states are unreadable (the run is then not "
                          "bit-identical to an uninterrupted one)")
    run.add_argument("--threads", type=int_at_least(0), default=0,
                     help="CPU threads per process (default: the cores divided among this machine's processes)")
    add_options(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.init and args.resume:
        raise UsageError("--init starts a new run from a network and --resume continues a run: pass one of them")
    run_dir = None
    try:
        cfg, run_dir, ckpt, init, dataset = resumed_run(args) if args.resume else new_run(args)
        if use_cpu(cfg):
            torch.set_num_threads(cpu_threads(args.threads))
        return train(cfg, run_dir, ckpt, init=init, dataset=dataset)
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


def resumed_run(args) -> tuple:
    """--resume: the run's config (with a new --kimg or --cache-dir if given) and its checkpoint to continue."""
    run_dir, chosen, config = open_run(args.resume)
    cfg = TrainConfig.from_dict(config)
    if args.kimg is not None:
        cfg.kimg = args.kimg
    if args.cache_dir is not None:  # the cache may live elsewhere on the machine that resumes
        cfg.cache_dir = args.cache_dir
    ckpt = checkpoint_to_resume(run_dir, chosen, PartialState(cpu=use_cpu(cfg)), args.allow_inexact_resume)
    return cfg, run_dir, ckpt, None, training_data(cfg)


def new_run(args) -> tuple:
    """A new run folder for the config of the command line, claimed once its data have loaded."""
    init = load_init(args.init) if args.init else None
    cfg = make_config(args, init)
    state = PartialState(cpu=use_cpu(cfg))
    dataset = training_data(cfg)  # bad data: one line, and no run folder left behind
    name = args.name or f"{Path(cfg.data.rstrip('/')).name.replace(':', '')}-{cfg.network['resolution']}-{cfg.preset}"
    return cfg, claim_run_dir(Path(args.outdir), name, state), None, init, dataset


if __name__ == "__main__":
    run_cli(main)
