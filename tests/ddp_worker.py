"""Run by tests/test_train.py under `torchrun --nproc_per_node 2`: a short training run (tiny_config, with the JSON of
settings given as the third argument), then each rank writes what the test compares (a digest of its weights, a
fingerprint of its first batch) to OUT/rank<i>.json, and rank 0 its weights and last gradients to
OUT/rank0.safetensors."""

import json
import os
import sys
from pathlib import Path

from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import train  # noqa: E402
from test_train import tiny_config  # noqa: E402

run_dir, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
settings = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {"kimg": 0.096}
summary = train.train(tiny_config(**settings), run_dir)
# Accelerate must see the processes torchrun started (it needs cpu=True for that without GPUs).
assert summary["world"] == int(os.environ["WORLD_SIZE"]), (summary["world"], os.environ["WORLD_SIZE"])
digest = lambda state: sum(float(v.double().sum()) * (i + 1) for i, v in enumerate(state.values()))
(out_dir / f"rank{summary['rank']}.json").write_text(json.dumps(
    {"G": digest(summary["G"]), "G_ema": digest(summary["G_ema"]), "first_batch": summary["first_batch"],
     "world": summary["world"]}))
if summary["rank"] == 0:
    save_file({f"{name}/{k}": v.contiguous() for name in ("G", "D", "G_ema", "grad_G", "grad_D")
               for k, v in summary[name].items()}, str(out_dir / "rank0.safetensors"))
