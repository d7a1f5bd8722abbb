"""The floor of FID-N on the synthetic faces: the FID of N *real* faces against the statistics that
`metrics.py --metrics fidNk` compares every network with (the first N faces of the data set). A generator that drew
perfect samples would score about this, not 0: FID of a finite sample is biased upwards.

    python docs/fid_floor.py                  # FID-2k at 32x32: 2,000 faces from index 10,000 against the first 2,000
    python docs/fid_floor.py --res 16 --num 1000

The second set starts at --offset, far enough from 0 that the two sets share no face.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import data  # noqa: E402
import metrics  # noqa: E402
from common import run_cli  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--res", type=int, default=32, help="resolution of the faces (default 32)")
    p.add_argument("--num", type=int, default=2000, help="faces in each set (default 2000: FID-2k)")
    p.add_argument("--offset", type=int, default=10_000, help="index of the second set's first face (default 10000)")
    args = p.parse_args(argv)
    ds = data.make_dataset("synthetic", resolution=args.res)
    if args.offset < args.num or args.offset + args.num > len(ds):
        p.error(f"--offset must be at least --num ({args.num}) and leave {args.num} faces of the {len(ds)}")
    mu_ref, sigma_ref = metrics.real_statistics(ds, args.num)  # the cached statistics every FID here uses
    second = torch.utils.data.Subset(ds, range(args.offset, args.offset + args.num))
    second.name = f"{ds.name}-from{args.offset}"  # real_statistics names its cache file after the data set
    mu, sigma = metrics.real_statistics(second, args.num, use_cache=False)
    fid = metrics.frechet_distance(mu_ref, sigma_ref, mu, sigma)
    print(f"FID of real faces {args.offset}-{args.offset + args.num - 1} against real faces 0-{args.num - 1} "
          f"at {args.res}x{args.res}: {fid:.1f}")


if __name__ == "__main__":
    run_cli(main)
