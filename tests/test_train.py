"""The trainer: schedule, losses, short real runs, resume == uninterrupted, NaN handling, 2 processes on gloo."""

import dataclasses
import errno
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import checkpoint
import metrics
import train
from common import UsageError
from conftest import ROOT, TINY, write_random_pngs
from model import Discriminator, Generator, NetworkConfig, load_network


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


@pytest.mark.parametrize("res,alpha", [(4, 1.0), (8, 0.3), (8, 1.0), (16, 0.6), (16, 1.0)])
def test_r1_weight_equals_the_official_penalty_on_tiled_reals(res, alpha):
    """The official trainer tiles the reals up to the final resolution and takes R1 on those pixels; its D averages
    them back down. Our R1 at `res` with `r1_weight(res)` must equal that penalty times gamma."""
    torch.manual_seed(res)
    D, cfg = Discriminator(TINY), tiny_config(gamma=10.0)
    f = TINY.resolution // res
    x = torch.randn(4, 3, res, res)
    full = x.repeat_interleave(f, 2).repeat_interleave(f, 3).requires_grad_(True)  # "UpscaleLOD"
    official = train.r1_penalty(D(F.avg_pool2d(full, f) if f > 1 else full, res=res, alpha=alpha), full)
    x.requires_grad_(True)
    ours = train.r1_penalty(D(x, res=res, alpha=alpha), x)
    assert official.item() > 0
    assert (ours * cfg.r1_weight(res)).item() == pytest.approx((official * cfg.gamma).item(), rel=1e-4)
    cfg.r1_scaling = "plain"
    assert cfg.r1_weight(res) == cfg.gamma


@pytest.mark.parametrize("prob", [1.0, 0.0])
def test_style_mixing_reaches_the_fakes_that_D_sees(tmp_path, monkeypatch, prob):
    """The official G mixes in every training call, D's fakes included (G_style, is_training=True)."""
    calls = []
    forward = Generator.forward

    def recording(self, z, *args, **kwargs):
        if kwargs.get("noise_mode", "random") == "random":  # training calls (sample grids use const noise)
            calls.append((torch.is_grad_enabled(), kwargs.get("mix_z") is not None))
        return forward(self, z, *args, **kwargs)

    monkeypatch.setattr(Generator, "forward", recording)
    train.train(tiny_config(kimg=0.064, style_mixing=prob), tmp_path / "run")
    d_calls = [mixed for grad, mixed in calls if not grad]
    g_calls = [mixed for grad, mixed in calls if grad]
    assert len(d_calls) == len(g_calls) == 4  # 64 images in batches of 16
    assert all(d_calls) and all(g_calls) if prob == 1.0 else not any(d_calls + g_calls)


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
    resumed = train.train(tiny_config(), tmp_path / "b", resume=checkpoint.latest_checkpoint(tmp_path / "b"))
    for k, v in full["G_ema"].items():
        assert torch.equal(v, resumed["G_ema"][k]), k
    for k, v in full["G"].items():
        assert torch.equal(v, resumed["G"][k]), k


def test_steps_taken_counts_the_iterations_of_the_loop():
    cfg = tiny_config(kimg=1.0, batch={8: 16, 16: 12})  # batches that overshoot the phase ends
    nimg, step = 0, 0
    while nimg < 1000:
        assert train.steps_taken(nimg, cfg) == step, nimg
        nimg, step = nimg + train.schedule(nimg, cfg).batch, step + 1


def test_resume_with_lazy_r1_equals_uninterrupted_run(tmp_path):
    """R1 every 4th step: a run resumed after 6 steps applies it on the steps the uninterrupted run does."""
    full = train.train(tiny_config(r1_interval=4), tmp_path / "a")
    train.train(tiny_config(r1_interval=4, kimg=0.096), tmp_path / "b")
    resumed = train.train(tiny_config(r1_interval=4), tmp_path / "b", resume=checkpoint.latest_checkpoint(tmp_path / "b"))
    for name in ("G", "D"):
        for k, v in full[name].items():
            assert torch.equal(v, resumed[name][k]), (name, k)


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
    good = checkpoint.latest_checkpoint(run)
    assert json.loads((good / "state.json").read_text())["cur_nimg"] == 48
    G = load_network(run / "network")
    assert all(torch.isfinite(v).all() for v in G.state_dict().values())


def test_cli_on_a_folder_of_pngs(tmp_path):
    folder = write_random_pngs(tmp_path / "imgs", 40, 24, 20)
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


def test_auto_precision_follows_the_cpu_flags(tmp_path, monkeypatch):
    fast, plain = tmp_path / "fast", tmp_path / "plain"
    fast.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile\n")
    plain.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    assert train.native_bf16(True, str(fast)) == "this CPU has AVX512-BF16"
    assert train.native_bf16(True, str(plain)) == "" and train.native_bf16(True, str(tmp_path / "none")) == ""
    cfg = train.TrainConfig(mixed_precision="auto", cpu=True)
    real = train.native_bf16
    for info, expected in ((fast, "bf16"), (plain, "no")):
        monkeypatch.setattr(train, "native_bf16", lambda on_cpu, info=info: real(on_cpu, str(info)))
        assert train.resolve_precision(cfg) == expected
    assert train.resolve_precision(train.TrainConfig(mixed_precision="fp16")) == "fp16"  # explicit: as given
    # The cpu preset asks for auto; the paper presets stay in fp32; config.json records the resolved value.
    monkeypatch.setattr(train, "native_bf16", lambda on_cpu: "this CPU has AVX512-BF16")
    assert train.make_config(train.parse_args(["--cpu"])).mixed_precision == "bf16"
    assert train.make_config(train.parse_args(["--preset", "ffhq256", "--cpu"])).mixed_precision == "no"
    monkeypatch.setattr(train, "native_bf16", lambda on_cpu: "")
    assert train.make_config(train.parse_args(["--cpu"])).mixed_precision == "no"


def test_cli_bad_input_is_one_line(tmp_path):
    damaged = tmp_path / "damaged-run"  # a run whose only checkpoint lost its files
    (damaged / "checkpoints" / "ckpt-000000064").mkdir(parents=True)
    (damaged / "config.json").write_text(json.dumps(dataclasses.asdict(tiny_config())))
    (damaged / "checkpoints" / "ckpt-000000064" / "model.safetensors").write_bytes(b"\0" * 10)
    for args, msg in ((["--data", str(tmp_path / "nope")], "does not exist"),
                      (["--resolution", "48"], "power of two"),
                      (["--resume", str(tmp_path)], "not a run folder"),
                      (["--resume", str(damaged)], "no intact checkpoint in")):
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


def test_batch_gpu_takes_the_step_of_that_many_processes(tmp_path):
    """--batch-gpu 4 with a global batch of 8 in one process against two processes of 4 each (torchrun, gloo):
    the same gradients and weights after two steps of a fade-in, with R1, style mixing, mirrored reals and DiffAugment
    (every random draw of a slice is the one its process would make)."""
    settings = dict(kimg=0.016, start_res=8, stable_kimg=0, fade_kimg=0.016, batch=train.every_resolution(8),
                    r1_interval=1, mirror=True, diffaugment="translation", base_lr=1e-4, mixed_precision="no")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           str(29600 + os.getpid() % 1000), "tests/ddp_worker.py", str(tmp_path / "two"),
                           str(tmp_path), json.dumps(settings)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = load_file(str(tmp_path / "rank0.safetensors"))
    one = train.train(tiny_config(**settings, batch_gpu=4), tmp_path / "one", log_fn=lambda *a: None)
    assert one["world"] == 1 and one["cur_nimg"] == 16
    for name in ("grad_G", "grad_D"):  # the gradients of the last step: the sum over slices is DDP's mean
        keys = sorted(one[name])
        a = torch.cat([one[name][k].flatten() for k in keys])
        b = torch.cat([two[f"{name}/{k}"].flatten() for k in keys])
        assert (a - b).norm() / b.norm() < 1e-5, name
    for name in ("G", "D", "G_ema"):  # Adam's first steps move each weight by about lr, whatever the gradient
        for k, v in one[name].items():
            assert torch.allclose(v, two[f"{name}/{k}"], atol=5e-5), (name, k)


def test_batch_gpu_run_resumes_bit_identically(tmp_path):
    full = train.train(tiny_config(batch_gpu=8), tmp_path / "a")
    train.train(tiny_config(kimg=0.096, batch_gpu=8), tmp_path / "b")
    ckpt = checkpoint.latest_checkpoint(tmp_path / "b")
    assert (ckpt / "process_state_0.safetensors").is_file()  # the second slice's random stream
    resumed = train.train(tiny_config(batch_gpu=8), tmp_path / "b", resume=ckpt)
    for name in ("G", "D", "G_ema"):
        for k, v in full[name].items():
            assert torch.equal(v, resumed[name][k]), (name, k)
    other = train.train(tiny_config(), tmp_path / "c")  # slices draw their own noise: another run, not the same
    assert any(not torch.equal(v, other["G"][k]) for k, v in full["G"].items())


def test_batch_gpu_must_divide_the_batch(tmp_path):
    with pytest.raises(UsageError, match="--batch-gpu 5 does not divide the 16 images per process"):
        train.train(tiny_config(batch_gpu=5, kimg=0.016), tmp_path / "run", log_fn=lambda *a: None)


# ----------------------------------------------------------------------------------------------------------------
# Damaged checkpoints and full disks


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    """A run stopped at 128 images with checkpoints at 64 and 128 (the tiny config, snapshots every 64 images)."""
    run = tmp_path_factory.mktemp("ckpts") / "run"
    train.train(tiny_config(kimg=0.128, snap_kimg=0.064), run)
    assert [c.name for c in checkpoint.list_checkpoints(run)] == ["ckpt-000000064", "ckpt-000000128"]
    return run


def _copy_run(run, dest):
    shutil.copytree(run, dest)
    return dest


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def _flip_last_byte_of_first_member(data: bytes) -> bytes:
    """One flipped bit inside a zip member's data: only its CRC-32 can tell."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        info = z.infolist()[0]
    # local header: 30 bytes + name + extra field; the member's data follows
    h = info.header_offset
    name_len, extra_len = int.from_bytes(data[h + 26:h + 28], "little"), int.from_bytes(data[h + 28:h + 30], "little")
    at = h + 30 + name_len + extra_len + info.compress_size - 1
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1:]


@pytest.mark.parametrize("name, damage, problem", [
    ("model.safetensors", _truncate, "unreadable"),
    ("model_1.safetensors", lambda p: p.unlink(), "missing"),
    ("G_ema/model.safetensors", lambda p: _truncate(p, 0.99), "unreadable"),
    ("optimizer.bin", _truncate, "unreadable"),
    ("optimizer_1.bin", lambda p: p.write_bytes(b"\0" * 100), "unreadable"),
    ("optimizer_1.bin", lambda p: p.write_bytes(_flip_last_byte_of_first_member(p.read_bytes())), "checksum"),
    ("random_states_0.pkl", _truncate, "unreadable"),
    ("random_states_0.pkl", lambda p: torch.save({"step": 0}, p), "lacks random_state"),
    ("state.json", lambda p: p.write_text('{"cur_nimg": 12'), "unreadable"),
])
def test_verify_checkpoint_names_the_damaged_file(two_checkpoints, tmp_path, name, damage, problem):
    ckpt = _copy_run(two_checkpoints, tmp_path / "run") / "checkpoints" / "ckpt-000000128"
    assert checkpoint.verify_checkpoint(ckpt) == {}
    damage(ckpt / name)
    problems = checkpoint.verify_checkpoint(ckpt)
    assert list(problems) == [name] and problem in problems[name], problems


def test_pickled_code_in_a_checkpoint_is_not_run(two_checkpoints, tmp_path):
    """The optimizer and RNG files are pickles: verifying them must not execute what they contain."""
    ckpt = _copy_run(two_checkpoints, tmp_path / "run") / "checkpoints" / "ckpt-000000128"
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (marker.write_text, ("pwned",))

    torch.save({"random_state": Payload()}, ckpt / "random_states_0.pkl")
    problems = checkpoint.verify_checkpoint(ckpt)
    assert "random_states_0.pkl" in problems and not marker.exists()


def test_truncated_model_falls_back_to_the_previous_checkpoint_bit_identically(two_checkpoints, tmp_path, capsys):
    damaged = _copy_run(two_checkpoints, tmp_path / "damaged")
    direct = _copy_run(two_checkpoints, tmp_path / "direct")
    _truncate(damaged / "checkpoints" / "ckpt-000000128" / "model.safetensors")
    # named explicitly, the damaged checkpoint is refused with one line
    with pytest.raises(UsageError, match=r"damaged checkpoint ckpt-000000128: model.safetensors is unreadable") as e:
        train.main(["--resume", str(damaged / "checkpoints" / "ckpt-000000128")])
    assert "\n" not in str(e.value)
    capsys.readouterr()
    fell_back = train.main(["--resume", str(damaged), "--kimg", "0.192"])
    warning = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "ckpt-000000128: model.safetensors" in warning[0]
    assert "resuming from ckpt-000000064" in warning[0]
    reference = train.main(["--resume", str(direct / "checkpoints" / "ckpt-000000064"), "--kimg", "0.192"])
    assert fell_back["cur_nimg"] == reference["cur_nimg"] == 192
    for key in ("G", "G_ema"):
        for k, v in reference[key].items():
            assert torch.equal(v, fell_back[key][k]), (key, k)


def test_unreadable_rng_states_stop_the_resume_unless_allowed(two_checkpoints, tmp_path, capsys):
    run = _copy_run(two_checkpoints, tmp_path / "run")
    newest = run / "checkpoints" / "ckpt-000000128"
    (newest / "random_states_0.pkl").write_bytes(b"not a pickle")
    with pytest.raises(UsageError, match=r"random_states_0.pkl is unreadable.*not be bit-identical.*"
                                         r"--allow-inexact-resume") as e:
        train.main(["--resume", str(newest)])
    assert "\n" not in str(e.value)
    # a run folder resumes exactly from the older, intact checkpoint, or knowingly from the newest one
    warnings = []
    assert checkpoint.resume_checkpoint(run, warn=warnings.append).name == "ckpt-000000064"
    assert checkpoint.resume_checkpoint(run, allow_inexact=True, warn=warnings.append) == newest
    assert "random_states_0.pkl" in warnings[0] and "not bit-identically" in warnings[1]
    capsys.readouterr()
    summary = train.main(["--resume", str(newest), "--kimg", "0.192", "--allow-inexact-resume"])
    assert summary["cur_nimg"] == 192 and "fresh RNG states" in capsys.readouterr().err


def test_full_disk_during_a_checkpoint_keeps_the_previous_one(two_checkpoints, tmp_path, monkeypatch):
    run = _copy_run(two_checkpoints, tmp_path / "run")
    real_save = torch.save

    def save_then_fill_the_disk(obj, f, *args, **kwargs):  # the second optimizer file: half written, then ENOSPC
        if str(f).endswith("optimizer_1.bin"):
            real_save(obj, f, *args, **kwargs)
            _truncate(Path(f))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_then_fill_the_disk)
    with pytest.raises(UsageError, match=r"could not write .*ckpt-000000192 \(No space left on device\): it needs "
                                         r"about [\d.]+ MB free in .*checkpoints, which has [\d.]+ MB free\. ckpt-000000128 and the "
                                         r"network are intact") as e:
        train.main(["--resume", str(run), "--kimg", "0.256"])
    assert "\n" not in str(e.value) and f"--resume {run}" in str(e.value)
    monkeypatch.setattr(torch, "save", real_save)
    assert sorted(c.name for c in (run / "checkpoints").iterdir()) == ["ckpt-000000064", "ckpt-000000128"]
    assert checkpoint.verify_checkpoint(run / "checkpoints" / "ckpt-000000128") == {}
    assert load_network(run / "network").meta["kimg"] == pytest.approx(0.128)

    # the network's writer fails next: the new checkpoint is complete, the previous network stays
    real_save_network = checkpoint.save_network

    def network_writer_fills_the_disk(G, folder, extra=None):
        if Path(folder).name == "network":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder))
        return real_save_network(G, folder, extra)

    monkeypatch.setattr(checkpoint, "save_network", network_writer_fills_the_disk)
    with pytest.raises(UsageError, match=r"could not write .*network \(No space left on device\).*\. The network "
                                         r"stays loadable and ckpt-000000192 is complete"):
        train.main(["--resume", str(run), "--kimg", "0.256"])
    monkeypatch.setattr(checkpoint, "save_network", real_save_network)
    assert sorted(c.name for c in (run / "checkpoints").iterdir()) == ["ckpt-000000128", "ckpt-000000192"]
    assert load_network(run / "network").meta["kimg"] == pytest.approx(0.128)

    # with space again, --resume continues from the last complete checkpoint to the end
    summary = train.main(["--resume", str(run), "--kimg", "0.256"])
    assert summary["cur_nimg"] == 256
    assert load_network(run / "network").meta["kimg"] == pytest.approx(0.256)


def test_channel_flags_widen_the_preset_network():
    """--channel-base / --channel-max change the widths (docs/default-network.md tries a wider cpu network); a base
    that leaves the last layer no channels is a usage error, not a crash."""
    cfg = train.make_config(train.parse_args(["--channel-base", "2048"]))
    net = NetworkConfig.from_dict(cfg.network)
    assert [net.channels(r) for r in net.resolutions] == [128, 128, 128, 64]
    assert cfg.network["channel_max"] == 128 and cfg.network["mapping_layers"] == 8  # the rest is the preset's
    net = NetworkConfig.from_dict(train.make_config(train.parse_args(["--channel-max", "64"])).network)
    assert [net.channels(r) for r in net.resolutions] == [64, 64, 64, 32]
    with pytest.raises(UsageError, match="channel_base 16 gives no channels"):
        train.make_config(train.parse_args(["--channel-base", "16"]))


def test_run_folders_are_claimed_by_creating_them(tmp_path, monkeypatch):
    """Two runs started at once under one name must not share a folder: the one that finds its folder taken between
    counting and creating numbers itself again."""
    first = checkpoint.next_run_dir(tmp_path / "runs", "synthetic-32-cpu")
    assert first.name == "00000-synthetic-32-cpu" and first.is_dir()
    assert checkpoint.next_run_dir(tmp_path / "runs", "synthetic-32-cpu").name == "00001-synthetic-32-cpu"
    counts = iter([[], [0, 1]])  # the first count misses both folders, as if another run created them meanwhile
    real = checkpoint.run_ids
    monkeypatch.setattr(checkpoint, "run_ids", lambda outdir: next(counts, None) or real(outdir))
    assert checkpoint.next_run_dir(tmp_path / "runs", "synthetic-32-cpu").name == "00002-synthetic-32-cpu"


def test_compile_trains_as_the_eager_step_does(tmp_path):
    """--compile: the passes without R1 compiled, R1's steps eager (r1_interval 2 runs both), at one resolution so
    that compiling stays under a minute on the CPU. (Its gradients equal the eager step's: test_ops.py. Weights after
    several Adam steps are no test: rounding alone, NCHW against channels_last, moves G's by 7% of its update.)"""
    settings = dict(kimg=0.064, start_res=16, r1_interval=2, style_mixing=0.0, mixed_precision="no",
                    tick_kimg=0.064, snap_kimg=0.064)
    eager = train.train(tiny_config(**settings), tmp_path / "eager", log_fn=lambda *a: None)
    compiled = train.train(tiny_config(**settings, compile=True), tmp_path / "compiled", log_fn=lambda *a: None)
    assert compiled["cur_nimg"] == eager["cur_nimg"] == 64
    for name in ("G", "D", "G_ema"):
        assert all(torch.isfinite(v).all() for v in compiled[name].values())
    # the same latents and noise (torch's generator in both), through mapping weights that differ by rounding
    assert torch.allclose(compiled["G"]["w_avg"], eager["G"]["w_avg"], atol=1e-4)


@pytest.mark.parametrize("tracker", ["tensorboard", "wandb", "mlflow", "none"])
def test_every_tracker_runs_or_says_what_to_install(tracker, tmp_path, monkeypatch):
    """--tracker: a tiny run logs its scalars and sample grids to the tracker, in the run folder (wandb offline), or,
    where the tracker's package is missing, one line says what to install."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("WANDB_DIR", raising=False)
    package = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "none": None}[tracker]
    args = ["--tracker", tracker, "--kimg", "0.032", "--resolution", "16", "--start-res", "16", "--batch", "16",
            "--workers", "0", "--data", "synthetic:64", "--tick-kimg", "0.016", "--snap-kimg", "0.032",
            "--outdir", str(tmp_path), "--channel-base", "256", "--channel-max", "32"]
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == package else
                        real_find_spec(name, *a))
    if package:  # with the package hidden: one line, nothing started
        with pytest.raises(UsageError, match=f"--tracker {tracker} needs the {package} package: pip install"):
            train.main(args)
        assert not list(tmp_path.iterdir())
    monkeypatch.setattr(importlib.util, "find_spec", real_find_spec)
    if package and real_find_spec(package) is None:
        return  # not installed here: the message above is what a user sees
    train.main(args)
    (run,) = tmp_path.iterdir()
    assert len(list((run / "samples").glob("*.png"))) == 2
    written = {"tensorboard": lambda: list((run / "logs").rglob("events.out.tfevents*")),
               "wandb": lambda: list(run.rglob("*.wandb")), "mlflow": lambda: list((run / "mlruns").rglob("metrics/loss/D")) and
                   list((run / "mlruns").rglob("artifacts/samples/fakes-*.png")),
               "none": lambda: [True]}[tracker]()
    assert written, f"{tracker} wrote nothing under {run}"
    if tracker == "mlflow":
        assert list((run / "mlruns").rglob("fakes-*.png"))  # the sample grids are artifacts


def test_metrics_at_every_checkpoint_go_to_metrics_jsonl(tmp_path, monkeypatch, capsys):
    """--metrics: each checkpoint's G_ema measured (here FID and PPL at 8 samples), each value one line of
    metrics.jsonl and a tracker scalar; a metric that fails is reported and training goes on."""
    cfg = tiny_config(metrics="fid8,ppl_wend,ls", metrics_num=8, kimg=0.128, snap_kimg=0.064, data="synthetic:256")
    lines = []
    summary = train.train(cfg, tmp_path / "run", log_fn=lines.append)
    assert summary["cur_nimg"] == 128
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["kimg"], r["metric"]) for r in rows] == [(k, m) for k in (0.064, 0.128)
                                                       for m in ("fid8", "ppl_wend", "ls_z", "ls_w")]
    assert all(r["num"] == 8 and r["value"] >= 0 for r in rows)
    with pytest.raises(UsageError, match="unknown metric 'fid'"):
        train.make_config(train.parse_args(["--metrics", "fid"]))


    def broken(self, name, num):
        raise RuntimeError("the Inception weights are gone")

    monkeypatch.setattr(metrics.MetricRun, "fid", broken)
    capsys.readouterr()
    summary = train.train(tiny_config(metrics="fid8,ppl_wend", metrics_num=8, kimg=0.064, snap_kimg=0.064,
                                      data="synthetic:256"), tmp_path / "again", log_fn=lambda *a: None)
    assert summary["cur_nimg"] == 64 and "metric fid8 failed at kimg 0.1: RuntimeError: the Inception" in \
        capsys.readouterr().out
    rows = [json.loads(line) for line in (tmp_path / "again" / "metrics.jsonl").read_text().splitlines()]
    assert [r["metric"] for r in rows] == ["ppl_wend"]  # the others still measured
