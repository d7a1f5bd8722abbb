"""Run by tests/test_train.py under `torchrun --nproc_per_node 2`: a short training run, then each rank writes
what the test compares (a digest of its weights, a fingerprint of its first batch) to OUT/rank<i>.json."""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import train  # noqa: E402
from test_train import tiny_config  # noqa: E402

run_dir, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
summary = train.train(tiny_config(kimg=0.096), run_dir)
# Accelerate must see the processes torchrun started (it needs cpu=True for that without GPUs).
assert summary["world"] == int(os.environ["WORLD_SIZE"]), (summary["world"], os.environ["WORLD_SIZE"])
digest = lambda state: sum(float(v.double().sum()) * (i + 1) for i, v in enumerate(state.values()))
(out_dir / f"rank{summary['rank']}.json").write_text(json.dumps(
    {"G": digest(summary["G"]), "G_ema": digest(summary["G_ema"]), "first_batch": summary["first_batch"],
     "world": summary["world"]}))
