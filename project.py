"""Project a real image into the latent space of a trained generator: find the w (or one w per layer) and the noise
maps that reproduce it.

    python project.py --target photo.jpg                          # W, 1000 steps, latest network under runs/
    python project.py --target photo.jpg --space w+ --video       # one w per style layer, plus a video of the steps
    python project.py --target a.png b.png --steps 500 --outdir out/proj
    python project.py --bench --steps 500                         # seconds per projection on this machine

The optimisation is the StyleGAN2 paper's projector (Karras et al. 2020, Sec. 5 and Appendix D): start at w_avg,
optimise w and every noise map with Adam, the learning rate ramped up over the first 5 % of the steps and cosine
ramped down over the last 25 %, noise of std 0.05 * std(w) * max(0, 1 - t / 0.75)^2 added to w at step t to explore
early, and the noise maps regularised towards spatially uncorrelated unit noise (weight 1e5) and renormalised after
every step. The loss is the project's LPIPS (metrics.LPIPSDistance, VGG16 v0.1). Departures: the start is the
network's tracked w_avg (the StyleGAN2 code samples 10 000 w for it; the spread of w that scales the w noise is
measured that way here too), and the loss is LPIPS at the network's resolution (upsampled to 32 px below that, as
for PPL) instead of at 256 px. W+ ("--space w+", one w per style layer, Abdal et al. 2019) is an option beside it.

For each target it writes <name>-projected.png, <name>-target-projected.png (target left, projection right),
<name>.npz (the latents: generate.py --latents renders, mixes and edits them) and with --video <name>-steps.<fmt>.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from checkpoint import load_network
from common import (ArgumentParser, UsageError, int_at_least, pick_device, resolve_network, run_cli, seed_type,
                    to_uint8)
from data import square_resize
from faces import render_faces
from generate import prepare_outdir, save_animation, save_png, synthesize
from latents import directions_path, load_directions, save_latents
from metrics import attribute_classifier, lpips_vgg
from model import Generator

# The StyleGAN2 projector's constants (projector.py of NVlabs/stylegan2-ada-pytorch, as described in the paper)
LR = 0.1
LR_RAMPUP = 0.05  # fraction of the steps over which the learning rate rises from 0
LR_RAMPDOWN = 0.25  # fraction of the steps over which it falls back to 0 (cosine)
W_NOISE = 0.05  # initial noise added to w, in units of the spread of w
W_NOISE_RAMP = 0.75  # fraction of the steps after which no noise is added
NOISE_REG_WEIGHT = 1e5
W_STD_SAMPLES = 10_000
DEFAULT_STEPS = 1000
SPACES = ("w", "w+")


def load_target(path: str | Path, resolution: int, channels: int = 3) -> np.ndarray:
    """An image file of any size -> uint8 (R, R, C), centre-cropped to a square and resized as data.py loads
    training images (LANCZOS)."""
    try:
        with Image.open(path) as im:
            im.load()
            arr = square_resize(im, resolution, pad=False)
    except FileNotFoundError:
        raise UsageError(f"target image {path} does not exist: check the path") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise UsageError(f"cannot read {path} as an image ({type(e).__name__}): pass a PNG, JPEG or other image "
                         "file") from None
    if channels == 1:
        arr = np.asarray(Image.fromarray(arr).convert("L"))[..., None]
    return arr


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [-1, 1], the generator's range (inverse of common.to_uint8)."""
    return torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


@torch.no_grad()
def w_spread(G: Generator, num: int = W_STD_SAMPLES, seed: int = 0) -> float:
    """sqrt(E |w - w_avg|^2) over `num` mapped z: the scale of the exploration noise added to w."""
    p = next(G.parameters())
    z = torch.from_numpy(np.random.RandomState(seed).randn(num, G.cfg.z_dim)).to(p.device, p.dtype)
    w = torch.cat([G.w(c) for c in z.split(1000)])
    return float(((w - G.w_avg.to(w.dtype)) ** 2).sum(1).mean().sqrt())


def noise_regularization(noise: list[torch.Tensor]) -> torch.Tensor:
    """Per image (N,): squared autocorrelation at a one-pixel shift, in x and y, of each noise map and of its 2x
    average-pooled versions down to 8x8 (StyleGAN2 Appendix D)."""
    reg = 0
    for v in noise:
        while True:
            reg = reg + (v * torch.roll(v, 1, dims=3)).mean((1, 2, 3)) ** 2 \
                + (v * torch.roll(v, 1, dims=2)).mean((1, 2, 3)) ** 2
            if v.shape[2] <= 8:
                break
            v = F.avg_pool2d(v, 2)
    return reg


_LPIPS: dict = {}


def default_lpips(device) -> torch.nn.Module:
    """metrics.lpips_vgg, built once per device (it takes seconds to load)."""
    key = str(torch.device(device))
    if key not in _LPIPS:
        _LPIPS[key] = lpips_vgg(device)
    return _LPIPS[key]


def learning_rate(t: float, lr: float = LR) -> float:
    """Learning rate at fraction t of the steps: linear warm-up over LR_RAMPUP, cosine fall over LR_RAMPDOWN."""
    ramp = min(1.0, (1.0 - t) / LR_RAMPDOWN)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return lr * ramp * min(1.0, t / LR_RAMPUP)


def project(G: Generator, targets: torch.Tensor, steps: int = DEFAULT_STEPS, space: str = "w", lpips=None,
            seed: int = 0, w_std: float | None = None, progress: bool = True, frames: bool = False,
            callback=None) -> dict:
    """Project target images (N, C, R, R) in [-1, 1] (R = G's resolution) into G's latent space.

    Every image has its own w (or ws) and noise maps; the loss is summed over images, so the images' optimisations
    do not interact (Adam acts per element; only the random draws depend on the batch). `callback(step, lpips (N,))` is called after each step.
    Returns {'ws': (N, num_ws, w_dim), 'noise': per layer (N, 1, r, r) or None, 'lpips': (N,) of the result,
    'frames': uint8 (steps, N, R, R, C) of the images along the way, when frames=True}."""
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}")
    p = next(G.parameters())
    device, dtype = p.device, p.dtype
    trainable = [q for q in G.parameters() if q.requires_grad]
    G.requires_grad_(False)  # only the latents and noise maps take gradients; restored below
    try:
        return _optimise(G, targets, steps, space, lpips, seed, w_std, progress, frames, callback, device, dtype)
    finally:
        for q in trainable:
            q.requires_grad_(True)


def _optimise(G, targets, steps, space, lpips, seed, w_std, progress, frames, callback, device, dtype) -> dict:
    lpips = default_lpips(device) if lpips is None else lpips
    n = len(targets)
    targets = targets.to(device, torch.float32)
    if targets.shape[1] == 1:
        targets = targets.repeat(1, 3, 1, 1)
    w_std = w_spread(G) if w_std is None else w_std
    shape = (n, G.cfg.w_dim) if space == "w" else (n, G.num_ws, G.cfg.w_dim)
    w_opt = G.w_avg.detach().to(dtype).expand(shape).clone().requires_grad_(True)
    gen = torch.Generator().manual_seed(seed)
    noise = [None if v is None else v.to(device, dtype).requires_grad_(True)
             for v in G.synthesis.make_noise(n, seed=seed)]
    maps = [v for v in noise if v is not None]
    opt = torch.optim.Adam([w_opt] + maps, betas=(0.9, 0.999), lr=LR)

    def ws_of(w):
        return w.unsqueeze(1).repeat(1, G.num_ws, 1) if space == "w" else w

    def image(ws):
        img = G.synthesis(ws, noise=noise).float()
        return img.repeat(1, 3, 1, 1) if img.shape[1] == 1 else img

    kept = []
    with tqdm(total=steps, desc="project", unit="step", disable=not progress, leave=False, dynamic_ncols=True) as bar:
        for step in range(steps):
            t = step / steps
            for group in opt.param_groups:
                group["lr"] = learning_rate(t)
            w_noise = torch.randn(w_opt.shape, generator=gen).to(device, dtype)
            w_noise = w_noise * w_std * W_NOISE * max(0.0, 1.0 - t / W_NOISE_RAMP) ** 2
            img = image(ws_of(w_opt + w_noise))
            dist = lpips(img, targets)
            loss = dist.sum() + NOISE_REG_WEIGHT * noise_regularization(maps).sum() if maps else dist.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():  # keep the noise maps at zero mean and unit variance
                for v in maps:
                    v -= v.mean((1, 2, 3), keepdim=True)
                    v /= v.square().mean((1, 2, 3), keepdim=True).sqrt()
            if frames:
                kept.append(to_uint8(img.detach()))
            d = dist.detach().cpu()
            bar.set_postfix(lpips=f"{float(d.mean()):.4f}")
            bar.update(1)
            if callback is not None:
                callback(step, d)
    with torch.no_grad():
        ws = ws_of(w_opt.detach())
        final = lpips(image(ws), targets).cpu()
    out = {"ws": ws, "noise": [None if v is None else v.detach() for v in noise], "lpips": final}
    if frames:
        out["frames"] = np.stack(kept) if kept else np.zeros((0, n) + tuple(targets.shape[2:]) + (3,), np.uint8)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Measurements: projection quality on the synthetic faces, and its speed


def projection_quality(G: Generator, num: int = 20, steps: int = 500, seed: int = 0, unseen_start: int = 1_000_000,
                       batch: int = 10) -> dict:
    """On a network trained on the synthetic faces: project `num` of its own images (seeds 0..num-1, psi 1, const
    noise) in W and in W+, and `num` synthetic faces it never saw (indices from `unseen_start`, beyond any training
    set). Returns per-case median LPIPS and, for generated images, the median |w - w_true| (W+: per layer, mean)."""
    lpips, w_std = lpips_vgg(), w_spread(G)
    seeds = list(range(num))
    w_true = G.w_from_seeds(seeds)
    generated = synthesize(G, G.broadcast(w_true), "const")
    faces = to_tensor(render_faces(np.arange(unseen_start, unseen_start + num), G.cfg.resolution)[0])
    out = {"steps": steps, "num": num, "w_spread": w_std}
    for case, targets, space in [("generated, W", generated, "w"), ("generated, W+", generated, "w+"),
                                 ("unseen faces, W", faces, "w"), ("unseen faces, W+", faces, "w+")]:
        d, dw = [], []
        for i in range(0, num, batch):
            r = project(G, targets[i:i + batch], steps, space, lpips, seed, w_std, progress=True)
            d.append(r["lpips"])
            if case.startswith("generated"):
                dw.append((r["ws"].cpu() - w_true[i:i + batch, None].cpu()).norm(dim=-1).mean(1))
        out[case] = {"lpips_median": float(torch.cat(d).median())}
        if dw:
            out[case]["w_dist_median"] = float(torch.cat(dw).median())
        print(case, json.dumps(out[case]), flush=True)
    return out


def bench(G: Generator, steps: int = 500, batch: int = 1, repeats: int = 2) -> dict:
    """Seconds per projection of `steps` steps (best of `repeats`), one target at a time, on G's device."""
    lpips = lpips_vgg(next(G.parameters()).device)
    w_std = w_spread(G)
    target = torch.zeros(batch, G.cfg.img_channels, G.cfg.resolution, G.cfg.resolution)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        project(G, target, steps, "w", lpips, w_std=w_std, progress=True)
        times.append(time.perf_counter() - t0)
    return {"steps": steps, "batch": batch, "seconds": min(times), "ms_per_step": 1000 * min(times) / steps}


# Attributes whose direction flipped the classifier's label for at least 90 % of 100 seeds at strength 3 on the
# default network (docs/projection.md); tests/test_project.py checks them on a trained network.
EDITABLE = ("eyeglasses", "long_hair", "dark_hair", "pale_skin")


def edit_flip_rates(network: str, num: int = 100, strength: float = 3.0, data: str | None = None) -> dict:
    """For each attribute: edit the w of seeds 0..num-1 (all layers, psi 1) by `strength` towards the label the
    attribute classifier does not give it now, and count how often the label flips. Also the fraction labelled
    present at -strength, 0 and +strength. Needs directions.npz beside the network. The classifier is the one of
    `data` (default: what the network was trained on, as metrics.py's), trained the first time."""
    G = load_network(network).eval()
    dirs = load_directions(directions_path(network), G)
    clf, _ = attribute_classifier(data or G.meta.get("data") or "synthetic", G.cfg.resolution)
    return flip_rates(G, dirs, clf, num, strength)


@torch.no_grad()
def flip_rates(G: Generator, dirs: dict, clf, num: int, strength: float) -> dict:
    ws = G.ws_from_seeds(list(range(num)), psi=1.0)

    def labels(ws):
        img = torch.from_numpy(to_uint8(synthesize(G, ws, "const"))).permute(0, 3, 1, 2)
        return (clf(img) > 0).numpy()

    before = labels(ws)
    out = {}
    for a, name in enumerate(dirs["names"]):
        d = torch.from_numpy(dirs["directions"][a]).float() * float(dirs["stds"][a])
        toward = torch.from_numpy(np.where(before[:, a], -strength, strength)).float()
        flipped = labels(ws + toward[:, None, None] * d)[:, a] != before[:, a]
        out[name] = {"flip": float(flipped.mean()), "present": float(before[:, a].mean()),
                     "present_at_minus": float(labels(ws - strength * d)[:, a].mean()),
                     "present_at_plus": float(labels(ws + strength * d)[:, a].mean())}
    return out


# ----------------------------------------------------------------------------------------------------------------
# Command line


def side_by_side(a: np.ndarray, b: np.ndarray, gap: int = 2) -> np.ndarray:
    """Two uint8 (H, W, C) images on one white canvas, a left, b right."""
    h, w, c = a.shape
    out = np.full((h, 2 * w + gap, c), 255, np.uint8)
    out[:, :w], out[:, w + gap:] = a, b
    return out


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser("project.py", "Project images into a generator's latent space (StyleGAN2 projector).",
                       __doc__.split("\n\n")[1])
    p.add_argument("--target", nargs="+", metavar="IMAGE", help="image files (any size: centre-cropped, resized)")
    p.add_argument("--network", help="network folder or .safetensors file (default: the latest under runs/)")
    p.add_argument("--space", choices=SPACES, default="w", help="w: one w for every layer; w+: one per layer")
    p.add_argument("--steps", type=int_at_least(1), default=DEFAULT_STEPS, help="optimisation steps (default %(default)s)")
    p.add_argument("--seed", type=seed_type, default=0, help="seed of the initial noise maps and the w noise")
    p.add_argument("--outdir", default="out/projections", help="output folder (default %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.add_argument("--video", action="store_true", help="also write an animation of the optimisation")
    p.add_argument("--format", choices=("gif", "webp", "mp4"), default="gif", help="animation format (default gif)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--bench", action="store_true", help="time one projection of --steps steps and print it")
    p.add_argument("--evaluate", action="store_true",
                   help="projection quality on the synthetic faces (a network trained on them): prints JSON")
    p.add_argument("--num", type=int_at_least(1), default=20, help="--evaluate: images per case (default %(default)s)")
    p.add_argument("--edit-rates", action="store_true", help="per attribute, how often a strength-3 edit flips the "
                   "attribute classifier's label (100 seeds; needs directions.npz): prints JSON")
    return p


def main(argv=None) -> list[Path] | dict:
    args = build_parser().parse_args(argv)
    if args.edit_rates:
        r = edit_flip_rates(resolve_network(args.network))
        print(json.dumps(r, indent=2))
        return r
    if not (args.target or args.bench or args.evaluate):
        raise UsageError("pass --target IMAGE (or --bench / --evaluate), e.g. python project.py --target photo.jpg")
    network = resolve_network(args.network)
    G = load_network(network, pick_device(args.device)).eval()
    if args.bench:
        r = bench(G, args.steps)
        print(f"{r['seconds']:.1f} s per {r['steps']}-step projection ({r['ms_per_step']:.1f} ms/step) on "
              f"{next(G.parameters()).device}, {network}")
        return r
    if args.evaluate:
        r = projection_quality(G, args.num, args.steps, args.seed)
        print(json.dumps(r, indent=2))
        return r

    R, C = G.cfg.resolution, G.cfg.img_channels
    images = [load_target(t, R, C) for t in args.target]  # every file is checked before the long optimisation
    outdir = Path(args.outdir)
    stems = [Path(t).stem for t in args.target]
    if len(set(stems)) < len(stems):
        raise UsageError("two targets share a file name: project them one at a time, or rename one")
    suffix = f".{args.format}"
    files = [[outdir / f"{s}-projected.png", outdir / f"{s}-target-projected.png", outdir / f"{s}.npz"]
             + ([outdir / f"{s}-steps{suffix}"] if args.video else []) for s in stems]
    prepare_outdir(outdir, [f for fs in files for f in fs], args.overwrite)

    r = project(G, to_tensor(np.stack(images)), args.steps, args.space, seed=args.seed, frames=args.video)
    projected = to_uint8(G.synthesis(r["ws"], noise=r["noise"]).detach())
    meta = {"network": str(network), "space": args.space, "steps": str(args.steps)}
    for k, (target, stem) in enumerate(zip(args.target, stems)):
        d = float(r["lpips"][k])
        info = {"target": str(target), "space": args.space, "steps": args.steps, "seed": args.seed, "lpips": d,
                "network": str(network)}
        save_png(projected[k], files[k][0], {**meta, "target": str(target), "lpips": f"{d:.4f}"})
        save_png(side_by_side(images[k] if C == 3 else images[k].repeat(3, -1),
                              projected[k] if C == 3 else projected[k].repeat(3, -1)), files[k][1],
                 {**meta, "target": str(target), "layout": "target left, projection right"})
        save_latents(files[k][2], G, r["ws"][k], [None if v is None else v[k:k + 1] for v in r["noise"]], info)
        if args.video:
            frames = np.stack([side_by_side(images[k], f) for f in r["frames"][:, k]])
            save_animation(frames, files[k][3], 30, {**meta, "target": str(target)}, args.overwrite)
        print(f"{target}: LPIPS {d:.4f} -> {', '.join(str(f) for f in files[k])}")
    return [f for fs in files for f in fs]


if __name__ == "__main__":
    run_cli(main)
