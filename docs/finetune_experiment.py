"""The fine-tuning experiment of docs/finetune.md: a small new domain made from the synthetic faces, fine-tuning
against training from scratch, with and without DiffAugment, at 100 and 500 images.

    python docs/finetune_experiment.py --base runs/00000-synthetic-16-cpu --out /tmp/ft-exp --kimg 2

1. Renders the domain as folders of PNGs, as a user would have them: faces that all wear glasses and a hat, with
   their red and blue channels swapped (blue skin), at 64x64 (train.py resizes them to the network's resolution).
   dom500/ holds 500 faces, dom100/ the first 100 of them, heldout/ 1000 other faces of the same domain.
2. Runs train.py (the user's command line, printed) for every variant below, all at the same --kimg.
3. Scores each final network, and the base network itself, by the Frechet distance between N generated images and
   the held-out faces: in Inception features (FID, --features inception) or, when the Inception network is too slow
   for the machine, in raw pixels downsampled to 8x8 (--features pixels: 192 dimensions).
4. Writes one grid (docs/finetune_grid.png) with a row of samples (fixed seeds) per network, and prints the table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import data  # noqa: E402
import faces  # noqa: E402
import metrics  # noqa: E402
from common import REFERENCE_NETWORK  # noqa: E402
from model import load_network, seed_to_z  # noqa: E402

AUG = "color,translation,cutout"
VARIANTS = {  # name: (training images, --init the base?, extra flags)
    "scratch-500": (500, False, []),
    "ft-500": (500, True, []),
    "ft-500-aug": (500, True, ["--diffaugment", AUG]),
    "ft-100": (100, True, []),
    "ft-100-aug": (100, True, ["--diffaugment", AUG]),
    "ft-100-aug-freezed": (100, True, ["--diffaugment", AUG, "--freeze-d", "1"]),
}


def render_domain(folder: Path, first: int, count: int):
    """Faces first..first+count-1 with glasses and a hat forced on, red and blue swapped, saved as PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(first, first + count):
        path = folder / f"{i:06d}.png"
        if not path.exists():
            img, _ = faces.render_face(i, 64, eyeglasses=True, wearing_hat=True)
            Image.fromarray(np.ascontiguousarray(img[:, :, ::-1])).save(path)


def pixel_features(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> (N, 192): the image box-filtered to 8x8, in [0, 1]."""
    return F.adaptive_avg_pool2d(images.float() / 255, 8).flatten(1)


def score(G, heldout, num_fake: int, num_real: int, features: str, seed: int) -> float:
    feats = pixel_features if features == "pixels" else None
    mu_r, s_r = metrics.real_statistics(heldout, num_real, features=feats, progress=False)
    mu_f, s_f = metrics.fake_statistics(G, num_fake, seed=seed, features=feats, progress=False)
    return metrics.frechet_distance(mu_r, s_r, mu_f, s_f)


def sample_row(G, seeds) -> np.ndarray:
    with torch.no_grad():
        img = G(seed_to_z(seeds, G.cfg.z_dim), noise_mode="const")
    img = (img * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return np.concatenate(list(img), axis=1)


def write_grid(rows: list[tuple[str, np.ndarray]], path: Path, zoom: int = 4):
    font = ImageFont.load_default(size=14)
    label_w = 150
    h, w = rows[0][1].shape[:2]
    grid = Image.new("RGB", (label_w + w * zoom, len(rows) * (h * zoom + 4)), "white")
    draw = ImageDraw.Draw(grid)
    for k, (name, row) in enumerate(rows):
        y = k * (h * zoom + 4)
        grid.paste(Image.fromarray(row).resize((w * zoom, h * zoom), Image.NEAREST), (label_w, y))
        draw.text((4, y + h * zoom // 2 - 8), name, fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default=str(REFERENCE_NETWORK),
                   help="the trained network's run folder (or network folder; default: the reference network that "
                        "ships with the code)")
    p.add_argument("--out", default="/tmp/ft-exp", help="domain folders and runs go here")
    p.add_argument("--kimg", type=float, default=2, help="thousands of images shown in every run")
    p.add_argument("--variants", default=",".join(VARIANTS), help="which runs (default: all)")
    p.add_argument("--jobs", type=int, default=6, help="runs at the same time, one CPU thread each")
    p.add_argument("--features", choices=["inception", "pixels"], default="inception")
    p.add_argument("--num-fake", type=int, default=500)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="one score per seed of the generated images")
    p.add_argument("--num-real", type=int, default=1000)
    p.add_argument("--grid", default=str(ROOT / "docs" / "finetune_grid.png"))
    p.add_argument("--score-only", action="store_true", help="score the runs as they are, train nothing")
    p.add_argument("--score-kimg", type=float, help="score every run's checkpoint at this many kimg (default: the end)")
    args = p.parse_args()
    out = Path(args.out)
    t0 = time.time()
    render_domain(out / "dom500", 100_000, 500)
    render_domain(out / "dom100", 100_000, 100)
    render_domain(out / "heldout", 200_000, 1000)
    print(f"domain rendered in {time.time() - t0:.0f} s")

    base_net = Path(args.base) / "network" if (Path(args.base) / "network").is_dir() else Path(args.base)
    resolution = load_network(base_net).cfg.resolution  # the runs from scratch train a network of this size
    names = [v for v in args.variants.split(",") if v]
    pending, running = ([] if args.score_only else list(names)), {}
    while pending or running:
        while pending and len(running) < args.jobs:
            name = pending.pop(0)
            n, init, extra = VARIANTS[name]
            if any(json.loads(p.read_text()).get("final") for p in (out / "runs").glob(f"*-{name}/network/config.json")):
                continue  # finished by an earlier invocation
            cmd = [sys.executable, "train.py", "--preset", "finetune", "--data", str(out / f"dom{n}"), "--kimg",
                   str(args.kimg), "--outdir", str(out / "runs"), "--name", name, "--threads", "1", "--workers", "0",
                   "--tick-kimg", "0.5", "--snap-kimg", "0.5",
                   *(["--init", args.base] if init else ["--resolution", str(resolution)]), *extra]
            print(" ".join(cmd[1:]), flush=True)
            log = open(out / f"{name}.log", "w")
            running[name] = (subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), time.time())
        for name, (proc, start) in list(running.items()):
            if proc.poll() is not None:
                if proc.returncode:
                    sys.exit(f"{name} failed: see {out / (name + '.log')}")
                print(f"{name} done in {(time.time() - start) / 60:.1f} min", flush=True)
                del running[name]
        time.sleep(2)

    heldout = data.make_dataset(str(out / "heldout"), resolution)
    torch.set_num_threads(2)
    results, rows = {}, [("domain (real)", np.concatenate([heldout[i][0].permute(1, 2, 0).numpy() for i in range(12)], 1))]
    where = f"checkpoints/ckpt-{round(args.score_kimg * 1000):09d}/G_ema" if args.score_kimg else "network"
    nets = [("base (no tuning)", base_net)] + [(n, next((out / "runs").glob(f"*-{n}")) / where) for n in names]
    for name, net in nets:
        G = load_network(net)
        t = time.time()
        results[name] = [score(G, heldout, args.num_fake, args.num_real, args.features, seed) for seed in args.seeds]
        print(f"{name:<22} {args.features} FD " + " ".join(f"{v:9.3f}" for v in results[name]) +
              f"   ({time.time() - t:.0f} s)", flush=True)
        rows.append((name, sample_row(G, range(12))))
    write_grid(rows, Path(args.grid))
    tag = f"{args.features}-{args.score_kimg or 'end'}"
    (out / f"results-{tag}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"grid: {args.grid}")


if __name__ == "__main__":
    main()
