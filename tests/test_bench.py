"""bench.py at toy size: every table gets its rows, every number is positive, and the results file accumulates."""

import math

import pytest
import torch

import bench
import train
from conftest import TINY


@pytest.fixture(autouse=True)
def one_thread():
    """Toy sizes gain nothing from threads, and on a shared, busy CPU every multi-threaded op waits for a time
    slice (100x slower measured): one thread keeps this file well under 20 s whatever else runs."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def positive(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_peak_and_bandwidth_are_measured():
    p = bench.peak_flops(torch.device("cpu"), torch.float32, size=128, min_time=0.01)
    assert len(p["all"]) == 3  # one matmul, one conv in two layouts
    assert positive(p["matmul"]) and positive(p["conv"]) and p["peak"] == max(p["matmul"], p["conv"])
    assert positive(bench.memory_bandwidth(torch.device("cpu"), mbytes=4, min_time=0.01))


def test_train_step_counts_r1_and_mixing():
    r = bench.train_step_throughput(TINY, 8, 4, torch.device("cpu"), iters=1, gamma=1.0, min_time=0)
    no_r1 = bench.train_step_throughput(TINY, 8, 4, torch.device("cpu"), iters=1, gamma=1.0, r1=False, min_time=0)
    assert positive(r["img_s"]) and positive(r["sec_per_kimg"]) and positive(r["mem_mb"])
    assert r["flops_per_img"] > no_r1["flops_per_img"] > 0  # R1's double backward is counted


def test_tables_have_expected_rows(tmp_path):
    b = bench.Bench(torch.device("cpu"), quick=True, log=lambda *a: None, min_time=0.01)
    b.measure_peaks(dtypes=("fp32", "bf16"), size=128)
    b.inference("tiny", TINY, [16])
    b.training("cpu", cfg=TINY, resolutions=[8, 16], batch_cap=4, iters=1)
    inf = b.tables["Generator inference"][1]
    assert {(r["res"], r["batch"], r["precision"], r["layout"]) for r in inf} >= {
        (16, 1, "fp32", "NCHW"), (16, 1, "fp32", "channels_last"), (16, 1, "bf16", "NCHW")}
    b.r1_implementations("tiny", TINY, [16], 2)
    trn = b.tables["Training step (D: logistic + R1, G: non-saturating + mixing)"][1]
    # each step without R1, then with R1 every step and the ratio of the two
    assert [(r["res"], r["batch"], r["R1"]) for r in trn] == [(8, 4, "none"), (8, 4, "every step"),
                                                            (16, 4, "none"), (16, 4, "every step")]
    for r in inf + trn:
        for key in ("img/s", "GFLOP/img", "TFLOP/s", "% peak", "peak MiB"):
            assert positive(r[key]), (key, r)
    for none, full in (trn[:2], trn[2:]):
        assert full["R1 / none"] == pytest.approx(full["sec/kimg"] / none["sec/kimg"]) and none["R1 / none"] == ""
    (r1,) = b.tables[bench.Bench.R1_IMPL][1]
    assert r1["res"] == 16 and positive(r1["native img/s"]) and positive(r1["custom img/s"])
    assert r1["custom / native"] == pytest.approx(r1["custom img/s"] / r1["native img/s"])

    out = tmp_path / "benchmarks.md"
    env = bench.environment(torch.device("cpu"), ["--quick"])
    bench.append_results(out, env, b, bench.targets(b))
    bench.append_results(out, env, b, [])
    text = out.read_text()
    assert text.count("## ") >= 2 and "python bench.py --quick" in text and "| tiny | 16 | 1 | fp32 |" in text


def test_step_memory_with_and_without_batch_gpu():
    """The memory table: one step with the preset's batch, whole and in slices of 4, each in a fresh process."""
    b = bench.Bench(torch.device("cpu"), quick=True, log=lambda *a: None, min_time=0.01)
    b.step_memory("cpu", [16])
    rows = b.tables[bench.Bench.MEMORY][1]
    assert [(r["res"], r["batch-gpu"]) for r in rows] == [(16, "-"), (16, 4)], b.notes
    for r in rows:
        assert r["batch"] == train.preset_config("cpu").batch_at(16)
        assert 0 < r["before step MiB"] < r["step peak MiB"] <= r["process peak MiB"] + 1 and r["sec/kimg"] > 0


def test_schedule_kimg_covers_the_paper_schedule():
    k = bench.schedule_kimg("ffhq256")
    assert sorted(k) == [8, 16, 32, 64, 128, 256] and math.isclose(sum(k.values()), 25000)


def test_bench_times_the_training_step_of_train_py(tmp_path, monkeypatch):
    """bench.py runs train.TrainStep as train() builds it: one benchmark step on the reals of train()'s first
    iteration leaves G, G_ema and D bit-identical to one iteration of train() with the same seed."""
    reals = []
    prepare = train.prepare_reals
    monkeypatch.setattr(train, "prepare_reals", lambda u8, *a, **k: reals.append(u8) or prepare(u8, *a, **k))
    batch = bench.bench_config(TINY, "cpu").batch_at(8)  # the cpu preset's
    cfg = bench.bench_config(TINY, "cpu", data="synthetic:64", kimg=batch / 1000, workers=0, tick_kimg=1,
                             snap_kimg=1, mixed_precision="no", r1_interval=1)  # as training_step makes it for fp32, R1
    assert cfg.channels_last and cfg.style_mixing > 0 and cfg.ema_rampup
    summary = train.train(cfg, tmp_path / "run", log_fn=lambda *a: None)  # one step at 8x8
    assert len(reals) == 1

    with bench.training_step(TINY, 8, batch, torch.device("cpu"), gamma=cfg.gamma, channels_last=True,
                             real=reals[0]) as step:
        assert isinstance(step.train_step, train.TrainStep)
        start = {k: v.clone() for k, v in step.train_step.D_raw.state_dict().items()}
        step()
        after = {"G": step.train_step.G_raw, "G_ema": step.train_step.G_ema, "D": step.train_step.D_raw}
        for name, net in after.items():
            for k, v in net.state_dict().items():
                assert torch.equal(v, summary[name][k]), (name, k)
    assert any(not torch.equal(v, summary["D"][k]) for k, v in start.items())  # the step did train D
