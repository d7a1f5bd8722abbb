"""Conditional StyleGAN (label_size > 0): today's networks unchanged at label_size 0, the label sources of
train.py --cond, their bad cases, an exact resume, and generation and metrics by label.

The networks against the official code's conditional outputs: test_official.py (tests/data/cond32). The demo's
selector: test_demo.py."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import data
import generate
import metrics
import train
from checkpoint import load_network
from common import DataError, UsageError
from conftest import ROOT, TINY
from faces import ATTRIBUTES
from model import Discriminator, Generator, NetworkConfig

TINY_ARGS = ["--resolution", "16", "--start-res", "8", "--batch", "8", "--workers", "0", "--tick-kimg", "0.008",
             "--channel-base", "256", "--channel-max", "32"]


# ----------------------------------------------------------------------------------------------------------------
# label_size 0 is today's network


def test_label_size_0_networks_are_todays(tmp_path):
    """The reference network, trained before labels existed, loads and renders its recorded samples bit for bit
    (networks/synthetic32/README.md: `generate.py --seeds 0-31 --grid`), and label_size 0 adds no parameter."""
    generate.main(["--network", str(ROOT / "networks" / "synthetic32"), "--seeds", "0-31", "--grid",
                   "--outdir", str(tmp_path)])
    ours = np.asarray(Image.open(tmp_path / "grid-seeds0-31.png"))
    assert np.array_equal(ours, np.asarray(Image.open(ROOT / "networks" / "synthetic32" / "samples.png")))
    torch.manual_seed(0)
    G0, D0 = Generator(TINY), Discriminator(TINY)
    cond = NetworkConfig(**{**TINY.to_dict(), "label_size": 3})
    G3, D3 = Generator(cond), Discriminator(cond)
    extra = set(G3.state_dict()) - set(G0.state_dict())
    assert extra == {"mapping.embed"} and G0.mapping.embed is None
    assert all(v.shape == G3.state_dict()[k].shape for k, v in G0.state_dict().items() if k != "mapping.layers.0.weight")
    assert D3.out.weight.shape[0] == 3 and D0.out.weight.shape[0] == 1


def test_conditional_d_takes_the_score_of_the_label():
    cfg = NetworkConfig(**{**TINY.to_dict(), "label_size": 3})
    D = Discriminator(cfg).eval()
    x = torch.randn(4, 3, 16, 16)
    eye = torch.eye(3)
    per_label = torch.stack([D(x, labels=eye[[k] * 4]) for k in range(3)], 1)
    c = eye[[0, 2, 1, 2]]
    assert torch.allclose(D(x, labels=c), (per_label * c).sum(1), atol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# Label sources


def write_images(folder, names, size=20):
    rng = np.random.default_rng(0)
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / name)


def first_batch_labels(tmp_path, data_arg, monkeypatch, *extra):
    """The labels train() feeds its first step, and the run's network config."""
    seen = []
    call = train.TrainStep.__call__
    monkeypatch.setattr(train.TrainStep, "__call__",
                        lambda self, u8, phase, step, nimg, labels=None: seen.append(labels) or call(
                            self, u8, phase, step, nimg, labels))
    train.main(["--cond", "--data", str(data_arg), "--kimg", "0.008", "--outdir", str(tmp_path / "runs"),
                "--cache-dir", str(tmp_path / "cache"), *TINY_ARGS, *extra])
    (run,) = (tmp_path / "runs").iterdir()
    return seen[0], json.loads((run / "config.json").read_text())["network"], run


def batch_indices(n_data, batch=8, seed=0):
    """The first minibatch's images: the sampler's first permutation (train.py's StreamSampler)."""
    return list(data.StreamSampler(n_data, seed, 0, batch))


def test_subfolders_are_classes(tmp_path, monkeypatch):
    names = [f"{c}/{i}.png" for c in ("bird", "cat", "dog") for i in range(4)]
    write_images(tmp_path / "pets", names)
    labels, net, _ = first_batch_labels(tmp_path, tmp_path / "pets", monkeypatch)
    assert net["label_size"] == 3 and net["label_names"] == ["bird", "cat", "dog"] and net["label_kind"] == "classes"
    assert net["label_prior"] == pytest.approx([1 / 3] * 3, abs=1e-6)
    expected = torch.eye(3)[[i // 4 for i in batch_indices(12)]]  # files in sorted order: bird 0-3, cat 4-7, ...
    assert torch.equal(labels.cpu(), expected)


def test_dataset_json_labels(tmp_path, monkeypatch):
    names = [f"img{i}.png" for i in range(10)]
    write_images(tmp_path / "d", names)
    classes = [i % 3 for i in range(10)]
    (tmp_path / "d" / "dataset.json").write_text(json.dumps({"labels": [[n, c] for n, c in zip(names, classes)]}))
    labels, net, _ = first_batch_labels(tmp_path, tmp_path / "d", monkeypatch)
    assert net["label_size"] == 3 and net["label_kind"] == "classes"
    assert torch.equal(labels.cpu(), torch.eye(3)[[classes[i] for i in batch_indices(10)]])

    vectors = {n: [float(i % 2), 0.5 * i] for i, n in enumerate(names)}  # lists of floats: attributes
    (tmp_path / "d" / "dataset.json").write_text(json.dumps({"labels": [[n, v] for n, v in vectors.items()]}))
    labels, net, _ = first_batch_labels(tmp_path / "again", tmp_path / "d", monkeypatch)
    assert net["label_size"] == 2 and net["label_kind"] == "attributes"
    assert torch.equal(labels.cpu(), torch.tensor([vectors[names[i]] for i in batch_indices(10)]))


def test_synthetic_faces_give_their_attributes(tmp_path, monkeypatch):
    labels, net, _ = first_batch_labels(tmp_path, "synthetic:64", monkeypatch)
    assert net["label_names"] == list(ATTRIBUTES) and net["label_kind"] == "attributes"
    expected = torch.from_numpy(data.render_faces_labels(np.array(batch_indices(64))))
    assert torch.equal(labels.cpu(), expected)


@pytest.mark.parametrize("case, message", [
    ("missing", "has no label for 1 of the 4 images (e.g. c.png)"),
    ("stray", "labels 1 files that are not images"),
    ("negative", "unknown class -1"),
    ("text", "unknown class 'cat'"),
    ("length", "labels of different lengths (1, 2"),
    ("top", "images lie at the top of"),
    ("one", "has one class subfolder (only)"),
    ("broken", "is not a label file"),
])
def test_bad_labels_get_one_line(tmp_path, case, message):
    folder = tmp_path / "d"
    names = ["a.png", "b.png", "c.png", "d.png"]
    labels = {"a.png": 0, "b.png": 1, "c.png": 0, "d.png": 1}
    if case in ("top", "one"):
        write_images(folder, ["x.png", "only/y.png"] if case == "top" else ["only/y.png", "only/z.png"])
    else:
        write_images(folder, names)
        if case == "missing":
            del labels["c.png"]
        if case == "stray":
            labels["e.png"] = 1
        if case == "negative":
            labels["a.png"] = -1
        if case == "text":
            labels["a.png"] = "cat"
        if case == "length":
            labels = {n: [1.0] if n == "a.png" else [1.0, 0.0] for n in names}
        text = "{not json" if case == "broken" else json.dumps({"labels": [[n, v] for n, v in labels.items()]})
        (folder / "dataset.json").write_text(text)
    with pytest.raises(DataError) as e:
        data.make_dataset(str(folder), 8, cond=True, cache_dir=str(tmp_path / "cache"))
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "cache").exists()  # refused before anything was decoded


def test_cond_on_data_without_labels_and_init_from_unconditional(tmp_path):
    with pytest.raises(DataError, match="a Hub data set's label columns"):
        data.make_dataset("user/name", 8, cond=True, label_columns=["smiling"])
    with pytest.raises(UsageError, match="that network is unconditional"):
        train.main(["--cond", "--init", str(ROOT / "networks" / "synthetic32"), "--data", "synthetic:64",
                    "--kimg", "0.008", "--outdir", str(tmp_path), "--workers", "0"])


def test_conditional_run_resumes_bit_identically(tmp_path):
    args = ["--cond", "--data", "synthetic:64", "--kimg", "0.048", "--snap-kimg", "0.024", "--seed", "3",
            *TINY_ARGS]
    whole = train.main([*args, "--outdir", str(tmp_path / "a")])
    first = train.main([*args, "--outdir", str(tmp_path / "b"), "--kimg", "0.024"])
    assert first["cur_nimg"] == 24
    (run,) = (tmp_path / "b").iterdir()
    resumed = train.main(["--resume", str(run), "--kimg", "0.048"])
    for name in ("G", "D", "G_ema"):
        for k, v in whole[name].items():
            assert torch.equal(v, resumed[name][k]), (name, k)
    assert whole["G"]["mapping.embed"].shape[0] == len(ATTRIBUTES)


# ----------------------------------------------------------------------------------------------------------------
# Generation and metrics by label


@pytest.fixture(scope="module")
def cond_network(tmp_path_factory):
    """A tiny conditional run on the synthetic faces."""
    root = tmp_path_factory.mktemp("condnet")
    train.main(["--cond", "--data", "synthetic:64", "--kimg", "0.016", "--outdir", str(root), *TINY_ARGS])
    (run,) = root.iterdir()
    return run / "network"


def test_generate_by_label(cond_network, tmp_path):
    def seed_image(*extra):
        out = tmp_path / "-".join(extra).replace("=", "").replace(",", "") or "none"
        generate.main(["--network", str(cond_network), "--seeds", "5", "--outdir", str(out), *extra])
        return np.asarray(Image.open(out / "seed0005.png"))

    hat, no_hat = seed_image("--labels", "wearing_hat=1"), seed_image("--labels", "wearing_hat=0")
    assert not np.array_equal(hat, no_hat)
    G = generate.load_generator(cond_network)
    row = generate.label_request(G, labels="wearing_hat=1")
    assert row[ATTRIBUTES.index("wearing_hat")] == 1 and row.isnan().sum() == len(ATTRIBUTES) - 1
    G.fixed_labels = row
    assert np.array_equal(hat, generate.generate_images(G, [5])[0])
    # the open attributes are drawn per seed from the data's rates, the same for a seed every time
    assert torch.equal(G.label_rows(row, 2, [5, 6]), G.label_rows(row, 2, [5, 6]))
    full = ",".join(f"{a}={int(a == 'smiling')}" for a in ATTRIBUTES)
    centred = seed_image("--labels", full, "--trunc", "0.3", "--trunc-center", "label")
    assert not np.array_equal(centred, seed_image("--labels", full, "--trunc", "0.3"))


@pytest.mark.parametrize("argv, message", [
    (["--class", "cat"], "conditioned on attributes, not classes"),
    (["--labels", "wings=1"], "unknown attribute 'wings'"),
    (["--labels", "smiling=yes"], "give smiling=1 (present) or smiling=0"),
    (["--labels", "smiling=1", "--trunc-center", "label"], "needs the whole label"),
])
def test_bad_label_requests_get_one_line(cond_network, tmp_path, argv, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        generate.main(["--network", str(cond_network), "--seeds", "1", "--outdir", str(tmp_path / "o"), *argv])


def test_unconditional_network_refuses_labels(tmp_path):
    for argv in (["--class", "1"], ["--labels", "smiling=1"]):
        with pytest.raises(UsageError, match="this network is unconditional"):
            generate.main(["--network", str(ROOT / "networks" / "synthetic32"), "--seeds", "1",
                           "--outdir", str(tmp_path), *argv])


class Constant(torch.nn.Module):
    """A classifier that gives every image the same logits."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return self.logits.expand(len(x), -1)


def test_label_acc_and_fid_of_a_conditional_network(cond_network, tmp_path, capsys):
    G = load_network(cond_network)
    r = metrics.label_accuracy(G, Constant(torch.randn(len(ATTRIBUTES))), num=8, batch=4, progress=False)
    assert set(r) == set(ATTRIBUTES) and all(0 <= v <= 1 for v in r.values())
    # a classifier that says "on" for everything agrees with exactly the half asked "on"
    always = Constant(torch.ones(len(ATTRIBUTES)))
    assert set(metrics.label_accuracy(G, always, num=8, batch=4, progress=False).values()) == {0.5}
    metrics.main(["--network", str(cond_network), "--metrics", "label_acc,fid8", "--num", "8",
                  "--data", "synthetic:200"])
    out = capsys.readouterr().out
    assert "label: agreement" in out and "fid8" in out
    with pytest.raises(UsageError, match="label_acc measures a conditional network"):
        metrics.main(["--network", str(ROOT / "networks" / "synthetic32"), "--metrics", "label_acc", "--num", "4"])


def test_labels_figure(cond_network, tmp_path):
    (path,) = generate.main(["--network", str(cond_network), "--figure", "labels", "--seeds", "1,2",
                             "--outdir", str(tmp_path)])
    layout = json.loads(Image.open(path).info["layout"])
    assert layout["rows"] == list(ATTRIBUTES) and layout["cols"] == ["1 off", "1 on", "2 off", "2 on"]
    with pytest.raises(UsageError, match="--figure labels shows a conditional network"):
        generate.main(["--network", str(ROOT / "networks" / "synthetic32"), "--figure", "labels", "--seeds", "1",
                       "--outdir", str(tmp_path / "u")])
