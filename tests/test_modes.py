"""Every mode of every script, run through its command line on a small network trained in this session (conftest's
trained_network): a mode that no test runs is a mode that is broken. The measurements are tiny; what is checked is
that each mode runs to the end and writes what it says, with values of the right kind and range."""

import json
import math

import numpy as np
import torch
import pytest
from PIL import Image

import bench
import faces
import generate
import metrics
import project
import studies
from latents import load_latents


def image_files(paths) -> list:
    """The paths, each checked to be a readable image."""
    for p in paths:
        with Image.open(p) as im:
            im.load()
    return list(paths)


# ----------------------------------------------------------------------------------------------------------------
# generate.py


@pytest.mark.parametrize("argv", [
    ["--seeds", "0-3", "--grid"],
    ["--seeds", "0-1", "--trunc", "0.7", "--noise-mode", "random"],
    ["--seeds", "0-1", "--dtype", "bfloat16", "--batch", "2"],
    ["--seeds", "0-1", "--edit", "smiling=2", "--edit-layers", "coarse"],
    ["--figure", "mixing", "--rows", "1-2", "--cols", "3-4"],
    ["--figure", "mixing", "--rows", "1", "--cols", "3", "--styles", "0-3"],
    ["--figure", "noise", "--seeds", "5", "--samples", "4", "--shown", "2"],
    ["--figure", "truncation", "--seeds", "1-2", "--psis", "1,0.5,0,-0.5"],
    ["--figure", "interp", "--seeds", "1,2", "--frames", "3"],
    ["--figure", "interp", "--seeds", "1,2", "--frames", "2", "--space", "z", "--loop", "--format", "webp"],
    ["--figure", "edit", "--seeds", "0-1", "--attribute", "smiling", "--strengths=-2,0,2"],
], ids=lambda a: " ".join(a[:2]) + (" " + a[-1] if a[0] != "--seeds" else ""))
def test_generate_modes(trained_network, tmp_path, argv):
    paths = generate.main(["--network", str(trained_network), "--outdir", str(tmp_path), *argv])
    assert paths and all(p.parent == tmp_path and p.stat().st_size > 0 for p in paths)
    if paths[0].suffix in (".png", ".gif", ".webp"):
        image_files(paths)


# ----------------------------------------------------------------------------------------------------------------
# project.py


def test_project_a_photo_then_generate_renders_mixes_and_edits_it(trained_network, tmp_path):
    photo = tmp_path / "photo.png"
    Image.fromarray(faces.render_faces(np.arange(7, 8), 64)[0][0]).save(photo)
    written = project.main(["--network", str(trained_network), "--target", str(photo), "--steps", "3", "--video",
                            "--outdir", str(tmp_path / "proj")])
    latent = next(p for p in written if p.suffix == ".npz")
    image_files([p for p in written if p.suffix in (".png", ".gif")])
    ws, noise, info = load_latents(latent, generate.load_generator(trained_network))
    assert ws.ndim == 2 and info["steps"] == 3 and 0 <= info["lpips"] < 2
    out = tmp_path / "gen"
    for argv in (["--latents", str(latent)], ["--latents", str(latent), "--edit", "eyeglasses=2"],
                 ["--figure", "mixing", "--latents", str(latent), "--cols", "1-2"],
                 ["--figure", "interp", "--latents", str(latent), "--seeds", "3", "--frames", "2"],
                 ["--figure", "edit", "--latents", str(latent), "--attribute", "eyeglasses"]):
        image_files(generate.main(["--network", str(trained_network), "--outdir", str(out), "--overwrite", *argv]))


def test_project_bench_evaluate_and_edit_rates(trained_network, capsys):
    r = project.main(["--network", str(trained_network), "--bench", "--steps", "2"])
    assert r["steps"] == 2 and r["seconds"] > 0
    r = project.main(["--network", str(trained_network), "--evaluate", "--num", "2", "--steps", "2"])
    for case in ("generated, W", "generated, W+", "unseen faces, W", "unseen faces, W+"):
        assert 0 <= r[case]["lpips_median"] < 2, case
    assert r["generated, W"]["w_dist_median"] >= 0
    r = project.main(["--network", str(trained_network), "--edit-rates"])
    assert set(r) == set(faces.ATTRIBUTES)
    for name, rates in r.items():
        assert all(0 <= rates[k] <= 1 for k in ("flip", "present", "present_at_minus", "present_at_plus")), name
    assert '"flip"' in capsys.readouterr().out  # the JSON it prints


# ----------------------------------------------------------------------------------------------------------------
# metrics.py


@pytest.mark.parametrize("metric", ["ppl_zfull", "ppl_wfull", "ppl_zend", "ppl_wend", "ls", "mixing", "fid8"])
def test_every_metric(trained_network, tmp_path, metric):
    network = tmp_path / "network"  # a copy: each metric's results file is its own
    network.mkdir()
    for f in trained_network.iterdir():
        (network / f.name).write_bytes(f.read_bytes())
    metrics.main(["--network", str(network), "--metrics", metric, "--num", "8", "--batch", "8"])
    results = json.loads((network / "metrics.json").read_text())
    keys = {"ls": ["ls_z", "ls_w"]}.get(metric, [metric])
    for key in keys:
        value = results[key]["value"]
        assert results[key]["num"] == 8, key
        if metric == "mixing":  # a share of pairs, nan where no pair of faces differs in any attribute
            assert math.isnan(value) or 0 <= value <= 1, value
        else:
            assert math.isfinite(value) and value >= 0, (key, value)


def test_metrics_keeps_directions_unless_overwrite(trained_network, tmp_path, capsys):
    network = tmp_path / "network"
    network.mkdir()
    for f in trained_network.iterdir():
        (network / f.name).write_bytes(f.read_bytes())
    mine = network / "directions.npz"
    mine.write_bytes(b"my own directions")
    metrics.main(["--network", str(network), "--metrics", "ls", "--num", "8"])
    assert mine.read_bytes() == b"my own directions" and "pass --overwrite" in capsys.readouterr().out
    metrics.main(["--network", str(network), "--metrics", "ls", "--num", "8", "--overwrite"])
    assert mine.read_bytes() != b"my own directions"
    assert "attribute directions written" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------------------------
# bench.py and studies.py


def test_bench_quick_writes_every_table(tmp_path):
    out = tmp_path / "benchmarks.md"
    b = bench.main(["--quick", "--preset", "cpu", "--out", str(out), "--threads", "1"])
    for title in ("Generator inference", bench.Bench.TRAINING, "Metric throughput (metrics.py)",
                  "Data loading (data.py)"):
        assert b.tables[title][1], title
    assert all(r["img/s"] > 0 for r in b.tables["Data loading (data.py)"][1])
    assert "## " in out.read_text() and "--quick" in out.read_text()


def test_bench_train_memory(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(8):
        Image.fromarray(faces.render_faces(np.arange(i, i + 1), 32)[0][0]).save(folder / f"{i}.png")
    rows = bench.main(["--train-memory", str(folder), "--procs", "1", "--runs", "1", "--train-args",
                       "--resolution 16 --start-res 16 --workers 0"])
    (row,) = rows
    assert row["images"] == 8 and row["VmHWM MiB"] > 100 and 0 < row["first step s"] <= row["wall s"]


def test_studies(trained_network, tmp_path):
    fid = studies.main(["fid-floor", "--res", "16", "--num", "64", "--offset", "64", "--features", "pixels"])
    assert math.isfinite(fid) and fid > 0
    figure = tmp_path / "speckle.png"
    r = studies.main(["noise-speckle", str(trained_network), "--num", "4", "--figure", str(figure)])
    (share,) = r.values()
    assert share["redraw"] >= 0 and share["off"] >= 0 and image_files([figure])
    grid = tmp_path / "grid.png"
    r = studies.main(["finetune", "--base", str(trained_network), "--out", str(tmp_path / "ft"), "--kimg", "0.032",
                      "--variants", "ft-100", "--features", "pixels", "--num-fake", "16", "--num-real", "16",
                      "--seeds", "0", "--grid", str(grid)])
    assert set(r) == {"base (no tuning)", "ft-100"} and all(math.isfinite(v[0]) for v in r.values())
    assert image_files([grid])


def test_bfloat16_rendering_stays_within_a_level_of_float32(trained_network):
    """--dtype bfloat16 (bf16 autocast): on a trained network its pixels are on average under one level of 255 from
    float32's (docs/performance.md), and it keeps float32 weights."""
    seeds = list(range(16))
    G32 = generate.load_generator(trained_network, dtype="float32")
    Gbf = generate.load_generator(trained_network, dtype="bfloat16")
    assert Gbf.render_dtype == torch.bfloat16 and next(Gbf.parameters()).dtype == torch.float32
    a = generate.generate_images(G32, seeds).astype(np.float64)
    b = generate.generate_images(Gbf, seeds).astype(np.float64)
    assert 0 < np.abs(a - b).mean() < 1.0
