"""NVIDIA's official StyleGAN pickles: read safely, converted, and checked against the official code's own outputs.

tests/data holds a pickle and outputs of the official TensorFlow code (see tests/data/README.md). Every network
below goes through the converter (official.py), never through a name mapping written here: the style-based G of
the pickle, and the fused G, traditional G and fused D, which the tests write as official-layout pickles from the
reference variables.
"""

import dataclasses
import filecmp
import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import official
from checkpoint import load_network
from common import NetworkError, run_cli
from model import PRESETS, Discriminator, Generator, count_params
from official_layout import discriminator_network, generator_network, write_pkl, write_random_pkl

DATA = Path(__file__).parent / "data"
PKL = DATA / "official-small.pkl"
CONFIG = dict(resolution=32, num_channels=3, fmap_base=256, fmap_max=64, latent_size=32, dlatent_size=32,
              mapping_fmaps=48, label_size=0)  # the reference networks' static_kwargs (see tests/data/README.md)
TOL = 1e-5


@pytest.fixture(scope="module")
def golden():
    with np.load(DATA / "official-golden.npz") as f:
        return {k: f[k] for k in f.files}


def rel_err(ours: torch.Tensor, ref: np.ndarray) -> float:
    ours = ours.detach().double().numpy()
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def lod_to_res(lod: float, resolution: int = 32) -> tuple[int, float, int]:
    """The official level of detail as (resolution, fade-in alpha, up-sampling factor back to full size)."""
    step = math.floor(lod)
    return resolution >> step, 1.0 - (lod - step), 2**step


def variables(golden, prefix: str) -> dict:
    return {k[len(prefix) + 5:]: v for k, v in golden.items() if k.startswith(prefix + "/var/")}


@pytest.fixture(scope="module")
def converted(tmp_path_factory, golden):
    """Folders converted from the reference pickle and from pickles written from the other reference networks."""
    root = tmp_path_factory.mktemp("official")
    out = {"G": official.convert_pkl(PKL, root / "small")}
    g, d, _ = official.read_pkl(PKL)  # the reference D, for pickles that need one beside another generator
    D = discriminator_network(d["static_kwargs"], dict(d["variables"]))
    for name, gkw, dname, dkw in (("Gf", dict(fused_scale=True), "Df", dict(fused_scale=True)),
                                  ("Gt", dict(const_input_layer=False, use_styles=False, use_noise=False,
                                              use_pixel_norm=True, use_instance_norm=False, mapping_layers=0),
                                   None, None)):
        Gn = generator_network("G", {**CONFIG, **gkw}, variables(golden, name))
        Dn = discriminator_network({**CONFIG, **dkw}, variables(golden, dname)) if dname else D
        write_pkl(root / f"{name}.pkl", Gn, Dn, Gn)
        out[name] = official.convert_pkl(root / f"{name}.pkl", root / name)
    return out


@pytest.mark.parametrize("name", ["G", "Gf", "Gt"])
def test_generators_match_official_at_every_level_of_detail(converted, golden, name):
    _, _, Gs = official.load_converted(converted[name])
    z = torch.from_numpy(golden["z"])
    for key in [k for k in golden if k.startswith(f"{name}/img_psi1_lod")]:
        lod = float(key.rsplit("lod", 1)[1])
        res, alpha, up = lod_to_res(lod)
        img = F.interpolate(Gs(z, psi=1.0, res=res, alpha=alpha, noise_mode="const"), scale_factor=up)
        assert rel_err(img, golden[key]) <= TOL, key
        ws = golden[f"{name}/ws_lod{lod}"]
        assert rel_err(Gs.map(z, psi=1.0)[:, :ws.shape[1]], ws) <= TOL  # the traditional G has one style layer


def test_pickle_g_d_and_gs_all_match_official(converted, golden):
    G, D, Gs = official.load_converted(converted["G"])
    z, x = torch.from_numpy(golden["z"]), torch.from_numpy(golden["x"])
    for net in (G, Gs):  # the reference Gs holds G's values
        assert rel_err(net(z, psi=1.0, noise_mode="const"), golden["G/img_psi1_lod0.0"]) <= TOL
    for lod in (0.0, 0.5, 1.0, 1.5):
        res, alpha, down = lod_to_res(lod)
        assert rel_err(D(F.avg_pool2d(x, down), res=res, alpha=alpha)[:, None], golden[f"D/scores_lod{lod}"]) <= TOL


def test_fused_discriminator_matches_official(converted, golden):
    _, D, _ = official.load_converted(converted["Gf"])
    x = torch.from_numpy(golden["x"])
    for lod in (0.0, 0.5, 1.0, 1.5):
        res, alpha, down = lod_to_res(lod)
        assert rel_err(D(F.avg_pool2d(x, down), res=res, alpha=alpha)[:, None], golden[f"Df/scores_lod{lod}"]) <= TOL


def test_truncation_and_mixing_match_official(converted, golden):
    Gs = load_network(converted["G"])
    z = torch.from_numpy(golden["z"])
    for key in [k for k in golden if k.startswith("G/img_psi") and "_cut" in k]:
        psi, cutoff = key[len("G/img_psi"):].split("_cut")
        assert rel_err(Gs(z, psi=float(psi), cutoff=int(cutoff), noise_mode="const"), golden[key]) <= TOL, key
    # the official default (psi 0.7 on the first 8 layers) is what a converted network does when given no psi
    assert (Gs.cfg.default_psi, Gs.cfg.default_cutoff) == (0.7, 8)
    assert rel_err(Gs.synthesis(Gs.map(z), noise_mode="const"), golden["G/img_psi0.7_cut8"]) <= TOL
    mixed = torch.from_numpy(golden["G/ws_mixed"])
    assert rel_err(Gs.synthesis(mixed, noise_mode="const"), golden["G/img_mixed"]) <= TOL


def test_convert_save_load_is_exact_and_deterministic(converted, tmp_path, golden):
    z = torch.from_numpy(golden["z"])
    direct = load_network(PKL)  # the pickle's Gs, read in memory
    saved = load_network(converted["G"])
    assert direct.cfg == saved.cfg
    for a, b in zip(direct.state_dict().values(), saved.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(direct(z, noise_mode="const"), saved(z, noise_mode="const"))
    again = official.convert_pkl(PKL, tmp_path / "again")
    names = sorted(p.name for p in again.iterdir())
    assert names == ["D.safetensors", "G.safetensors", "config.json", "model.safetensors"]
    assert filecmp.cmpfiles(converted["G"], again, names, shallow=False)[0] == names
    meta = json.loads((again / "config.json").read_text())
    assert meta["official"] == {"file": PKL.name, "sha256": official._sha256(PKL)}


def test_converted_g_and_gs_are_the_pickles_g_and_gs(tmp_path):
    kw = dict(CONFIG, resolution=16)
    write_random_pkl(tmp_path / "n.pkl", kw, gs_differs=True)
    G, D, Gs = official.load_converted(official.convert_pkl(tmp_path / "n.pkl", tmp_path / "n"))
    direct = load_network(tmp_path / "n.pkl")
    assert all(torch.equal(a, b) for a, b in zip(Gs.state_dict().values(), direct.state_dict().values()))
    # Gs = 0.5 * G variable by variable: the converter kept them apart
    assert torch.equal(G.mapping.layers[0].weight * 0.5, Gs.mapping.layers[0].weight)
    assert torch.equal(G.w_avg * 0.5, Gs.w_avg)


OFFICIAL = {  # the static_kwargs of NVIDIA's five networks (the training loop passes these; the rest are defaults)
    "ffhq1024": dict(resolution=1024, num_channels=3, label_size=0),
    "celebahq1024": dict(resolution=1024, num_channels=3, label_size=0),
    "bedrooms256": dict(resolution=256, num_channels=3, label_size=0),
    "cars512": dict(resolution=512, num_channels=3, label_size=0),
    "cats256": dict(resolution=256, num_channels=3, label_size=0),
}


@pytest.mark.parametrize("preset", sorted(OFFICIAL))
def test_official_configurations_convert_at_full_size(tmp_path, preset):
    path = tmp_path / f"karras2019stylegan-{preset}.pkl"  # the name plays no part: the config comes from the file
    write_random_pkl(path, OFFICIAL[preset])
    cfg, g, d, gs = official.read_official(path)
    assert cfg == dataclasses.replace(PRESETS[preset], default_psi=0.7, default_cutoff=8)
    Gs = official.build(Generator, cfg, gs, path, "Gs")  # every tensor's shape fits our network
    official.build(Discriminator, cfg, d, path, "D")
    if preset == "ffhq1024":
        assert sum(p.numel() for p in Gs.parameters()) == 26_219_627  # the official Gs
        G, D, Gs = official.load_converted(official.convert_pkl(path, tmp_path / "out"))
        assert count_params(G) == 26_219_627
        assert all(torch.equal(D.state_dict()[k], v) for k, v in d.items())
        assert all(torch.equal(Gs.state_dict()[k], v) for k, v in gs.items())


# ----------------------------------------------------------------------------------------------------------------
# Conditional networks (label_size 4): tests/data/cond32


COND = DATA / "cond32"


@pytest.fixture(scope="module")
def cond(tmp_path_factory):
    """The conditional reference arrays, and the networks converted from its pickle and from a pickle written from
    its fused G and D."""
    with np.load(COND / "official-golden.npz") as f:
        golden = {k: f[k] for k in f.files}
    root = tmp_path_factory.mktemp("cond")
    kw = {**CONFIG, "label_size": 4, "fused_scale": True}
    fused = root / "fused.pkl"
    Gn = generator_network("G", kw, variables(golden, "Gf"))
    write_pkl(fused, Gn, discriminator_network(kw, variables(golden, "Df")), Gn)
    nets = {"G": official.load_converted(official.convert_pkl(COND / "official-small.pkl", root / "G")),
            "Gf": official.load_converted(official.convert_pkl(fused, root / "Gf"))}
    return golden, nets


@pytest.mark.parametrize("name", ["G", "Gf"])
def test_conditional_generators_match_official(cond, name):
    golden, nets = cond
    G, _, Gs = nets[name]
    assert Gs.cfg.label_size == 4 and Gs.mapping.layers[0].weight.shape[1] == 64  # z and the embedding
    z, c = torch.from_numpy(golden["z"]), torch.from_numpy(golden["zlab"])
    for key in [k for k in golden if k.startswith(f"{name}/img_psi1_lod")]:
        res, alpha, up = lod_to_res(float(key.rsplit("lod", 1)[1]))
        for net in (G, Gs):
            img = F.interpolate(net(z, psi=1.0, res=res, alpha=alpha, noise_mode="const", labels=c), scale_factor=up)
            assert rel_err(img, golden[key]) <= TOL, key
        assert rel_err(Gs.map(z, psi=1.0, labels=c), golden[key.replace("img_psi1", "ws")]) <= TOL


def test_conditional_truncation_and_mixing_match_official(cond):
    golden, nets = cond
    _, _, Gs = nets["G"]
    z, c = torch.from_numpy(golden["z"]), torch.from_numpy(golden["zlab"])
    for key in [k for k in golden if k.startswith("G/img_psi") and "_cut" in k]:
        psi, cutoff = key[len("G/img_psi"):].split("_cut")
        img = Gs(z, psi=float(psi), cutoff=int(cutoff), noise_mode="const", labels=c)
        assert rel_err(img, golden[key]) <= TOL, key
    assert rel_err(Gs.synthesis(torch.from_numpy(golden["G/ws_mixed"]), noise_mode="const"),
                   golden["G/img_mixed"]) <= TOL
    # the seed contract with labels: one row for every seed equals that row repeated
    one = Gs.ws_from_seeds([1, 2], labels=c[0])
    assert torch.equal(one, Gs.ws_from_seeds([1, 2], labels=c[0].expand(2, -1)))
    assert not torch.equal(one, Gs.ws_from_seeds([1, 2], labels=c[1]))


@pytest.mark.parametrize("name, prefix", [("G", "D"), ("Gf", "Df")])
def test_conditional_discriminators_match_official(cond, name, prefix):
    golden, nets = cond
    _, D, _ = nets[name]
    x, c = torch.from_numpy(golden["x"]), torch.from_numpy(golden["xlab"])
    assert D.out.weight.shape[0] == 4
    for lod in (0.0, 0.5, 1.0, 1.5):
        res, alpha, down = lod_to_res(lod)
        scores = D(F.avg_pool2d(x, down), res=res, alpha=alpha, labels=c)[:, None]
        assert rel_err(scores, golden[f"{prefix}/scores_lod{lod}"]) <= TOL


def test_conditional_random_pickles_convert_and_a_label_mismatch_is_refused(tmp_path, capsys):
    write_random_pkl(tmp_path / "c.pkl", dict(CONFIG, resolution=8, label_size=3))
    G = load_network(tmp_path / "c.pkl")
    assert G.cfg.label_size == 3 and G.mapping.embed.shape == (3, 32)
    g, d, gs = official.read_pkl(tmp_path / "c.pkl")
    D = discriminator_network({**d["static_kwargs"], "label_size": 0}, dict(d["variables"]))
    G_net = generator_network("G", {**CONFIG, "resolution": 8, "label_size": 3}, {
        **dict(g["variables"]), **{f"{c.state['name']}/{k}": v for c in g["components"].values()
                                   for k, v in c.state["variables"]}})
    write_pkl(tmp_path / "bad.pkl", G_net, D, G_net)
    assert "label_size" in cli_error(capsys, [str(tmp_path / "bad.pkl"), "--out", str(tmp_path / "o")])


# ----------------------------------------------------------------------------------------------------------------
# Safety and bad input


class RunsCommand:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.target}",)


def cli_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as e:
        run_cli(official.main, argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize("where", ["top", "inside"])
def test_pickle_that_runs_a_command_is_refused_before_it_runs(tmp_path, capsys, where):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    if where == "top":
        path.write_bytes(pickle.dumps(RunsCommand(target)))
    else:  # hidden in the static_kwargs of an otherwise official-looking network
        Gn = generator_network("G", {**CONFIG, "x": RunsCommand(target)}, {})
        write_pkl(path, Gn, Gn, Gn)
    with pytest.raises(NetworkError, match="system"):
        load_network(path)
    err = cli_error(capsys, [str(path), "--out", str(tmp_path / "out")])
    assert "refusing" in err
    assert not target.exists()
    assert not (tmp_path / "out").exists()


def test_build_source_is_never_executed(tmp_path):
    target = tmp_path / "ran"
    path = tmp_path / "n.pkl"
    write_random_pkl(path, dict(CONFIG, resolution=8), build_src=f"open({str(target)!r}, 'w').close()\n")
    official.convert_pkl(path, tmp_path / "out")
    load_network(path)
    assert not target.exists()


def test_truncated_pickle_fails_in_one_line(tmp_path, capsys):
    path = tmp_path / "cut.pkl"
    path.write_bytes(PKL.read_bytes()[: PKL.stat().st_size // 2])
    assert "truncated" in cli_error(capsys, [str(path), "--out", str(tmp_path / "o")])


def test_pickle_of_something_else_fails_in_one_line(tmp_path, capsys):
    path = tmp_path / "other.pkl"
    path.write_bytes(pickle.dumps({"weights": np.zeros(3, np.float32)}))
    assert "not an official StyleGAN" in cli_error(capsys, [str(path), "--out", str(tmp_path / "o")])
    with pytest.raises(NetworkError, match="not an official StyleGAN"):
        load_network(path)


def test_stylegan2_pickle_is_named_and_refused(tmp_path, capsys):
    g, d, gs = official.read_pkl(PKL)
    path = tmp_path / "stylegan2-ffhq-config-f.pkl"
    nets = []
    for state in (g, d, gs):  # StyleGAN2's dnnlib writes version 4, and its G is built by G_main
        nets.append(discriminator_network(state["static_kwargs"], dict(state["variables"])))
        nets[-1].state.update(version=4, build_func_name="G_main")
    write_pkl(path, *nets)
    err = cli_error(capsys, [str(path), "--out", str(tmp_path / "o")])
    assert "StyleGAN2" in err and "not supported" in err


def test_convert_refuses_a_non_empty_out_folder(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert "not empty" in cli_error(capsys, [str(PKL), "--out", str(out)])
    assert not (out / "model.safetensors").exists()
    run_cli(official.main, [str(PKL), "--out", str(out), "--force"])
    assert (out / "notes.txt").read_text() == "mine" and load_network(out).cfg.resolution == 32


def test_generate_truncates_an_official_network_by_default(converted, tmp_path):
    import generate
    from PIL import Image

    def run(*extra):
        out = tmp_path / "-".join(extra or ("default",))
        generate.main(["--network", str(converted["G"]), "--seeds", "3", "--outdir", str(out), "--dtype", "float32", *extra])
        return np.asarray(Image.open(out / "seed0003.png"))

    G = generate.load_generator(converted["G"], dtype="float32")
    default = run()
    assert np.array_equal(default, generate.generate_images(G, [3], psi=0.7, cutoff=8)[0])
    assert not np.array_equal(default, run("--trunc", "1"))


@pytest.mark.parametrize("kw, message", [(dict(normalize_latents=False), "normalize_latents=False is not supported"),
                                         (dict(use_styles=False), "is not supported"),
                                         (dict(fmap_decay=0.5), "fmap_decay=0.5 is not supported")])
def test_configurations_we_cannot_represent_are_refused_in_one_line(tmp_path, capsys, kw, message):
    path = tmp_path / "n.pkl"
    write_random_pkl(path, dict(CONFIG, resolution=8, **kw))
    assert message in cli_error(capsys, [str(path), "--out", str(tmp_path / "o")])


def test_a_network_saved_mid_growth_is_refused(tmp_path):
    g, d, gs = official.read_pkl(PKL)
    variables = dict(d["variables"], lod=np.float32(0.5))
    D = discriminator_network(d["static_kwargs"], variables)
    G = generator_network("G", CONFIG, {**dict(g["variables"]), **{
        f"{c.state['name']}/{k}": v for c in g["components"].values() for k, v in c.state["variables"]}})
    write_pkl(tmp_path / "n.pkl", G, D, G)
    with pytest.raises(NetworkError, match="progressive growing"):
        load_network(tmp_path / "n.pkl")
    official.convert_pkl(PKL, tmp_path / "ok")  # the same networks at lod 0 convert


def test_metrics_never_truncate_an_official_network(converted):
    import metrics

    Gs = load_network(converted["G"])
    _, img = metrics.stream_samples(Gs, np.arange(3), seed=0, stream=0, device="cpu")
    Gs.cfg = dataclasses.replace(Gs.cfg, default_psi=1.0)
    _, untruncated = metrics.stream_samples(Gs, np.arange(3), seed=0, stream=0, device="cpu")
    assert torch.equal(img, untruncated)


def test_configs_saved_before_default_psi_still_load(tmp_path):
    from model import NetworkConfig

    d = PRESETS["cpu"].to_dict()
    del d["default_psi"]
    assert NetworkConfig.from_dict(d).default_psi == 1.0


def test_numpy1_array_names_load_too(tmp_path):
    """NVIDIA's 2019 files name numpy.core.multiarray (numpy 1); numpy 2 writes numpy._core.multiarray."""
    path = tmp_path / "n.pkl"
    kw = dict(CONFIG, resolution=8)
    write_random_pkl(path, kw, protocol=3)  # protocol 3 names globals in plain text lines, which we can rename
    data = path.read_bytes()
    assert b"numpy._core.multiarray\n" in data
    (tmp_path / "old.pkl").write_bytes(data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    a, b = load_network(path), load_network(tmp_path / "old.pkl")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
