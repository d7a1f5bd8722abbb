"""The networks of StyleGAN (Karras, Laine, Aila 2019), and the paper's "traditional" baseline.

Generator = MappingNetwork (z -> w) + SynthesisNetwork (one w per style layer -> image).
Discriminator = the mirror of the synthesis network, with a minibatch standard deviation layer.
Both run at any intermediate resolution of progressive growing, with a fade-in `alpha`.

Numbers (channels, gains, learning-rate multipliers, initialisations) follow the paper and the official
TensorFlow code; where we depart from it, a comment says so. A network is saved as a folder laid out like a
Hugging Face Hub model: `config.json` beside `model.safetensors` (the config is also stored in the safetensors
header, so the weights file alone is enough). Loading our networks never unpickles anything. NVIDIA's official
.pkl files are read by official.py, a layer above this one, with an unpickler that resolves only plain data and runs
none of their code; checkpoint.load_network loads either kind.

    python model.py --preset ffhq1024      # per-block summary and parameter counts
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from huggingface_hub import hf_hub_download
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import ops
from common import CONFIG_NAME, WEIGHTS_NAME, ArgumentParser, NetworkError, UsageError, atomic_write, run_cli

FORMAT_VERSION = 1  # bump when the state-dict layout changes
SQRT2 = math.sqrt(2.0)
# On a CPU the fused resampling convolutions are 1.5-2.9 times faster than the separate ones from 32x32 up (in
# channels_last; 0.3-0.9 times below), where the official code fuses from 128x128: the same function either way.
CPU_FUSED_MIN_RES = 32
PSI_RANGE = (-2.0, 2.0)  # truncation psi: 1 = none, 0 = the average image; Figure 8 sweeps [-1, 1], beyond 2 is noise


# ----------------------------------------------------------------------------------------------------------------
# Configuration


@dataclass
class NetworkConfig:
    architecture: str = "style"  # "style": the paper's style-based generator; "traditional": latent -> first layer
    resolution: int = 1024  # final output resolution (a power of two, >= 4)
    img_channels: int = 3  # RGB
    z_dim: int = 512  # input latent Z
    w_dim: int = 512  # intermediate latent W
    mapping_layers: int = 8  # depth of f: Z -> W (paper Table 4: 0, 1, 2, 8); 0 means w = normalized z
    mapping_width: int = 512  # width of the hidden mapping layers
    mapping_lr_mul: float = 0.01  # learning-rate multiplier of the mapping network (paper, Appendix C)
    channel_base: int = 16384  # channels at resolution r = min(channel_base // r, channel_max)
    channel_max: int = 512
    use_noise: bool = True  # per-layer noise inputs (paper Sec. 3.2); the traditional generator has none
    fused_min_res: int = 128  # from this resolution up, up/down-sampling convs run fused (same function, faster; CPU_FUSED_MIN_RES on a CPU)
    mbstd_group: int = 4  # minibatch standard deviation group size (discriminator)
    default_cutoff: int | None = None  # truncation cutoff used when a caller passes none; None = all layers
    default_psi: float = 1.0  # truncation psi used when a caller passes none (NVIDIA's networks: 0.7, cutoff 8)
    label_size: int = 0  # conditioning labels (the official code's label_size): 0 = unconditional
    label_names: list[str] | None = None  # what each label means (class names, attributes), for the scripts
    label_kind: str = "classes"  # "classes": one-hot, one class per image; "attributes": each label 0 or 1
    label_prior: list[float] | None = None  # the training data's class frequencies or attribute rates

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    @property
    def log2_res(self) -> int:
        return int(math.log2(self.resolution))

    @property
    def resolutions(self) -> list[int]:
        return [2**i for i in range(2, self.log2_res + 1)]

    @property
    def num_ws(self) -> int:
        """Style layers: two per resolution (18 at 1024^2)."""
        return 2 * self.log2_res - 2

    def validate(self) -> "NetworkConfig":
        if self.architecture not in ("style", "traditional"):
            raise ValueError(f"architecture must be 'style' or 'traditional', not {self.architecture!r}")
        if self.resolution < 4 or self.resolution & (self.resolution - 1):
            raise ValueError(f"resolution must be a power of two >= 4, not {self.resolution}")
        if self.mapping_layers == 0 and self.z_dim != self.w_dim:
            raise ValueError("mapping_layers=0 needs z_dim == w_dim (w is then the normalized z)")
        if self.mapping_layers < 0:
            raise ValueError("mapping_layers must be >= 0")
        if self.label_size < 0:
            raise ValueError(f"label_size must be >= 0, not {self.label_size}")
        if self.label_size and self.mapping_layers == 0:
            raise ValueError("label_size > 0 needs a mapping network (the labels are embedded into its input)")
        if self.label_names is not None and len(self.label_names) != self.label_size:
            raise ValueError(f"{len(self.label_names)} label names for label_size {self.label_size}")
        if self.label_prior is not None and len(self.label_prior) != self.label_size:
            raise ValueError(f"{len(self.label_prior)} label frequencies for label_size {self.label_size}")
        if self.label_kind not in ("classes", "attributes"):
            raise ValueError(f"label_kind must be 'classes' or 'attributes', not {self.label_kind!r}")
        if self.channels(self.resolution) < 1:
            raise ValueError(f"channel_base {self.channel_base} gives no channels at {self.resolution}^2: raise it")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "NetworkConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}")
        return cls(**d).validate()


PRESETS: dict[str, NetworkConfig] = {
    # The paper's config F at 1024x1024 (FFHQ): 26.2 M generator parameters.
    "ffhq1024": NetworkConfig(resolution=1024),
    "ffhq256": NetworkConfig(resolution=256),
    # NVIDIA's other official networks (karras2019stylegan-*.pkl): config F on each data set, the same widths.
    "celebahq1024": NetworkConfig(resolution=1024),
    "bedrooms256": NetworkConfig(resolution=256),
    "cars512": NetworkConfig(resolution=512),  # LSUN cars are 512x384, padded to 512x512
    "cats256": NetworkConfig(resolution=256),
    # The paper's traditional generator (ProGAN with the tuning of config B): latent through the first layer.
    "traditional1024": NetworkConfig(architecture="traditional", resolution=1024, mapping_layers=0, use_noise=False),
    # The small network train.py uses by default: 32x32 on a laptop CPU. Same architecture, narrower: 128 channels
    # up to 8x8, 64 at 16x16, 32 at 32x32 (the paper's halving per resolution, from 128). A 64-channel 32x32 block
    # cost 2.4x more per image, which a 20-minute run spends better on more images.
    "cpu": NetworkConfig(resolution=32, z_dim=128, w_dim=128, mapping_width=128, channel_base=1024, channel_max=128),
}


# ----------------------------------------------------------------------------------------------------------------
# Building blocks: equalized learning rate (paper Sec. 2 / ProGAN Sec. 4.1)


def pixel_norm(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    return x * torch.rsqrt(x.square().mean(dim=dim, keepdim=True) + eps)


class EqualLinear(nn.Module):
    """Dense layer with weights drawn from N(0, 1/lr_mul) and scaled at run time by He's constant * lr_mul."""

    def __init__(self, in_features: int, out_features: int, gain: float = SQRT2, lr_mul: float = 1.0, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.weight_gain = gain / math.sqrt(in_features) * lr_mul
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        return F.linear(x, self.weight * self.weight_gain, bias)


def _fused_kernel(w: torch.Tensor) -> torch.Tensor:
    """3x3 kernel -> 4x4 kernel that does a 2x resampling and the 3x3 conv in one strided op (official 'fused_scale')."""
    w = F.pad(w, [1, 1, 1, 1])
    return w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]


class EqualConv2d(nn.Module):
    """Convolution with equalized learning rate, optionally with 2x nearest up-sampling before it or 2x average
    down-sampling after it. `fused=True` computes the same function with one strided (transposed) convolution,
    as the official code does from 128^2 up; tests check that both paths agree. `fused_on_cpu` is the choice on a
    CPU (default: `fused`), where the fused path is the faster from 32^2 up (CPU_FUSED_MIN_RES)."""

    def __init__(self, cin: int, cout: int, kernel: int, gain: float = SQRT2, bias: bool = True,
                 up: bool = False, down: bool = False, fused: bool = False, fused_on_cpu: bool | None = None):
        super().__init__()
        assert not (up and down)
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.weight_gain = gain / math.sqrt(cin * kernel * kernel)
        self.up, self.down, self.pad = up, down, kernel // 2
        self.fused = fused and kernel == 3
        self.fused_on_cpu = self.fused if fused_on_cpu is None else fused_on_cpu and kernel == 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        fused = self.fused_on_cpu if x.device.type == "cpu" else self.fused
        if self.up and fused:
            # conv_transpose correlates with the flipped kernel, so flip before fusing: equals nearest-up then conv.
            w = _fused_kernel(w.flip([2, 3]))
            return ops.conv_transpose2d(x, w.transpose(0, 1), self.bias, stride=2, padding=1)
        if self.down and fused:
            return ops.conv2d(x, _fused_kernel(w) * 0.25, self.bias, stride=2, padding=1)
        if self.up:
            x = ops.upsample2x(x)
        x = ops.conv2d(x, w, self.bias, padding=self.pad)
        if self.down:
            x = F.avg_pool2d(x, 2)
        return x


class Blur(nn.Module):
    """[1, 2, 1] low-pass filter applied per channel: the paper's bilinear up/down-sampling (config B). A fixed
    filter, never trained: ops.blur gives it no gradient and derivatives of every order without a per-channel loop."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.blur(x)


class NoiseInjection(nn.Module):
    """A single-channel noise image added to the activations, scaled by a learned per-channel factor initialised to
    zero (Sec. 3.2). The Epilogue adds it together with the bias, in one pass (ops.noise_bias_lrelu)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(channels))


class AdaIN(nn.Module):
    """AdaIN(x, y) = y_s * norm(x) + y_b, with y = A(w) a learned affine map of w (paper Eq. 1).
    As in the official code the scale is parametrised as (1 + y_s), so a freshly initialised layer is identity."""

    def __init__(self, channels: int, w_dim: int):
        super().__init__()
        self.affine = EqualLinear(w_dim, 2 * channels, gain=1.0)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        y_s, y_b = self.affine(w).chunk(2, dim=1)  # (N, C) each
        return ops.instance_norm_affine(x, y_s + 1, y_b)  # instance norm per sample and channel, then the style


class Epilogue(nn.Module):
    """What follows every synthesis convolution: noise, bias, leaky ReLU, then AdaIN (style-based) or pixel norm
    (traditional, as in ProGAN). Holds the layer's fixed noise image for noise_mode='const'."""

    def __init__(self, channels: int, w_dim: int, res: int, layer_idx: int, use_noise: bool, use_styles: bool):
        super().__init__()
        self.layer_idx, self.res = layer_idx, res
        self.noise = NoiseInjection(channels) if use_noise else None
        self.bias = nn.Parameter(torch.zeros(channels))
        self.adain = AdaIN(channels, w_dim) if use_styles else None
        if use_noise:  # a fixed noise image per layer, drawn from a per-layer seed so it does not depend on init order
            g = torch.Generator().manual_seed(1000 + layer_idx)
            self.register_buffer("noise_const", torch.randn(1, 1, res, res, generator=g))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        strength = self.noise.weight if self.noise is not None and noise is not None else None
        x = ops.noise_bias_lrelu(x, noise if strength is not None else None, strength, self.bias)
        return self.adain(x, w) if self.adain is not None else pixel_norm(x)


class ToRGB(nn.Module):
    def __init__(self, cin: int, img_channels: int):
        super().__init__()
        self.conv = EqualConv2d(cin, img_channels, 1, gain=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


# ----------------------------------------------------------------------------------------------------------------
# Generator


class MappingNetwork(nn.Module):
    """f: Z -> W. Normalizes z (pixel norm), then `num_layers` dense layers with leaky ReLU and lr multiplier 0.01.

    Conditional (label_size > 0), as the official G_mapping: the labels are embedded by a plain matrix to w_dim
    (no bias, no weight scaling, initialised N(0, 1)) and concatenated after z, before the pixel norm."""

    def __init__(self, z_dim: int, w_dim: int, num_layers: int, width: int, lr_mul: float, label_size: int = 0):
        super().__init__()
        dims = [z_dim + (w_dim if label_size else 0)] + [width] * (num_layers - 1) + [w_dim] if num_layers > 0 else []
        self.layers = nn.ModuleList(EqualLinear(a, b, lr_mul=lr_mul) for a, b in zip(dims[:-1], dims[1:]))
        self.embed = nn.Parameter(torch.randn(label_size, w_dim)) if label_size else None

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            assert labels is not None and labels.shape == (z.shape[0], self.embed.shape[0]), \
                f"a conditional mapping needs labels ({z.shape[0]}, {self.embed.shape[0]})"
            z = torch.cat([z, labels.to(z.dtype) @ self.embed.to(z.dtype)], dim=1)
        x = pixel_norm(z)
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.2)
        return x  # (N, w_dim)


class ConstantInput(nn.Module):
    """The learned 4x4 constant that replaces the traditional input layer (paper Sec. 2), initialised to ones."""

    def __init__(self, channels: int):
        super().__init__()
        self.const = nn.Parameter(torch.ones(1, channels, 4, 4))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.const.expand(w.shape[0], -1, -1, -1)


class DenseInput(nn.Module):
    """The traditional generator's input: the latent through a dense layer to 4x4 (ProGAN, gain sqrt(2)/4)."""

    def __init__(self, w_dim: int, channels: int):
        super().__init__()
        self.channels = channels
        self.dense = EqualLinear(w_dim, channels * 16, gain=SQRT2 / 4, bias=False)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.dense(w).view(-1, self.channels, 4, 4)


class SynthesisBlock(nn.Module):
    """One resolution of g: (up-sample, conv 3x3, blur) or the input at 4x4, then conv 3x3; an epilogue after each."""

    def __init__(self, cfg: NetworkConfig, res: int):
        super().__init__()
        cin, cout, style = cfg.channels(max(res // 2, 4)), cfg.channels(res), cfg.architecture == "style"
        first = 2 * int(math.log2(res)) - 4  # index of this block's first style layer
        if res == 4:
            self.conv0 = ConstantInput(cout) if style else DenseInput(cfg.w_dim, cout)
            self.blur = None
        else:
            self.conv0 = EqualConv2d(cin, cout, 3, bias=False, up=True, fused=res >= cfg.fused_min_res,
                                     fused_on_cpu=res >= min(cfg.fused_min_res, CPU_FUSED_MIN_RES))
            self.blur = Blur()
        self.epi0 = Epilogue(cout, cfg.w_dim, res, first, cfg.use_noise, style)
        self.conv1 = EqualConv2d(cout, cout, 3, bias=False)
        self.epi1 = Epilogue(cout, cfg.w_dim, res, first + 1, cfg.use_noise, style)
        self.res, self.first = res, first

    def forward(self, x: torch.Tensor | None, ws: torch.Tensor, noise: list) -> torch.Tensor:
        w0, w1 = ws[:, self.first], ws[:, self.first + 1]
        x = self.conv0(w0) if self.res == 4 else self.blur(self.conv0(x))
        x = self.epi0(x, w0, noise[self.first])
        return self.epi1(self.conv1(x), w1, noise[self.first + 1])


class SynthesisNetwork(nn.Module):
    """g: ws (N, num_ws, w_dim) -> image (N, C, res, res), values nominally in [-1, 1].

    The style-based generator feeds ws[:, i] to style layer i. The traditional generator feeds ws[:, 0] to its
    dense input layer and ignores the rest (its truncation and mixing therefore act on layer 0 only)."""

    def __init__(self, cfg: NetworkConfig):
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleDict({f"b{r}": SynthesisBlock(cfg, r) for r in cfg.resolutions})
        self.torgb = nn.ModuleDict({f"b{r}": ToRGB(cfg.channels(r), cfg.img_channels) for r in cfg.resolutions})

    def make_noise(self, batch: int, res: int | None = None, seed: int | None = None,
                   device: torch.device | str = "cpu") -> list[torch.Tensor | None]:
        """One noise image per style layer, drawn on the CPU from `seed` (if given) so it is device-independent."""
        res = res or self.cfg.resolution
        if not self.cfg.use_noise:
            return [None] * self.cfg.num_ws
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        out = []
        for i in range(self.cfg.num_ws):
            r = 2 ** (i // 2 + 2)
            out.append(torch.randn(batch, 1, r, r, generator=g).to(device) if r <= res else None)
        return out

    def const_noise(self) -> list[torch.Tensor | None]:
        if not self.cfg.use_noise:
            return [None] * self.cfg.num_ws
        out = []
        for block in self.blocks.values():
            out += [block.epi0.noise_const, block.epi1.noise_const]
        return out

    def forward(self, ws: torch.Tensor, res: int | None = None, alpha: float = 1.0, noise_mode: str = "random",
                noise: list | None = None) -> torch.Tensor:
        cfg = self.cfg
        res = res or cfg.resolution
        assert res in cfg.resolutions, f"res {res} not in {cfg.resolutions}"
        assert ws.ndim == 3 and ws.shape[1:] == (cfg.num_ws, cfg.w_dim), f"ws must be (N, {cfg.num_ws}, {cfg.w_dim})"
        if noise is None:
            if noise_mode == "random":  # drawn for the layers in use only: a 32x32 output needs no 1024x1024 noise
                sizes = [2 ** (i // 2 + 2) for i in range(cfg.num_ws)]
                noise = [torch.randn(ws.shape[0], 1, r, r, device=ws.device, dtype=ws.dtype)
                         if cfg.use_noise and r <= res else None for r in sizes]
            elif noise_mode == "const":
                noise = self.const_noise()
            elif noise_mode == "none":
                noise = [None] * cfg.num_ws
            else:
                raise ValueError(f"noise_mode must be random, const or none, not {noise_mode!r}")
        x, prev = None, None
        for r, block in self.blocks.items():
            r = int(r[1:])
            prev, x = x, block(x, ws, noise)
            if r == res:
                break
        img = self.torgb[f"b{res}"](x)
        if alpha < 1.0 and res > 4:  # fade-in: lerp from the previous resolution's output, up-sampled (ProGAN)
            low = ops.upsample2x(self.torgb[f"b{res // 2}"](prev))
            img = low + (img - low) * alpha
        return img


class Generator(nn.Module):
    """The full generator: z -> w (mapping), truncation, optional style mixing, then synthesis."""

    def __init__(self, cfg: NetworkConfig):
        super().__init__()
        self.cfg = cfg.validate()
        self.mapping = MappingNetwork(cfg.z_dim, cfg.w_dim, cfg.mapping_layers, cfg.mapping_width, cfg.mapping_lr_mul,
                                      cfg.label_size)
        self.synthesis = SynthesisNetwork(cfg)
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))  # moving average of w, for truncation
        self.render_dtype = None  # the autocast of the scripts' rendering (generate.load_generator); None: none
        # A conditional G's labels where a caller gives none: one row (label_size,) set by the scripts (--class,
        # --labels); None draws them from the training data's label distribution (label_prior).
        self.fixed_labels: torch.Tensor | None = None  # NaN entries: drawn per sample, as if unset
        self.trunc_center: torch.Tensor | None = None  # truncation's centre where not w_avg (label_w_avg)

    @property
    def num_ws(self) -> int:
        return self.cfg.num_ws

    def num_ws_at(self, res: int) -> int:
        """Style layers in use at resolution `res` (style-mixing crossovers are drawn among these)."""
        return 2 * int(math.log2(res)) - 2

    @torch.no_grad()
    def update_w_avg(self, w: torch.Tensor, beta: float = 0.995) -> None:
        self.w_avg.copy_(w.detach().float().mean(0).lerp(self.w_avg, beta))

    def truncation(self, psi=None, cutoff=None) -> tuple[float, int]:
        """The (psi, cutoff) that truncate() applies, checked: None takes the network's default (no truncation,
        except NVIDIA's networks: psi 0.7 on the first 8 layers). Raises UsageError naming the valid range."""
        psi = self.cfg.default_psi if psi is None else psi
        cutoff = (self.cfg.default_cutoff or self.num_ws) if cutoff is None else cutoff
        return check_psi(psi), check_cutoff(cutoff, self.num_ws)

    def truncate(self, ws: torch.Tensor, psi: float | None = None, cutoff: int | None = None,
                 avg: torch.Tensor | None = None) -> torch.Tensor:
        """w' = w_avg + psi (w - w_avg) on style layers [0, cutoff) (paper Sec. 4.1 / Appendix B). avg: another
        centre instead of the tracked w_avg (w_dim,), or one per sample (N, w_dim): see label_w_avg."""
        psi, cutoff = self.truncation(psi, cutoff)
        if psi == 1.0 or cutoff == 0:
            return ws
        avg = avg if avg is not None else self.trunc_center if self.trunc_center is not None else self.w_avg
        avg = avg.to(ws.device, ws.dtype)
        avg = avg.unsqueeze(1) if avg.ndim == 2 else avg
        layer = torch.arange(self.num_ws, device=ws.device).view(1, -1, 1)
        return torch.where(layer < cutoff, avg.lerp(ws, psi), ws)

    def mix(self, ws: torch.Tensor, ws_b: torch.Tensor, first, stop) -> torch.Tensor:
        """Style mixing (paper Sec. 3.1): ws (N, num_ws, w_dim) with style layers [first, stop) taken from ws_b
        (N or 1 rows; (N, 1, w_dim) for one w on every layer). first and stop: ints, or one per sample."""
        layer = torch.arange(self.num_ws, device=ws.device).view(1, -1, 1)
        first, stop = (torch.as_tensor(v, device=ws.device).view(-1, 1, 1) for v in (first, stop))
        return torch.where((layer >= first) & (layer < stop), ws_b.to(ws.dtype), ws)

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        """w (N, w_dim) -> ws (N, num_ws, w_dim): the same w for every style layer."""
        return w.unsqueeze(1).repeat(1, self.num_ws, 1)

    def w(self, z: torch.Tensor, labels=None) -> torch.Tensor:
        """z (N, z_dim) -> w (N, w_dim): the mapping, with a conditional G's labels as label_rows gives them."""
        return self.mapping(z, self.label_rows(labels, len(z)))

    def map(self, z: torch.Tensor, psi: float | None = None, cutoff: int | None = None,
            labels: torch.Tensor | None = None) -> torch.Tensor:
        """z (N, z_dim) -> ws (N, num_ws, w_dim), broadcast to every style layer and truncated."""
        return self.truncate(self.broadcast(self.w(z, labels)), psi, cutoff)

    def label_rows(self, labels, n: int, seeds=None) -> torch.Tensor | None:
        """labels as (n, label_size) on G's device and dtype: None for an unconditional G; one row (label_size,)
        is repeated for every sample. Given none: fixed_labels, else labels drawn from the data's distribution
        (per seed where `seeds` are given, so that a seed keeps its label)."""
        if not self.cfg.label_size:
            return None
        if labels is None:
            labels = self.fixed_labels
        drawn = lambda: self.seed_labels(seeds) if seeds is not None else self.draw_labels(n)  # noqa: E731
        if labels is None:
            labels = drawn()
        p = self.w_avg
        labels = torch.as_tensor(labels).to(p.device, p.dtype)
        labels = labels.expand(n, -1) if labels.ndim == 1 else labels
        if labels.isnan().any():  # the labels left open: drawn from the data's distribution
            labels = torch.where(labels.isnan(), drawn().to(labels), labels)
        return labels

    def _prior(self) -> torch.Tensor:
        prior = self.cfg.label_prior or [1.0 / self.cfg.label_size if self.cfg.label_kind == "classes" else 0.5] * \
            self.cfg.label_size
        return torch.tensor(prior, dtype=torch.float64)

    def draw_labels(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n label rows drawn (on the CPU) from the training data's distribution, as the official code draws the
        fakes' labels: one-hot classes by their frequency, or each attribute by its rate."""
        prior = self._prior()
        if self.cfg.label_kind == "classes":
            eye = torch.eye(self.cfg.label_size)
            return eye[torch.multinomial(prior.clamp_min(0), n, replacement=True, generator=generator)]
        # attributes by their rates (labels beyond 0/1 count as their clamped mean: training itself draws the fakes'
        # labels from the data's own rows, so this affects only the scripts' default labels)
        return torch.bernoulli(prior.clamp(0, 1).expand(n, -1), generator=generator).float()

    def seed_labels(self, seeds) -> torch.Tensor:
        """One label row per seed, drawn as draw_labels from a generator of that seed (apart from its z)."""
        return torch.cat([self.draw_labels(1, torch.Generator().manual_seed(int(s) + 2**40)) for s in seeds])

    @torch.no_grad()
    def w_from_seeds(self, seeds, batch: int = 16, labels=None) -> torch.Tensor:
        """seeds -> w (N, w_dim) on G's device and in its dtype; the same w for a seed on every device and batch.
        labels: for a conditional G, one row for all seeds or one per seed."""
        p = self.w_avg
        z = seed_to_z(seeds, self.cfg.z_dim)
        c = self.label_rows(labels, len(z), seeds)
        return torch.cat([self.mapping(z[i:i + batch].to(p.device, p.dtype), None if c is None else c[i:i + batch])
                          for i in range(0, len(z), batch)])

    def ws_from_seeds(self, seeds, psi: float | None = None, cutoff: int | None = None,
                      batch: int = 16, labels=None, avg: torch.Tensor | None = None) -> torch.Tensor:
        """The seed-to-style contract of every script: seeds -> z (seed_to_z) -> w -> truncated ws
        (N, num_ws, w_dim). psi and cutoff as in truncation(); labels as in w_from_seeds; avg as in truncate()."""
        return self.truncate(self.broadcast(self.w_from_seeds(seeds, batch, labels)), psi, cutoff, avg)

    @torch.no_grad()
    def label_w_avg(self, labels, num: int = 10_000, seed: int = 0, batch: int = 500) -> torch.Tensor:
        """The mean w of `num` latents drawn with one label row (label_size,): a truncation centre that keeps that
        class or attribute at low psi, where the tracked w_avg (over the training labels) pulls toward the mix."""
        z = torch.randn(num, self.cfg.z_dim, generator=torch.Generator().manual_seed(seed))
        p = self.w_avg
        total = torch.zeros(self.cfg.w_dim, dtype=torch.float64, device=p.device)
        for i in range(0, num, batch):
            zb = z[i:i + batch].to(p.device, p.dtype)
            total += self.mapping(zb, self.label_rows(labels, len(zb))).double().sum(0)
        return (total / num).to(p.dtype)

    def noise_from_seeds(self, seeds) -> list[torch.Tensor | None]:
        """Per-layer noise (N, 1, r, r) for G.synthesis, image i's drawn on the CPU from seeds[i]: the same noise for
        a seed on every device and in every batch. None for layers without noise."""
        p = self.w_avg
        per_seed: dict[int, list] = {}
        for s in seeds:
            if s not in per_seed:
                per_seed[s] = self.synthesis.make_noise(1, seed=int(s))
        maps = [per_seed[s] for s in seeds]
        return [None if maps[0][i] is None else torch.cat([m[i] for m in maps]).to(p.device, p.dtype)
                for i in range(self.num_ws)]

    def forward(self, z: torch.Tensor, psi: float = 1.0, cutoff: int | None = None, res: int | None = None,
                alpha: float = 1.0, noise_mode: str = "random", noise: list | None = None,
                mix_z: torch.Tensor | None = None, mix_layer: int | torch.Tensor | None = None,
                return_w: bool = False, labels: torch.Tensor | None = None):
        """Training and inference in one call (so DDP sees every parameter use).

        mix_z, mix_layer: style mixing; layers >= mix_layer (an int, or one per sample) take mix_z's w (mapped with
        the same labels, as in the official G_style). return_w: also return the un-broadcast w (N, w_dim) of z,
        for the w_avg update. labels (N, label_size): a conditional G's labels."""
        assert z.ndim == 2 and z.shape[1] == self.cfg.z_dim, f"z must be (N, {self.cfg.z_dim}), got {tuple(z.shape)}"
        labels = self.label_rows(labels, len(z))
        w = self.mapping(z, labels)
        ws = self.broadcast(w)
        if mix_z is not None:
            ws = self.mix(ws, self.mapping(mix_z, labels).unsqueeze(1), mix_layer, self.num_ws)
        ws = self.truncate(ws, psi, cutoff)
        img = self.synthesis(ws, res=res, alpha=alpha, noise_mode=noise_mode, noise=noise)
        return (img, w) if return_w else img


# ----------------------------------------------------------------------------------------------------------------
# Discriminator


class MinibatchStdDev(nn.Module):
    """Appends the average standard deviation of features over groups of samples as one extra channel (ProGAN)."""

    def __init__(self, group_size: int = 4):
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        # The official code requires N divisible by the group size; we take the largest group that divides N.
        g = max(d for d in range(1, min(self.group_size, n) + 1) if n % d == 0)
        y = x.float().view(g, n // g, c, h, w)
        y = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt()  # (M, C, H, W) std over each group
        y = y.mean(dim=(1, 2, 3)).to(x.dtype)  # (M,)
        y = y.view(1, n // g, 1, 1, 1).expand(g, -1, 1, h, w).reshape(n, 1, h, w)
        return torch.cat([x, y], dim=1)


class DiscriminatorBlock(nn.Module):
    """conv 3x3, then blur and a down-sampling conv 3x3 (fused from 128^2 up), leaky ReLU after each."""

    def __init__(self, cfg: NetworkConfig, res: int):
        super().__init__()
        cin, cout = cfg.channels(res), cfg.channels(res // 2)
        self.conv0 = EqualConv2d(cin, cin, 3)
        self.blur = Blur()
        self.conv1 = EqualConv2d(cin, cout, 3, down=True, fused=res >= cfg.fused_min_res,
                                 fused_on_cpu=res >= min(cfg.fused_min_res, CPU_FUSED_MIN_RES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv0(x), 0.2)
        return F.leaky_relu(self.conv1(self.blur(x)), 0.2)


class Discriminator(nn.Module):
    def __init__(self, cfg: NetworkConfig):
        super().__init__()
        self.cfg = cfg.validate()
        c4, c2 = cfg.channels(4), cfg.channels(2)
        self.fromrgb = nn.ModuleDict({f"b{r}": EqualConv2d(cfg.img_channels, cfg.channels(r), 1) for r in cfg.resolutions})
        self.blocks = nn.ModuleDict({f"b{r}": DiscriminatorBlock(cfg, r) for r in reversed(cfg.resolutions[1:])})
        self.mbstd = MinibatchStdDev(cfg.mbstd_group)
        self.conv = EqualConv2d(c4 + 1, c4, 3)
        self.fc = EqualLinear(c4 * 16, c2)
        self.out = EqualLinear(c2, max(cfg.label_size, 1), gain=1.0)  # conditional: one score per label

    def forward(self, img: torch.Tensor, res: int | None = None, alpha: float = 1.0,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        res = res or self.cfg.resolution
        assert img.ndim == 4 and img.shape[2:] == (res, res), f"expected images at {res}x{res}, got {tuple(img.shape)}"
        x = F.leaky_relu(self.fromrgb[f"b{res}"](img), 0.2)
        for r, block in self.blocks.items():
            r = int(r[1:])
            if r > res:
                continue
            x = block(x)
            if r == res and alpha < 1.0:  # fade-in: lerp from the down-sampled image through the older fromRGB
                low = F.leaky_relu(self.fromrgb[f"b{r // 2}"](F.avg_pool2d(img, 2)), 0.2)
                x = low + (x - low) * alpha
        x = F.leaky_relu(self.conv(self.mbstd(x)), 0.2)
        x = F.leaky_relu(self.fc(x.flatten(1)), 0.2)
        scores = self.out(x)
        if not self.cfg.label_size:
            return scores.squeeze(1)  # (N,) logits
        # the official D_basic's LabelSwitch: the score of the given label (or the sum over the attributes given)
        assert labels is not None and labels.shape == scores.shape, f"a conditional D needs labels {tuple(scores.shape)}"
        return (scores * labels.to(scores.dtype)).sum(1)


def style_ranges(resolution: int) -> dict[str, tuple[int, int, str]]:
    """The paper's coarse / middle / fine style-layer ranges as {name: (first, stop, resolutions)} (Sec. 3.1, Fig. 3):
    coarse = 4^2-8^2, middle = 16^2-32^2, fine = 64^2 and up. A network below 64^2 has no 'fine' layers in that sense,
    so there (our departure) the three ranges are its lowest two, its next, and its last resolution."""
    n = 2 * int(math.log2(resolution)) - 2
    if resolution >= 64:
        bounds = {"coarse": (0, 4), "middle": (4, 8), "fine": (8, n)}
    elif resolution >= 16:
        bounds = {"coarse": (0, n - 4), "middle": (n - 4, n - 2), "fine": (n - 2, n)}
    else:
        raise ValueError("style ranges need a network of at least 16x16")
    res = lambda i: 2 ** (i // 2 + 2)  # resolution of style layer i
    return {k: (a, b, f"{res(a)}-{res(b - 1)}" if res(a) != res(b - 1) else f"{res(a)}") for k, (a, b) in bounds.items()}


# ----------------------------------------------------------------------------------------------------------------
# Seeds, saving and loading


def is_number(value) -> bool:
    """A real number (int, float, numpy scalar), not text, a list or a bool: API clients can send any JSON value."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_whole(value) -> bool:
    return is_number(value) and math.isfinite(value) and int(value) == value


def check_psi(psi) -> float:
    lo, hi = PSI_RANGE
    if not is_number(psi) or not math.isfinite(psi) or not lo <= psi <= hi:
        raise UsageError(f"truncation psi must be between {lo} and {hi} (1 = no truncation, 0.7 as in the paper, "
                         f"0 = the average image), not {psi!r}")
    return float(psi)


def check_cutoff(cutoff, num_ws: int) -> int:
    if not is_whole(cutoff) or not 0 <= cutoff <= num_ws:
        raise UsageError(f"truncation cutoff must be a layer count from 0 to {num_ws} (layers [0, cutoff) are "
                         f"truncated; this network has {num_ws} style layers), not {cutoff!r}")
    return int(cutoff)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between the directions of a and b (N, D) at t (N,) or (N, 1): unit vectors at
    constant angular speed, the path through Z of PPL and of Z interpolations. t = 0 gives a's direction exactly."""
    a, b = F.normalize(a, dim=-1, eps=0), F.normalize(b, dim=-1, eps=0)
    t = t.reshape(-1, 1)
    cos = (a * b).sum(-1, keepdim=True).clamp(-1, 1)
    angle = t * torch.acos(cos)
    ortho = F.normalize(b - cos * a, dim=-1, eps=1e-12)  # the unit vector orthogonal to a in the plane of a, b
    return F.normalize(a * torch.cos(angle) + ortho * torch.sin(angle), dim=-1, eps=0)


def seed_to_z(seeds, z_dim: int) -> torch.Tensor:
    """The same z for a seed on every machine and batch size: numpy's RandomState, as the official code does."""
    return torch.from_numpy(np.stack([np.random.RandomState(s).randn(z_dim) for s in seeds])).float()


def save_network(G: Generator, folder: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write G as a Hub-style folder: config.json + model.safetensors (config also in its header). Atomic per file."""
    folder = Path(folder)
    meta = {"format": "stylegan-pytorch", "format_version": FORMAT_VERSION, "network": G.cfg.to_dict(), **(extra or {})}
    state = {k: v.detach().float().cpu().contiguous() for k, v in G.state_dict().items()}
    atomic_write(folder / WEIGHTS_NAME, lambda p: save_file(state, p, metadata={"config": json.dumps(meta)}))
    atomic_write(folder / CONFIG_NAME, lambda p: Path(p).write_text(json.dumps(meta, indent=2) + "\n"))
    return folder


def read_network_meta(path: str | os.PathLike) -> dict:
    """The JSON metadata of a network saved by save_network (its config under 'network', plus training info).
    checkpoint.read_network_meta also reads NVIDIA's pickles."""
    weights = _weights_path(path)
    try:
        with safe_open(str(weights), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("config", "null"))
    except Exception as e:  # safetensors raises several types for a bad header
        raise NetworkError(f"{weights} is not a valid safetensors file ({type(e).__name__}); pass a network folder "
                           "written by train.py") from None
    if not isinstance(meta, dict) or meta.get("format") != "stylegan-pytorch":
        raise NetworkError(f"{weights} holds no StyleGAN network config; pass a network folder written by train.py")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise NetworkError(f"{weights} was written by a newer version of this code; update the code to load it")
    return meta


def _weights_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / WEIGHTS_NAME
    if not p.is_file():
        if not Path(path).exists() and _looks_like_hub_id(str(path)):
            return _hub_download(str(path))
        raise NetworkError(f"no network at {path}: expected a folder with {WEIGHTS_NAME} (train.py writes "
                           f"runs/<run>/network) or a .safetensors file")
    return p


def _looks_like_hub_id(s: str) -> bool:
    parts = s.split("/")
    return len(parts) == 2 and all(parts) and not s.startswith((".", "/", "~"))


def _hub_download(repo_id: str) -> Path:
    try:
        return Path(hf_hub_download(repo_id, WEIGHTS_NAME))
    except Exception as e:
        raise NetworkError(f"could not fetch {repo_id!r} from the Hugging Face Hub ({type(e).__name__}); check the "
                           "name and your connection, or pass a local network folder") from None


def load_network(path: str | os.PathLike, device: str | torch.device = "cpu") -> Generator:
    """Load a generator saved by save_network, from its folder, its .safetensors file or a Hub repo id
    ('user/repo'); eval mode. checkpoint.load_network also loads NVIDIA's pickles: the scripts call that one."""
    weights = _weights_path(path)
    meta = read_network_meta(weights)
    try:
        with torch.random.fork_rng(devices=[]):  # the random init is overwritten: leave the caller's RNG untouched
            G = Generator(NetworkConfig.from_dict(meta["network"]))
    except (KeyError, TypeError, ValueError) as e:
        raise NetworkError(f"{weights} has an invalid network config: {e}") from None
    state = load_file(str(weights))
    missing, unexpected = set(G.state_dict()) - set(state), set(state) - set(G.state_dict())
    if missing or unexpected:
        raise NetworkError(f"{weights} does not match its config: {len(missing)} missing and {len(unexpected)} "
                           "unexpected tensors")
    try:
        G.load_state_dict(state)
    except RuntimeError:
        raise NetworkError(f"{weights} does not match its config (tensor shapes differ)") from None
    G.meta = meta
    return G.eval().requires_grad_(False).to(device)


# ----------------------------------------------------------------------------------------------------------------
# Summary


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def summary(cfg: NetworkConfig) -> str:
    """Per-block table (resolution, channels, output shape, parameters) and totals for G and D."""
    G, D = Generator(cfg), Discriminator(cfg)
    rows = [f"{'block':<22}{'res':>6}{'channels':>10}  {'output shape':<20}{'parameters':>14}"]
    rows.append(f"{'G.mapping':<22}{'':>6}{cfg.w_dim:>10}  {str((cfg.w_dim,)):<20}{count_params(G.mapping):>14,}")
    for r in cfg.resolutions:
        n = count_params(G.synthesis.blocks[f"b{r}"]) + count_params(G.synthesis.torgb[f"b{r}"])
        rows.append(f"{f'G.synthesis.b{r}+toRGB':<22}{r:>6}{cfg.channels(r):>10}  "
                    f"{str((cfg.channels(r), r, r)):<20}{n:>14,}")
    for r in reversed(cfg.resolutions[1:]):
        n = count_params(D.blocks[f"b{r}"]) + count_params(D.fromrgb[f"b{r}"])
        rows.append(f"{f'D.fromRGB+b{r}':<22}{r:>6}{cfg.channels(r // 2):>10}  "
                    f"{str((cfg.channels(r // 2), r // 2, r // 2)):<20}{n:>14,}")
    n = count_params(D) - sum(count_params(D.blocks[k]) for k in D.blocks) - sum(
        count_params(D.fromrgb[f"b{r}"]) for r in cfg.resolutions[1:])
    rows.append(f"{'D.fromRGB4+epilogue':<22}{4:>6}{1:>10}  {'(1,)':<20}{n:>14,}")
    rows.append(f"generator parameters: {count_params(G):,}")
    rows.append(f"discriminator parameters: {count_params(D):,}")
    return "\n".join(rows)


def main(argv=None):
    parser = ArgumentParser("model.py", "Print a StyleGAN network's per-block summary and parameter counts.",
                            "examples:\n  python model.py --preset ffhq1024\n  python model.py --preset cpu\n"
                            "(NVIDIA's .pkl networks convert with official.py)")
    parser.add_argument("--preset", default="ffhq1024", choices=sorted(PRESETS), help="network preset")
    args = parser.parse_args(argv)
    cfg = PRESETS[args.preset]
    print(f"preset {args.preset}: {json.dumps(cfg.to_dict())}")
    print(summary(cfg))


if __name__ == "__main__":
    run_cli(main)
