"""The trainer: schedule, losses, short real runs, resume == uninterrupted, NaN handling, 2 processes on gloo."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import train
from common import UsageError
from conftest import ROOT, TINY
from model import Discriminator, load_network


def tiny_config(**overrides) -> train.TrainConfig:
    """The CPU preset's training settings on the tiny 16x16 network, sized for seconds."""
    cfg = train.make_config(train.parse_args(["--kimg", "0.192", "--start-res", "8", "--fade-kimg", "0.064",
                                              "--stable-kimg", "0.032", "--batch", "16", "--workers", "0",
                                              "--tick-kimg", "0.064", "--snap-kimg", "0.096"]))
    cfg.network = TINY.to_dict()
    cfg.data = "synthetic:256"
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


def test_schedule_is_the_official_progression():
    cfg = tiny_config(kimg=1, start_res=4, stable_kimg=0.1, fade_kimg=0.2, batch={4: 8, 8: 16, 16: 32}, base_lr=0.001,
                      lr={16: 0.002})
    phases = [train.schedule(n, cfg) for n in (0, 99, 100, 200, 299, 300, 399, 400, 500, 600, 5000)]
    assert [(p.res, round(p.alpha, 3)) for p in phases] == [
        (4, 1), (4, 1), (8, 0), (8, 0.5), (8, 0.995), (8, 1), (8, 1), (16, 0), (16, 0.5), (16, 1), (16, 1)]
    assert [p.batch for p in phases[:3]] == [8, 8, 16] and phases[-1].lr == 0.002 and phases[0].lr == 0.001
    assert phases[-1].end_nimg is None


def test_r1_penalty_matches_closed_form_and_is_scale_invariant():
    # D(x) = <a, x> has gradient a everywhere, so the R1 penalty is |a|^2.
    a = torch.randn(3, 8, 8)
    x = torch.randn(5, 3, 8, 8, requires_grad=True)
    logits = (x * a).sum(dim=(1, 2, 3))
    assert torch.allclose(train.r1_penalty(logits, x), a.square().sum(), rtol=1e-5)
    logits = (x * a).sum(dim=(1, 2, 3))
    assert torch.allclose(train.r1_penalty(logits, x, scale=1024.0), a.square().sum(), rtol=1e-5)


def test_r1_under_bf16_autocast_close_to_fp32():
    torch.manual_seed(0)
    D = Discriminator(TINY)
    x = torch.randn(8, 3, 16, 16, requires_grad=True)
    ref = train.r1_penalty(D(x), x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = train.r1_penalty(D(x).float(), x)
    assert torch.isfinite(low) and abs(low.item() - ref.item()) / ref.item() < 0.1


def test_prepare_reals_blends_across_the_fade():
    u8 = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    full = train.prepare_reals(u8, train.Phase(16, 1.0, 2, 1e-3, None), mirror=False)
    assert torch.allclose(full, u8.float() / 127.5 - 1)
    start = train.prepare_reals(u8, train.Phase(16, 0.0, 2, 1e-3, None), mirror=False)
    low = train.prepare_reals(u8, train.Phase(8, 1.0, 2, 1e-3, None), mirror=False)
    assert torch.allclose(start, low.repeat_interleave(2, 2).repeat_interleave(2, 3), atol=1e-6)


def test_short_run_on_synthetic_faces_writes_everything(tmp_path):
    run = tmp_path / "run"
    summary = train.train(tiny_config(), run)
    assert summary["cur_nimg"] >= 192
    for f in ("config.json", "reals.png", "network/model.safetensors", "network/config.json"):
        assert (run / f).is_file(), f
    assert list((run / "samples").glob("fakes*.png")) and list((run / "logs").rglob("events.out.tfevents*"))
    ckpts = sorted((run / "checkpoints").glob("ckpt-*"))
    assert len(ckpts) == 2 and not list((run / "checkpoints").glob("*.tmp"))  # rotated, renamed into place
    G = load_network(run / "network")
    assert G.meta["final"] is True and G.meta["kimg"] == pytest.approx(0.192)
    assert G.w_avg.abs().sum() > 0  # w_avg was tracked
    assert set(summary["sec_per_kimg"]) == {8, 16}
    # the EMA generator is not the raw one
    assert not torch.equal(summary["G_ema"]["synthesis.torgb.b16.conv.weight"], summary["G"]["synthesis.torgb.b16.conv.weight"])


def test_resume_equals_uninterrupted_run(tmp_path):
    full = train.train(tiny_config(), tmp_path / "a")
    half = train.train(tiny_config(kimg=0.096), tmp_path / "b")  # stops mid-fade, at a checkpoint
    assert half["cur_nimg"] == 96
    resumed = train.train(tiny_config(), tmp_path / "b", resume=train.latest_checkpoint(tmp_path / "b"))
    for k, v in full["G_ema"].items():
        assert torch.equal(v, resumed["G_ema"][k]), k
    for k, v in full["G"].items():
        assert torch.equal(v, resumed["G"][k]), k


def test_nan_loss_stops_with_clear_message_and_keeps_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_loss = train.g_nonsaturating_loss

    def loss_that_breaks(logits):  # the fourth generator step produces NaN
        calls["n"] += 1
        return real_loss(logits) * (float("nan") if calls["n"] >= 4 else 1.0)

    monkeypatch.setattr(train, "g_nonsaturating_loss", loss_that_breaks)
    args = ["--kimg", "0.4", "--resolution", "16", "--batch", "16", "--workers", "0", "--data", "synthetic:64",
            "--snap-kimg", "0.016", "--tick-kimg", "0.016", "--outdir", str(tmp_path)]
    with pytest.raises(UsageError, match=r"loss became .*nan.* the last good checkpoint is .*ckpt-000000048"):
        train.main(args)
    run = next(tmp_path.iterdir())
    good = train.latest_checkpoint(run)
    assert json.loads((good / "state.json").read_text())["cur_nimg"] == 48
    G = load_network(run / "network")
    assert all(torch.isfinite(v).all() for v in G.state_dict().values())


def test_cli_on_a_folder_of_pngs(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.RandomState(0)
    for i in range(40):
        Image.fromarray(rng.randint(0, 255, (24, 20, 3), np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "runs"
    proc = subprocess.run([sys.executable, "train.py", "--data", str(folder), "--resolution", "8", "--kimg", "0.064",
                           "--batch", "8", "--workers", "0", "--outdir", str(out), "--tick-kimg", "0.032",
                           "--snap-kimg", "0.064", "--pad", "--cache-dir", str(tmp_path / "cache")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # what `accelerate launch` exports by default
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "sec/kimg per resolution" in proc.stdout
    # ...and the trainer still uses every core it may (a single process here)
    assert f"{len(os.sched_getaffinity(0))} CPU threads per process" in proc.stdout, proc.stdout[-500:]
    run = next(out.iterdir())
    assert run.name.startswith("00000-imgs-8") and (run / "network" / "model.safetensors").is_file()
    # decoded once, padded, into --cache-dir; the network records what it was trained on, for metrics.py
    assert [p.name.endswith("-8-pad.u8") for p in (tmp_path / "cache").glob("*.u8")] == [True]
    meta = json.loads((run / "network" / "config.json").read_text())
    assert meta["data"] == str(folder) and meta["pad"] is True


def test_cpu_threads_share_the_cores_among_local_processes(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert train.cpu_threads() == cores
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(2 * cores))  # more processes than cores: one thread each
    assert train.cpu_threads() == 1
    assert train.cpu_threads(3) == 3  # --threads wins
    with pytest.raises(UsageError, match="--threads"):
        train.cpu_threads(-1)


def test_cli_bad_input_is_one_line(tmp_path):
    for args, msg in ((["--data", str(tmp_path / "nope")], "does not exist"),
                      (["--resolution", "48"], "power of two"),
                      (["--resume", str(tmp_path)], "not a run folder")):
        proc = subprocess.run([sys.executable, "train.py", "--outdir", str(tmp_path / "o"), *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert msg in proc.stderr and proc.stderr.strip().count("\n") == 0, proc.stderr


def test_two_cpu_processes_agree_and_read_different_data(tmp_path):
    """Two processes on gloo, launched as a user would (torchrun): Accelerate sees MULTI_CPU."""
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           str(29500 + os.getpid() % 1000), "tests/ddp_worker.py", str(run), str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{i}.json").read_text()) for i in (0, 1))
    assert r0["world"] == r1["world"] == 2
    assert r0["G"] == r1["G"] and r0["G_ema"] == r1["G_ema"]  # identical generator weights on both ranks
    assert r0["first_batch"] != r1["first_batch"]  # each rank read its own shard of the data
    assert (run / "network" / "model.safetensors").is_file()
    assert len(list((run / "logs").rglob("events.out.tfevents*"))) == 1  # one set of logs, from the main process
    assert len(list((run / "samples").glob("*.png"))) == 2  # one sample grid per tick, not one per process
    assert len(list((run / "checkpoints").glob("ckpt-*/random_states_*.pkl"))) == 2  # every rank saved its RNG state
