"""project.py, latent files and attribute edits: the StyleGAN2 projector's schedule and regulariser, projection on a
tiny network, the .npz round trip through generate.py, editing along SVM directions, and bad input."""

import json
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

import generate
import latents
import project
from common import UsageError, run_cli
from conftest import make_tiny_generator
from metrics import separability_score
from model import save_network


@pytest.fixture(scope="module")
def G():
    return make_tiny_generator().float()


def mse(a, b):  # a cheap per-image distance for the tests that only need the optimiser to work
    return (a - b).square().mean((1, 2, 3))


def test_learning_rate_ramps():
    assert project.learning_rate(0.0) == 0.0  # warm-up from zero
    assert project.learning_rate(0.025) == pytest.approx(project.LR / 2)  # half-way through the 5 % warm-up
    assert project.learning_rate(0.5) == pytest.approx(project.LR)
    assert project.learning_rate(1 - project.LR_RAMPDOWN / 2) == pytest.approx(project.LR / 2)  # cosine mid-point
    assert project.learning_rate(1.0) == pytest.approx(0.0)


def test_noise_regularization_penalises_correlated_noise():
    g = torch.Generator().manual_seed(0)
    white = torch.randn(2, 1, 32, 32, generator=g)
    smooth = torch.nn.functional.interpolate(torch.randn(2, 1, 8, 8, generator=g), size=32, mode="nearest")
    reg = project.noise_regularization([white]), project.noise_regularization([smooth])
    assert reg[0].shape == (2,) and (reg[1] > 100 * reg[0]).all()
    # a constant map: autocorrelation 1 at every shift, at 32, 16 and 8 px -> 3 scales x 2 directions
    assert project.noise_regularization([torch.ones(1, 1, 32, 32)]).item() == pytest.approx(6.0)


def test_projection_recovers_the_w_of_a_generated_image():
    # The image depends on w alone (noise strengths zero) and w_avg is the mean of mapped w, as in a trained network.
    # A random tiny network is far from convex in w, so the targets lie near w_avg (psi 0.3), where the projector
    # must find them; the trained network's figures are in docs/projection.md.
    G = make_tiny_generator().float()
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise.weight"):
                p.zero_()
        G.w_avg.copy_(G.w_from_seeds(list(range(1000, 2000))).mean(0))
    w = G.w_avg.lerp(G.w_from_seeds([3, 4, 5, 6]), 0.3)
    target = generate.synthesize(G, G.broadcast(w), "const")
    start = mse(generate.synthesize(G, G.broadcast(G.w_avg.expand(4, -1)), "const"), target)
    r = project.project(G, target, steps=150, space="w", lpips=mse, progress=False)
    assert (r["lpips"] < start / 20).all()
    assert ((r["ws"][:, 0] - w).norm(dim=-1) < 0.25 * (G.w_avg - w).norm(dim=-1)).all()
    assert torch.equal(r["ws"][:, 0], r["ws"][:, -1])  # W: one w on every layer
    assert all(p.requires_grad for p in G.parameters())  # the network is left as it was


def test_projection_lowers_lpips(G):
    target = generate.synthesize(G, G.broadcast(G.w_from_seeds([7])), "const")
    seen = []
    r = project.project(G, target, steps=20, space="w+", progress=False, callback=lambda s, d: seen.append(float(d)))
    assert r["ws"].shape == (1, G.num_ws, G.cfg.w_dim) and len(seen) == 20
    assert float(r["lpips"]) < seen[0]


def test_cli_writes_images_and_latents_that_generate_renders(G, tiny_network, tmp_path):
    Image.fromarray(np.random.RandomState(0).randint(0, 255, (40, 60, 3), np.uint8)).save(tmp_path / "me.png")
    out = tmp_path / "proj"
    files = project.main(["--target", str(tmp_path / "me.png"), "--network", str(tiny_network), "--steps", "3",
                          "--space", "w+", "--outdir", str(out), "--video"])
    assert sorted(f.name for f in files) == ["me-projected.png", "me-steps.gif", "me-target-projected.png", "me.npz"]
    with np.load(out / "me.npz", allow_pickle=False) as z:
        assert z["ws"].shape == (G.num_ws, G.cfg.w_dim) and json.loads(str(z["info"]))["space"] == "w+"
    rendered = generate.main(["--latents", str(out / "me.npz"), "--network", str(tiny_network), "--outdir",
                              str(tmp_path / "gen"), "--dtype", "float32"])
    a = np.asarray(Image.open(rendered[0]), np.int16)
    b = np.asarray(Image.open(out / "me-projected.png"), np.int16)
    assert np.abs(a - b).max() <= 1  # the same ws and noise maps; float rounding may move a level
    with pytest.raises(UsageError, match="already exists"):
        project.main(["--target", str(tmp_path / "me.png"), "--network", str(tiny_network), "--steps", "1",
                      "--outdir", str(out)])
    # mixing with seeds, the interpolation video and the edit figure all take the latents
    gen = ["--network", str(tiny_network), "--outdir", str(tmp_path / "gen"), "--latents", str(out / "me.npz")]
    assert generate.main(gen + ["--figure", "mixing", "--cols", "1-2", "--styles", "0-1"])[0].is_file()
    assert generate.main(gen + ["--figure", "interp", "--seeds", "1", "--frames", "3"])[0].is_file()


@pytest.fixture
def directions(G, tiny_network, tmp_path):
    g = np.random.RandomState(1)
    d = g.randn(3, G.cfg.w_dim)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    path = latents.directions_path(tiny_network)
    latents.save_directions(path, ["smiling", "eyeglasses", "bangs"], d, [0.5, 2.0, 1.0],
                            {"fingerprint": latents.network_fingerprint(G), "samples": 0})
    yield path
    path.unlink()


def test_edit_moves_w_by_the_stated_amount_on_the_chosen_layers(G, directions):
    dirs = latents.load_directions(directions, G)
    ws = G.broadcast(G.w_from_seeds([1, 2]))
    edits = latents.parse_edits("smiling=2,eyeglasses=-1", dirs["names"])
    out = latents.apply_edits(ws, edits, dirs, first=1, stop=3)
    delta = (out - ws).double()
    assert torch.equal(delta[:, :1], torch.zeros_like(delta[:, :1])) and torch.equal(out[:, 3:], ws[:, 3:])
    d = torch.from_numpy(dirs["directions"]).double()
    assert torch.allclose(delta[:, 1:3] @ d[0], torch.full((2, 2), 2 * 0.5, dtype=torch.float64)
                          + (-1 * 2.0) * float(d[0] @ d[1]), atol=1e-5)
    assert torch.allclose(delta[:, 1:3] @ d[2], 2 * 0.5 * (d[0] @ d[2]) - 2.0 * (d[1] @ d[2]), atol=1e-5)


def test_generate_edit_renders_the_edited_w(G, tiny_network, directions, tmp_path):
    paths = generate.main(["--network", str(tiny_network), "--seeds", "5", "--edit", "bangs=3", "--edit-layers",
                           "0-1", "--outdir", str(tmp_path), "--dtype", "float32"])
    dirs = latents.load_directions(directions, G)
    ws = latents.apply_edits(G.broadcast(G.w_from_seeds([5])), [("bangs", 3.0)], dirs, 0, 2)
    want = generate.to_uint8(generate.synthesize(G, ws, "const"))[0]
    assert np.abs(np.asarray(Image.open(paths[0]), np.int16) - want).max() <= 1
    assert not np.array_equal(want, generate.generate_images(G, [5])[0])
    fig = generate.main(["--network", str(tiny_network), "--seeds", "1-2", "--figure", "edit", "--attribute",
                         "smiling", "--strengths=-3,0,3", "--outdir", str(tmp_path)])
    layout = json.loads(Image.open(fig[0]).text["layout"])
    assert layout["cols"] == [-3, 0, 3] and layout["rows"] == ["seed 1", "seed 2"]


def test_svm_direction_of_a_linear_problem_is_its_normal():
    g = np.random.RandomState(0)
    normal = g.randn(16)
    normal /= np.linalg.norm(normal)
    x = g.randn(4000, 16) * 3 + 1
    logits = np.stack([(x - 1) @ normal, -(x - 1) @ normal], 1)  # the second attribute is the first's opposite
    found = []
    separability_score(x, logits, normals=found)
    assert found[0] @ normal > 0.99 and found[1] @ normal < -0.99  # unit, oriented to "present"
    assert np.linalg.norm(found[0]) == pytest.approx(1)
    one_class = []
    separability_score(x, np.abs(logits[:, :1]) + 1, normals=one_class)
    assert np.isnan(one_class[0]).all()


@pytest.mark.parametrize("argv, message", [
    (["--target", "{tmp}/broken.png"], "cannot read"),
    (["--target", "{tmp}/missing.png"], "does not exist"),
    (["--target", "{tmp}/me.png", "--steps", "0"], "--steps must be at least 1"),
    (["--target", "{tmp}/me.png", "--space", "z"], "invalid choice"),
])
def test_project_bad_input_is_one_line(tiny_network, tmp_path, capsys, argv, message):
    (tmp_path / "broken.png").write_bytes(b"not an image")
    Image.new("RGB", (8, 8)).save(tmp_path / "me.png")
    argv = [a.format(tmp=tmp_path) for a in argv] + ["--network", str(tiny_network), "--outdir", str(tmp_path)]
    with pytest.raises(SystemExit) as e:
        run_cli(project.main, argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("extra, message", [
    (["--edit", "grinning=1"], "unknown attribute 'grinning'"),
    (["--edit", "smiling=12"], "outside [-10, 10]"),
    (["--edit", "smiling"], "attribute=strength"),
    (["--figure", "edit", "--attribute", "smiling", "--strengths=0,11"], "outside [-10, 10]"),
    (["--edit", "smiling=1", "--edit-layers", "0-9"], "style layers"),
])
def test_generate_bad_edit_is_one_line(tiny_network, directions, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as e:
        run_cli(generate.main, ["--network", str(tiny_network), "--seeds", "1", "--outdir", str(tmp_path)] + extra)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_latents_of_another_network_and_broken_files_are_refused(G, tmp_path, capsys):
    other = tmp_path / "other"
    save_network(make_tiny_generator(seed=1), other)
    path = latents.save_latents(tmp_path / "a.npz", G, G.w_avg.expand(G.num_ws, -1), [None] * G.num_ws,
                                {"space": "w"})
    (tmp_path / "bad.npz").write_bytes(b"PK junk")
    for f, message in [(path, "projected with another network"), (tmp_path / "bad.npz", "not a readable"),
                       (tmp_path / "none.npz", "does not exist")]:
        with pytest.raises(SystemExit) as e:
            run_cli(generate.main, ["--network", str(other), "--latents", str(f), "--outdir", str(tmp_path)])
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
    # no directions beside the network: the message says how to make them
    with pytest.raises(SystemExit):
        run_cli(generate.main, ["--network", str(other), "--seeds", "1", "--edit", "smiling=1"])
    assert "metrics.py --metrics ls" in capsys.readouterr().err


@pytest.mark.skipif(not os.environ.get("STYLEGAN_TRAINED_NETWORK"),
                    reason="needs a network trained on the synthetic faces with directions.npz beside it "
                           "(STYLEGAN_TRAINED_NETWORK=folder) and its cached attribute classifier")
def test_editing_flips_the_attribute_classifier():
    """On the trained network: an edit of strength 3 towards the opposite label flips the classifier's label for
    at least 80 % of the seeds, for the attributes the directions capture (measured in docs/projection.md)."""
    r = project.edit_flip_rates(os.environ["STYLEGAN_TRAINED_NETWORK"], num=100)
    for name in project.EDITABLE:
        assert r[name]["flip"] >= 0.8, (name, r[name])


def test_metrics_saves_directions_that_latents_reads(G, tmp_path):
    import metrics

    folder = tmp_path / "run" / "network"
    save_network(G, folder)
    d = np.stack([np.eye(G.cfg.w_dim)[0], np.full(G.cfg.w_dim, np.nan)])
    info = {"dataset": "synthetic-100-16", "holdout_accuracy": {"smiling": 0.9, "bangs": 1.0}}
    path = metrics.save_attribute_directions(str(folder), G, ["smiling", "bangs"],
                                             {"directions": d, "stds": np.array([0.7, 0.0])}, info, 100, 0)
    assert path == folder / latents.DIRECTIONS_NAME
    dirs = latents.load_directions(path, G)
    assert dirs["names"] == ["smiling", "bangs"] and dirs["note"]["samples"] == 100
    assert dirs["note"]["classifier"]["dataset"] == "synthetic-100-16"
    np.testing.assert_array_equal(dirs["stds"], np.float32([0.7, 0.0]))
    ws = G.broadcast(G.w_avg[None])
    with pytest.raises(UsageError, match="bangs has no direction"):
        latents.apply_edits(ws, [("bangs", 1.0)], dirs)
    with pytest.raises(UsageError, match="another network"):
        latents.load_directions(path, make_tiny_generator(seed=2))
