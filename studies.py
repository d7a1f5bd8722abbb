"""The smaller studies behind docs/ (the disentanglement study is ablation.py, speeds and memory are bench.py):

    python studies.py fid-floor                          # FID-2k of real faces against real faces (the floor)
    python studies.py noise-speckle NETWORK [NETWORK...] --figure out.png   # what the noise inputs draw
    python studies.py finetune --base runs/00000-synthetic-16-cpu --kimg 2  # fine-tuning a new domain

fid-floor: the FID of N *real* faces against the statistics that `metrics.py --metrics fidNk` compares every
network with (the first N synthetic faces). A generator that drew perfect samples would score about this, not 0:
the FID of a finite sample is biased upwards. The second set starts at --offset, so the two share no face.

noise-speckle: how much of a network's picture its noise inputs draw: the mean absolute pixel change (0-255) when
the same latents are drawn twice with fresh noise, and when the noise is switched off. Speckle that comes from the
noise inputs changes from one draw to the next; structure that stays with the noise off is the generator's own.
Used for docs/default-network.md.

finetune: the experiment of docs/finetune.md. A small new domain made from the synthetic faces (all wear glasses
and a hat, red and blue swapped: blue skin) is rendered as folders of 64x64 PNGs (dom500/, dom100/, heldout/);
train.py runs every variant (the user's command line, printed), fine-tuning against training from scratch, with and
without DiffAugment and FreezeD; each final network and the base are scored by the Frechet distance of generated
images to the held-out faces, in Inception features or (--features pixels) in 8x8 pixels, and one grid has a row of
samples per network.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import faces
import metrics
from checkpoint import load_network
from common import REFERENCE_NETWORK, ArgumentParser, UsageError, int_at_least, positive_float, run_cli, to_uint8
from data import make_dataset
from generate import compose
from model import seed_to_z

ROOT = Path(__file__).resolve().parent
FEATURES = {"inception": None, "pixels": metrics.pixel_features}  # None: metrics' own Inception-v3


# ----------------------------------------------------------------------------------------------------------------
# fid-floor


def fid_floor(res: int = 32, num: int = 2000, offset: int = 10_000, features: str = "inception") -> float:
    ds = make_dataset("synthetic", resolution=res)
    if offset < num or offset + num > len(ds):
        raise UsageError(f"--offset must be at least --num ({num}) and leave {num} faces of the {len(ds)}")
    feats = FEATURES[features]
    mu_ref, sigma_ref = metrics.real_statistics(ds, num, features=feats)  # the cached statistics FID-N uses
    second = torch.utils.data.Subset(ds, range(offset, offset + num))
    second.name = f"{ds.name}-from{offset}"  # real_statistics names its cache file after the data set
    mu, sigma = metrics.real_statistics(second, num, use_cache=False, features=feats)
    fid = metrics.frechet_distance(mu_ref, sigma_ref, mu, sigma)
    print(f"FID ({features}) of real faces {offset}-{offset + num - 1} against real faces 0-{num - 1} at "
          f"{res}x{res}: {fid:.1f}")
    return fid


# ----------------------------------------------------------------------------------------------------------------
# noise-speckle


@torch.no_grad()
def noise_share(G, num: int = 200) -> dict:
    z = seed_to_z(range(num), G.cfg.z_dim)
    torch.manual_seed(0)  # the noise draws: the same figures on every run
    a, b, none = (to_uint8(G(z, noise_mode=m)).astype(np.float64) for m in ("random", "random", "none"))
    return {"redraw": float(np.abs(a - b).mean()), "redraw_p99": float(np.percentile(np.abs(a - b), 99)),
            "off": float(np.abs(a - none).mean())}


@torch.no_grad()
def speckle_figure(nets: dict, path: Path, seeds: int = 10, zoom: int = 3) -> None:
    """Each network's seeds with its constant noise and with none, one row each, labelled at the left."""
    rows, labels = [], []
    for label, G in nets.items():
        z = seed_to_z(range(seeds), G.cfg.z_dim)
        for mode in ("const", "none"):
            rows.append(list(to_uint8(G(z, noise_mode=mode))))
            labels.append(f"{label}: noise {mode}")
    compose(rows, row_labels=labels, upscale=zoom).save(path)


def noise_speckle(networks: list[str], num: int = 200, figure: Path | None = None, labels: list[str] | None = None
                  ) -> dict:
    labels = labels or networks
    if len(labels) != len(networks):
        raise UsageError(f"--labels names {len(labels)} networks, but {len(networks)} are given")
    nets, out = {}, {}
    for path, label in zip(networks, labels):
        G = nets[label] = load_network(path)
        r = out[label] = noise_share(G, num)
        print(f"{path}: fresh noise changes a pixel by {r['redraw']:.2f} on average (99th percentile "
              f"{r['redraw_p99']:.0f}); noise off by {r['off']:.2f}")
    if figure:
        speckle_figure(nets, figure)
        print(f"figure: {figure}")
    return out


# ----------------------------------------------------------------------------------------------------------------
# finetune

AUG = "color,translation,cutout"
VARIANTS = {  # name: (training images, --init the base?, extra train.py options)
    "scratch-500": (500, False, []),
    "ft-500": (500, True, []),
    "ft-500-aug": (500, True, ["--diffaugment", AUG]),
    "ft-100": (100, True, []),
    "ft-100-aug": (100, True, ["--diffaugment", AUG]),
    "ft-100-aug-freezed": (100, True, ["--diffaugment", AUG, "--freeze-d", "1"]),
}


def render_domain(folder: Path, first: int, count: int) -> None:
    """Faces first..first+count-1 with glasses and a hat forced on, red and blue swapped, saved as PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(first, first + count):
        path = folder / f"{i:06d}.png"
        if not path.exists():
            img, _ = faces.render_face(i, 64, eyeglasses=True, wearing_hat=True)
            Image.fromarray(np.ascontiguousarray(img[:, :, ::-1])).save(path)


def train_variants(names: list[str], base: str, out: Path, kimg: float, resolution: int, jobs: int) -> None:
    """train.py for every variant not finished by an earlier invocation, `jobs` at a time, one thread each."""
    pending, running = list(names), {}
    while pending or running:
        while pending and len(running) < jobs:
            name = pending.pop(0)
            n, init, extra = VARIANTS[name]
            if any(json.loads(p.read_text()).get("final") for p in (out / "runs").glob(f"*-{name}/network/config.json")):
                continue
            cmd = [sys.executable, "train.py", "--preset", "finetune", "--data", str(out / f"dom{n}"), "--kimg",
                   str(kimg), "--outdir", str(out / "runs"), "--name", name, "--threads", "1", "--workers", "0",
                   "--tick-kimg", "0.5", "--snap-kimg", "0.5",
                   *(["--init", base] if init else ["--resolution", str(resolution)]), *extra]
            print(" ".join(cmd[1:]), flush=True)
            log = open(out / f"{name}.log", "w")
            running[name] = (subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), time.time())
        for name, (proc, start) in list(running.items()):
            if proc.poll() is not None:
                if proc.returncode:
                    raise UsageError(f"{name} failed: see {out / (name + '.log')}")
                print(f"{name} done in {(time.time() - start) / 60:.1f} min", flush=True)
                del running[name]
        time.sleep(0.5)


def finetune(base: str, out: Path, kimg: float = 2, names: list[str] | None = None, jobs: int = 6,
             features: str = "inception", num_fake: int = 500, num_real: int = 1000, seeds=(0, 1),
             grid: Path = ROOT / "docs" / "finetune_grid.png", score_only: bool = False,
             score_kimg: float | None = None) -> dict:
    names = names or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise UsageError(f"unknown variant {unknown[0]!r}: choose from {', '.join(VARIANTS)}")
    t0 = time.time()
    render_domain(out / "dom500", 100_000, 500)
    render_domain(out / "dom100", 100_000, 100)
    render_domain(out / "heldout", 200_000, num_real)
    print(f"domain rendered in {time.time() - t0:.0f} s")
    base_net = Path(base) / "network" if (Path(base) / "network").is_dir() else Path(base)
    resolution = load_network(base_net).cfg.resolution  # the runs from scratch train a network of this size
    if not score_only:
        train_variants(names, base, out, kimg, resolution, jobs)

    heldout = make_dataset(str(out / "heldout"), resolution)
    feats = FEATURES[features]
    mu_r, s_r = metrics.real_statistics(heldout, num_real, features=feats, progress=False)
    results = {}
    rows, labels = [[heldout[i][0].permute(1, 2, 0).numpy() for i in range(12)]], ["domain (real)"]
    where = f"checkpoints/ckpt-{round(score_kimg * 1000):09d}/G_ema" if score_kimg else "network"
    nets = [("base (no tuning)", base_net)] + [(n, next((out / "runs").glob(f"*-{n}")) / where) for n in names]
    for name, net in nets:
        G, t = load_network(net), time.time()
        results[name] = []
        for seed in seeds:
            mu_f, s_f = metrics.fake_statistics(G, num_fake, seed=seed, features=feats, progress=False)
            results[name].append(metrics.frechet_distance(mu_r, s_r, mu_f, s_f))
        print(f"{name:<22} {features} FD " + " ".join(f"{v:9.3f}" for v in results[name]) +
              f"   ({time.time() - t:.0f} s)", flush=True)
        with torch.no_grad():
            rows.append(list(to_uint8(G(seed_to_z(range(12), G.cfg.z_dim), noise_mode="const"))))
        labels.append(name)
    grid.parent.mkdir(parents=True, exist_ok=True)
    compose(rows, row_labels=labels, upscale=4).save(grid)
    (out / f"results-{features}-{score_kimg or 'end'}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"grid: {grid}")
    return results


# ----------------------------------------------------------------------------------------------------------------
# Command line


def parse_args(argv=None):
    p = ArgumentParser("studies.py", "The smaller studies behind docs/: the FID floor, noise speckle, fine-tuning.",
                       __doc__.split("\n\n")[1])
    sub = p.add_subparsers(dest="study", required=True, metavar="STUDY")
    f = sub.add_parser("fid-floor", help="FID of real faces against real faces")
    f.add_argument("--res", type=int_at_least(16), default=32, help="resolution of the faces (default 32)")
    f.add_argument("--num", type=int_at_least(2), default=2000, help="faces in each set (default 2000: FID-2k)")
    f.add_argument("--offset", type=int_at_least(0), default=10_000, help="the second set's first face (10000)")
    f.add_argument("--features", choices=FEATURES, default="inception", help="inception (FID) or 8x8 pixels")
    n = sub.add_parser("noise-speckle", help="what the noise inputs draw")
    n.add_argument("networks", nargs="+", help="network folders (or run folders)")
    n.add_argument("--num", type=int_at_least(1), default=200, help="latents per network (default 200)")
    n.add_argument("--figure", type=Path, help="also write the const / none rows of each network to this PNG")
    n.add_argument("--labels", help="the figure's name for each network, comma-separated (default: the paths)")
    t = sub.add_parser("finetune", help="the fine-tuning experiment of docs/finetune.md")
    t.add_argument("--base", default=str(REFERENCE_NETWORK),
                   help="the trained network's run or network folder (default: the reference network)")
    t.add_argument("--out", type=Path, default=Path("/tmp/ft-exp"), help="domain folders and runs go here")
    t.add_argument("--kimg", type=positive_float, default=2, help="thousands of images shown in every run")
    t.add_argument("--variants", default=",".join(VARIANTS), help="which runs, comma-separated (default: all)")
    t.add_argument("--jobs", type=int_at_least(1), default=6, help="runs at the same time, one CPU thread each")
    t.add_argument("--features", choices=FEATURES, default="inception")
    t.add_argument("--num-fake", type=int_at_least(2), default=500)
    t.add_argument("--num-real", type=int_at_least(2), default=1000)
    t.add_argument("--seeds", type=int_at_least(0), nargs="+", default=[0, 1],
                   help="one score per seed of the generated images")
    t.add_argument("--grid", type=Path, default=ROOT / "docs" / "finetune_grid.png")
    t.add_argument("--score-only", action="store_true", help="score the runs as they are, train nothing")
    t.add_argument("--score-kimg", type=positive_float, help="score each run's checkpoint at this kimg (default: end)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.study == "fid-floor":
        return fid_floor(args.res, args.num, args.offset, args.features)
    if args.study == "noise-speckle":
        return noise_speckle(args.networks, args.num, args.figure, args.labels.split(",") if args.labels else None)
    return finetune(args.base, args.out, args.kimg, [v for v in args.variants.split(",") if v], args.jobs,
                    args.features, args.num_fake, args.num_real, args.seeds, args.grid, args.score_only,
                    args.score_kimg)


if __name__ == "__main__":
    run_cli(main)
