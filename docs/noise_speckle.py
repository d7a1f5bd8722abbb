"""How much of a network's picture its noise inputs draw: the mean absolute pixel change (0-255) when the same
latents are drawn twice with fresh noise, and when the noise is switched off. Speckle that comes from the noise
inputs changes from one draw to the next; structure that stays with the noise off is the generator's own.

    python docs/noise_speckle.py networks/synthetic32 runs/00000-synthetic-32-cpu/network
    python docs/noise_speckle.py --figure out.png --labels A,B NET_A NET_B   # also their const / none rows, 10 seeds

Used for docs/default-network.md ("Speckle").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import run_cli, to_uint8  # noqa: E402
from generate import compose  # noqa: E402
from model import load_network, seed_to_z  # noqa: E402


def noise_share(G, num: int = 200) -> dict:
    z = seed_to_z(range(num), G.cfg.z_dim)
    torch.manual_seed(0)  # the noise draws: the same figures on every run
    with torch.no_grad():
        a, b, none = (to_uint8(G(z, noise_mode=m)).astype(np.float64) for m in ("random", "random", "none"))
    return {"redraw": float(np.abs(a - b).mean()), "redraw_p99": float(np.percentile(np.abs(a - b), 99)),
            "off": float(np.abs(a - none).mean())}


def figure(nets: dict, path: Path, seeds: int = 10, zoom: int = 3):
    """Each network's seeds with its constant noise and with none, one row each, labelled at the left."""
    rows, labels = [], []
    for label, G in nets.items():
        z = seed_to_z(range(seeds), G.cfg.z_dim)
        with torch.no_grad():
            for mode in ("const", "none"):
                rows.append(list(to_uint8(G(z, noise_mode=mode))))
                labels.append(f"{label}: noise {mode}")
    compose(rows, row_labels=labels, upscale=zoom).save(path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("networks", nargs="+", help="network folders (or run folders)")
    p.add_argument("--num", type=int, default=200, help="latents per network (default 200)")
    p.add_argument("--figure", type=Path, help="also write the const / none rows of each network to this PNG")
    p.add_argument("--labels", help="the figure's name for each network, comma-separated (default: the paths)")
    args = p.parse_args(argv)
    labels = args.labels.split(",") if args.labels else args.networks
    if len(labels) != len(args.networks):
        p.error(f"--labels names {len(labels)} networks, but {len(args.networks)} are given")
    torch.set_grad_enabled(False)
    nets = {}
    for path, label in zip(args.networks, labels):
        G = nets[label] = load_network(path)
        r = noise_share(G, args.num)
        print(f"{path}: fresh noise changes a pixel by {r['redraw']:.2f} on average (99th percentile "
              f"{r['redraw_p99']:.0f}); noise off by {r['off']:.2f}")
    if args.figure:
        figure(nets, args.figure)
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    run_cli(main)
