"""Fine-tuning (--init): every kind of source, FreezeD, DiffAugment in the loop, exact resume, one-line errors."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import checkpoint
import train
from common import UsageError
from conftest import ROOT, TINY, write_random_pngs
from model import Discriminator, Generator, NetworkConfig, NetworkError, load_network, save_network
from test_train import tiny_config


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """A tiny trained run: a run folder with two checkpoints and a network folder."""
    run = tmp_path_factory.mktemp("src") / "00000-tiny"
    train.train(tiny_config(kimg=0.096, snap_kimg=0.048, seed=5), run)
    return run


def ft_config(source, init, *extra, **overrides) -> train.TrainConfig:
    """The finetune preset from `source`, sized for seconds on the tiny network."""
    args = train.parse_args(["--init", str(source), "--preset", "finetune", "--kimg", "0.064", "--batch", "16",
                             "--workers", "0", "--tick-kimg", "0.032", "--snap-kimg", "0.032", *extra])
    cfg = train.make_config(args, init)
    cfg.data = "synthetic:64"
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


def final_D(run) -> dict:
    return load_file(str(checkpoint.latest_checkpoint(run) / "model_1.safetensors"))


def fresh_D(seed: int) -> dict:
    """The discriminator a run with this seed builds before any training (G is built first, from the same seed)."""
    torch.manual_seed(seed)
    Generator(TINY)
    return Discriminator(TINY).state_dict()


def assert_same(a: dict, b: dict, skip=()):
    assert a.keys() == b.keys()
    for k in a:
        assert k in skip or torch.equal(a[k], b[k]), k


def sources(run, tmp_path):
    """Every kind of --init source, with the weights each must start G, G_ema and D from (None: a fresh D)."""
    ckpt = checkpoint.latest_checkpoint(run)
    G, D = load_file(str(ckpt / "model.safetensors")), load_file(str(ckpt / "model_1.safetensors"))
    G_ema = load_network(ckpt / "G_ema").state_dict()
    # a network folder as a converted official network is laid out: G_ema plus G.safetensors and D.safetensors
    full = tmp_path / "converted"
    shutil.copytree(run / "network", full)
    save_file(G, str(full / "G.safetensors"))
    save_file(D, str(full / "D.safetensors"))
    return [(run, G, G_ema, D), (ckpt, G, G_ema, D), (full, G, G_ema, D),
            (run / "network", G_ema, G_ema, None),  # the network folder train.py writes: G_ema only
            (run / "network" / "model.safetensors", G_ema, G_ema, None)]


def test_each_kind_of_init_source_starts_the_weights(source_run, tmp_path):
    # With a learning rate of 0 a few training steps leave every weight where it started: the source's (but w_avg,
    # a running mean of w and no weight, which moves at lr 0 too).
    for i, (src, G, G_ema, D) in enumerate(sources(source_run, tmp_path)):
        init = checkpoint.load_init(src)
        log = []
        out = tmp_path / f"ft{i}"
        cfg = ft_config(src, init, base_lr=0.0, seed=3, kimg=0.032)
        summary = train.train(cfg, out, init=init, log_fn=log.append)
        assert summary["cur_nimg"] == 32 and init.network == TINY.to_dict()
        assert_same(summary["G"], G, skip={"w_avg"})
        # G_ema moved from the source's G_ema towards G (equal for a network folder) by 2 EMA steps of 16 images
        beta = 0.5 ** (32 / (cfg.ema_kimg * 1000))
        for k, v in summary["G_ema"].items():
            expect = G[k] + beta * (G_ema[k] - G[k])
            assert k == "w_avg" or torch.allclose(v, expect, rtol=1e-4, atol=1e-5 * expect.abs().max()), k
        assert_same(final_D(out), fresh_D(3) if D is None else D)
        said = [line for line in log if "fine-tuning from" in line]
        assert len(said) == 1 and ("D starts from random weights" in said[0]) == (D is None), log
        assert json.loads((out / "config.json").read_text())["init"] == str(src)
    # ...and the source's D is really another D than a fresh one
    assert not torch.equal(final_D(source_run)["out.weight"], fresh_D(3)["out.weight"])


def test_an_official_pkl_is_an_init_source(tmp_path):
    """NVIDIA's file layout (tests/data/official-small.pkl): G, D and Gs come from the pickle, through official.py."""
    import official

    pkl = ROOT / "tests" / "data" / "official-small.pkl"
    init = checkpoint.load_init(pkl)
    cfg, G, D, Gs = official.read_official(pkl)
    assert init.network == cfg.to_dict() and "official network" in init.description
    assert_same(init.G, G)
    assert_same(init.D, D)
    assert_same(init.G_ema, Gs)
    summary = train.train(ft_config(pkl, init, base_lr=0.0, seed=3, kimg=0.032), tmp_path / "ft", init=init)
    assert_same(summary["G"], G, skip={"w_avg"})  # lr 0: the weights are still the pickle's
    assert_same(final_D(tmp_path / "ft"), D)


def test_finetune_trains_at_full_resolution_with_augmentation_and_frozen_d(source_run, tmp_path):
    init = checkpoint.load_init(source_run)
    cfg = ft_config(source_run, init, "--diffaugment", "color,translation,cutout", "--freeze-d", "1")
    assert cfg.start_res == 16 and train.schedule(0, cfg).res == 16 and train.schedule(0, cfg).alpha == 1.0
    summary = train.train(cfg, tmp_path / "ft", init=init)
    assert set(summary["sec_per_kimg"]) == {16}  # no growing
    before, after = init.D, final_D(tmp_path / "ft")
    frozen = [k for k in before if k.startswith(("blocks.b16.", "fromrgb.b16."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # FreezeD: the 16x16 block and fromRGB
    assert not torch.equal(before["blocks.b8.conv0.weight"], after["blocks.b8.conv0.weight"])  # the rest trains
    assert not torch.equal(init.G["synthesis.torgb.b16.conv.weight"], summary["G"]["synthesis.torgb.b16.conv.weight"])


def test_finetuned_run_resumes_bit_identically(source_run, tmp_path):
    init = checkpoint.load_init(source_run / "network")  # fresh D, so its init is part of what must match
    extra = ("--diffaugment", "color,translation,cutout", "--freeze-d", "1")
    full = train.train(ft_config(source_run, init, *extra, kimg=0.096), tmp_path / "a", init=init)
    half = train.train(ft_config(source_run, init, *extra, kimg=0.032), tmp_path / "b", init=init)
    assert half["cur_nimg"] == 32
    # the resumed run reads no --init: everything comes from the checkpoint
    resumed = train.train(ft_config(source_run, init, *extra, kimg=0.096), tmp_path / "b",
                          resume=checkpoint.latest_checkpoint(tmp_path / "b"))
    assert_same(full["G"], resumed["G"])
    assert_same(full["G_ema"], resumed["G_ema"])
    assert_same(final_D(tmp_path / "a"), final_D(tmp_path / "b"))


def test_freeze_d_counts_blocks_from_the_image_side():
    assert train.frozen_d_resolutions(TINY, 2) == [16, 8]
    D = Discriminator(TINY)
    kept = {id(p) for p in train.trainable_d_parameters(D, 1)}
    names = [n for n, p in D.named_parameters() if id(p) not in kept]
    assert names and all(n.startswith(("blocks.b16.", "fromrgb.b16.")) for n in names)
    assert len(kept) == len(list(D.parameters())) - len(names)


def test_load_init_rejects_what_it_cannot_use(source_run, tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        checkpoint.load_init(tmp_path / "nope")
    (tmp_path / "notes.safetensors").write_text("not a network")
    with pytest.raises(NetworkError, match="not a valid safetensors file"):
        checkpoint.load_init(tmp_path / "notes.safetensors")
    empty = tmp_path / "00001-empty"
    (empty / "checkpoints").mkdir(parents=True)
    with pytest.raises(UsageError, match="no complete checkpoint"):
        checkpoint.load_init(empty)
    # a D that does not fit the network
    bad = tmp_path / "bad"
    shutil.copytree(source_run / "network", bad)
    save_file({"out.weight": torch.zeros(3)}, str(bad / "D.safetensors"))
    init = checkpoint.load_init(bad)
    with pytest.raises(NetworkError, match="its D weights do not match"):
        checkpoint.load_init_weights(init, Generator(TINY), Generator(TINY), Discriminator(TINY))
    # network flags cannot change a network that --init gives
    with pytest.raises(UsageError, match="--resolution"):
        train.make_config(train.parse_args(["--init", str(source_run), "--resolution", "32"]), checkpoint.load_init(source_run))
    for flag in ("--mapping-layers", "--channel-base"):
        with pytest.raises(UsageError, match=flag):
            train.make_config(train.parse_args(["--init", str(source_run), flag, "2"]), checkpoint.load_init(source_run))


def test_cli_finetunes_a_folder_of_pngs_at_the_network_resolution(source_run, tmp_path):
    folder = write_random_pngs(tmp_path / "few", 20, 40, 36)
    out = tmp_path / "runs"
    proc = subprocess.run([sys.executable, "train.py", "--init", str(source_run / "network"), "--preset", "finetune",
                           "--data", str(folder), "--kimg", "0.032", "--batch", "8", "--workers", "0", "--outdir",
                           str(out), "--diffaugment", "color,translation,cutout", "--threads", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "D starts from random weights" in proc.stdout and "sec/kimg per resolution" in proc.stdout
    run = next(out.iterdir())
    assert run.name == "00000-few-16-finetune"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["network"] == TINY.to_dict() and cfg["start_res"] == 16
    assert Image.open(run / "reals.png").size == (8 * 16, 3 * 16)  # the 20 images, resized to 16x16


def test_cli_bad_init_is_one_line(source_run, tmp_path):
    grey = tmp_path / "grey"
    save_network(Generator(NetworkConfig(**{**TINY.to_dict(), "img_channels": 1})), grey)
    (tmp_path / "notes.safetensors").write_text("not a network")
    for args, msg in ((["--init", str(grey)], "1-channel images but synthetic:64 has 3 channels"),
                      (["--init", str(tmp_path / "notes.safetensors")], "not a valid safetensors file"),
                      (["--init", str(source_run), "--resume", str(source_run)], "pass one of them")):
        proc = subprocess.run([sys.executable, "train.py", "--outdir", str(tmp_path / "o"), "--data", "synthetic:64",
                               "--workers", "0", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert msg in proc.stderr and proc.stderr.strip().count("\n") == 0, proc.stderr
