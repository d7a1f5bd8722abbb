"""generate.py: seed parsing, determinism across batch sizes, every figure's size and layout, and bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import common
import generate
import model
from common import UsageError, parse_seeds, run_cli
from model import save_network, style_ranges
from conftest import ROOT

R = 16  # the tiny network's resolution


@pytest.fixture(scope="module")
def G(tiny_network):
    return generate.load_generator(tiny_network, "cpu")


def cell(fig: Image.Image, r: int, c: int) -> np.ndarray:
    """The pixels of cell (r, c) of a figure, found through its layout metadata."""
    layout = json.loads(fig.info["layout"])
    x, y = layout["cells"][r][c]
    n = layout["cell"]
    return np.asarray(fig.convert("RGB"))[y:y + n, x:x + n]


def run(argv, capsys):
    """main() through run_cli, as the script runs it: returns (exit code, stdout, stderr)."""
    try:
        run_cli(generate.main, argv)
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


# ----------------------------------------------------------------------------------------------------------------
# Parsing


def test_parse_seeds():
    assert parse_seeds("0-99") == list(range(100))
    assert parse_seeds("1,5,10-12") == [1, 5, 10, 11, 12]
    assert parse_seeds("7") == [7]
    for bad in ["5-3", "a", "1-", "-1", "", "1,,2", "1.5", str(2**32)]:
        with pytest.raises(UsageError):
            parse_seeds(bad)
    with pytest.raises(UsageError, match="reversed"):
        parse_seeds("10-2")


def test_psi_range():
    assert generate.parse_psis("1,0.7,0,-0.5,-1") == [1.0, 0.7, 0.0, -0.5, -1.0]
    assert model.check_psi(-2.0) == -2.0 and model.check_psi(2.0) == 2.0
    for bad in [2.01, -3, float("nan"), float("inf")]:
        with pytest.raises(UsageError, match=r"between -2.0 and 2.0"):
            model.check_psi(bad)
    with pytest.raises(UsageError, match="comma-separated"):
        generate.parse_psis("1,x")


def test_parse_styles():
    num_ws = 6  # 16x16
    names = generate.parse_styles("coarse,middle,fine", num_ws, R)
    assert [(a, b) for _, a, b in names] == [v[:2] for v in style_ranges(R).values()]
    assert generate.parse_styles("0-3", 18, 1024) == [("layers 0-3", 0, 4)]
    assert generate.parse_styles("2", num_ws, R) == [("layers 2", 2, 3)]
    for bad in ["3-1", "0-6", "coarse,huge", ""]:
        with pytest.raises(UsageError):
            generate.parse_styles(bad, num_ws, R)
    with pytest.raises(UsageError, match="layer numbers"):
        generate.parse_styles("coarse", 4, 8)  # below 16x16 there are no named ranges


def test_network_name():
    assert common.network_name("runs/00003-ffhq/network") == "00003-ffhq"
    assert common.network_name("runs/00003-ffhq/network/model.safetensors") == "00003-ffhq"
    assert common.network_name("/tmp/my net.safetensors") == "my_net"
    assert common.network_name("nets/stylegan-ffhq-1024x1024.pkl") == "stylegan-ffhq-1024x1024"
    assert common.network_name("nets/my-folder") == "my-folder"


# ----------------------------------------------------------------------------------------------------------------
# Determinism


@pytest.mark.parametrize("noise_mode", ["const", "random"])
def test_same_image_at_any_batch_size(G, noise_mode):
    seeds = [0, 3, 9, 1, 7, 2, 4, 8, 5]
    one = generate.generate_images(G, seeds, psi=0.7, noise_mode=noise_mode, batch=1)
    eight = generate.generate_images(G, seeds, psi=0.7, noise_mode=noise_mode, batch=8)
    assert one.shape == (len(seeds), R, R, 3) and one.dtype == np.uint8
    assert np.array_equal(one, eight)
    # the float images, too, and a seed does not depend on its neighbours
    ws = G.map(torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.cfg.z_dim) for s in seeds])).double())
    a = generate.synthesize(G, ws, noise_mode, seeds, batch=1)
    b = generate.synthesize(G, ws, noise_mode, seeds, batch=8)
    assert (a - b).abs().max() <= 1e-6
    assert np.array_equal(generate.generate_images(G, [7], psi=0.7, noise_mode=noise_mode), one[[4]])


def test_float32_network_on_cpu_is_close(tiny_network, G):
    """A caller may pass a float32 generator (as load_network returns it): same images up to rounding."""
    from model import load_network

    G32 = load_network(tiny_network, "cpu")
    a = generate.generate_images(G32, [1, 2], batch=2).astype(int)
    b = generate.generate_images(G, [1, 2], batch=2).astype(int)
    assert np.abs(a - b).max() <= 1


def test_noise_modes_differ(G):
    const = generate.generate_images(G, [1], noise_mode="const")
    assert not np.array_equal(const, generate.generate_images(G, [1], noise_mode="random"))
    assert not np.array_equal(const, generate.generate_images(G, [1], noise_mode="none"))


def test_cli_pngs_identical_across_batch_sizes(tiny_network, tmp_path, capsys):
    for batch in (1, 8):
        code, _, err = run(["--network", str(tiny_network), "--seeds", "0-9", "--trunc", "0.7",
                            "--outdir", str(tmp_path / f"b{batch}"), "--batch", str(batch)], capsys)
        assert code == 0, err
    for s in range(10):
        assert np.array_equal(pixels(tmp_path / f"b1/seed{s:04d}.png"), pixels(tmp_path / f"b8/seed{s:04d}.png"))


# ----------------------------------------------------------------------------------------------------------------
# Per-seed images, outdir, overwrite, metadata


def test_seeds_default_network_and_outdir(tiny_network, tmp_path, monkeypatch, capsys):
    work = tmp_path  # lay out runs/00000-tiny/network as train.py does (the fixture's folder is named runs0)
    (work / "runs").symlink_to(tiny_network.parents[1], target_is_directory=True)
    monkeypatch.chdir(work)
    code, out, err = run(["--seeds", "1,5,10-12", "--trunc", "0.5", "--trunc-cutoff", "4", "--grid"], capsys)
    assert code == 0, err
    outdir = work / "out" / "00000-tiny-seeds-psi0.5-cutoff4"
    assert sorted(p.name for p in outdir.iterdir()) == ["grid-seeds1_5_10-12.png"] + [
        f"seed{s:04d}.png" for s in (1, 5, 10, 11, 12)]
    img = Image.open(outdir / "seed0010.png")
    assert img.size == (R, R)
    assert img.text["seed"] == "10" and img.text["psi"] == "0.5" and img.text["cutoff"] == "4"
    assert img.text["noise_mode"] == "const" and Path(img.text["network"]).resolve() == tiny_network.resolve()
    G = generate.load_generator(tiny_network)
    assert np.array_equal(pixels(outdir / "seed0010.png"), generate.generate_images(G, [10], 0.5, 4)[0])


def test_never_overwrites_without_flag(tiny_network, tmp_path, capsys):
    args = ["--network", str(tiny_network), "--seeds", "0-3", "--outdir", str(tmp_path)]
    (tmp_path / "seed0002.png").write_bytes(b"mine")
    code, _, err = run(args, capsys)
    assert code == 2 and "seed0002.png already exists" in err and "--overwrite" in err
    assert not (tmp_path / "seed0000.png").exists()  # checked before anything was written
    assert (tmp_path / "seed0002.png").read_bytes() == b"mine"
    code, _, err = run(args + ["--overwrite"], capsys)
    assert code == 0, err
    assert pixels(tmp_path / "seed0002.png").shape == (R, R, 3)


def test_grid_figure_layout(G):
    seeds = [3, 1, 4, 1, 5]
    imgs = generate.generate_images(G, seeds)
    fig = generate.grid_figure(imgs, seeds, upscale=1)  # 3 columns, 2 rows
    layout = json.loads(fig.info["layout"])
    assert layout["cell"] == R and [len(r) for r in layout["cells"]] == [3, 2]
    assert fig.width == 3 * R + 2 * generate.GAP
    for i in range(5):
        assert np.array_equal(cell(fig, i // 3, i % 3), imgs[i])
    big = generate.grid_figure(imgs, seeds, cols=5, upscale=4)
    assert json.loads(big.info["layout"])["cell"] == 4 * R and big.width == 5 * 4 * R + 4 * generate.GAP
    assert np.array_equal(cell(big, 0, 2)[::4, ::4], imgs[2])


# ----------------------------------------------------------------------------------------------------------------
# Figures


def test_style_mixing_figure(G):
    rows, cols = [1, 2], [3, 4, 5]
    fig = generate.style_mixing_figure(G, rows, cols, upscale=1)
    layout = json.loads(fig.info["layout"])
    styles = generate.parse_styles("coarse,middle,fine", G.num_ws, R)
    assert [len(r) for r in layout["cells"]] == [4] * (1 + 3 * len(rows))  # header + a block of A rows per range
    assert layout["cells"][0][0] is None  # the top-left corner is blank
    assert fig.width > 4 * R + 3 * generate.GAP  # room for the row labels
    a_imgs, b_imgs = generate.generate_images(G, rows), generate.generate_images(G, cols)
    for j in range(3):
        assert np.array_equal(cell(fig, 0, j + 1), b_imgs[j])  # top row: the B sources
    for k in range(3):
        for i in range(2):
            assert np.array_equal(cell(fig, 1 + k * 2 + i, 0), a_imgs[i])  # left column: the A sources
    # the 'fine' block (last) takes layers [first, num_ws) from B: the generator's own style mixing gives the same
    first = styles[-1][1]
    for i, a in enumerate(rows):
        for j, b in enumerate(cols):
            z = generate.seed_to_z([a, b], G.cfg.z_dim).double()
            ref = generate.to_uint8(G(z[:1], noise_mode="const", mix_z=z[1:], mix_layer=first))[0]
            assert np.array_equal(cell(fig, 1 + 2 * 2 + i, j + 1), ref)
    # coarse styles from B change the image; blocks are separated by a wider gap
    assert not np.array_equal(cell(fig, 1, 1), a_imgs[0])
    y = [c[0][1] if c[0] else c[1][1] for c in layout["cells"]]
    assert y[3] - y[2] == R + generate.GAP + generate.BLOCK_GAP and y[2] - y[1] == R + generate.GAP


def test_style_mixing_with_itself_and_explicit_layers(G):
    fig = generate.style_mixing_figure(G, [6], [6], generate.parse_styles("0-3", G.num_ws, R), upscale=1)
    assert [len(r) for r in json.loads(fig.info["layout"])["cells"]] == [2, 2]
    assert np.array_equal(cell(fig, 1, 1), generate.generate_images(G, [6])[0])  # mixing with itself: no change


def test_noise_figure(G):
    fig = generate.noise_figure(G, 5, samples=12, shown=3, zoom=4, upscale=2)
    layout = json.loads(fig.info["layout"])
    assert layout["cell"] == 2 * R and [len(r) for r in layout["cells"]] == [4, 4]
    assert fig.width > 4 * 2 * R + 3 * generate.GAP
    real = [cell(fig, 0, k) for k in range(3)]
    assert not np.array_equal(real[0], real[1]) and not np.array_equal(real[1], real[2])  # different noise
    std = cell(fig, 0, 3).astype(int)
    assert (std[..., 0] == std[..., 1]).all() and std.max() == 255 and std.min() < 255  # grey map, max white
    # the std map is the per-pixel std over the realisations (averaged over RGB), scaled to its maximum
    ws = G.truncate(G.broadcast(G.w_from_seeds([5])), 1.0).expand(12, -1, -1)
    imgs = generate.synthesize(G, ws, "random", list(range(12)))
    ref = imgs.double().std(0, unbiased=False).mean(0)
    ref = (ref / ref.max() * 255).round().byte().numpy()
    assert np.array_equal(std[::2, ::2, 0], ref)
    assert layout["std_max"] == pytest.approx(float(imgs.double().std(0, unbiased=False).mean(0).max()))
    # the crop row enlarges the centre quarter (4x4 of 16x16) of each realisation
    crop = cell(fig, 1, 0)[::2, ::2]
    lo = (R - R // 4) // 2
    assert np.array_equal(crop[::4, ::4], real[0][::2, ::2][lo:lo + 4, lo:lo + 4])
    assert [len(r) for r in json.loads(generate.noise_figure(G, 5, 4, 2, zoom=0, upscale=1).info["layout"])["cells"]
            ] == [3]


def test_truncation_figure(G):
    seeds, psis = [1, 2, 3], [1.0, 0.5, 0.0, -1.0]
    fig = generate.truncation_figure(G, seeds, psis, upscale=1)
    layout = json.loads(fig.info["layout"])
    assert [len(r) for r in layout["cells"]] == [4, 4, 4] and layout["cols"] == psis and layout["rows"] == seeds
    plain = generate.generate_images(G, seeds)
    half = generate.generate_images(G, seeds, psi=0.5)
    for i in range(3):
        assert np.array_equal(cell(fig, i, 0), plain[i])  # psi = 1 changes nothing
        assert np.array_equal(cell(fig, i, 1), half[i])
        assert np.array_equal(cell(fig, i, 2), cell(fig, 0, 2))  # psi = 0: every seed gives the average image
    assert not np.array_equal(cell(fig, 0, 3), cell(fig, 1, 3))


@pytest.mark.parametrize("space", ["w", "z"])
def test_interpolation_frames(G, space):
    seeds = [1, 2, 3]
    frames = generate.interpolation_frames(G, seeds, space, frames=4)
    assert frames.shape == (2 * 4 + 1, R, R, 3)
    ends = generate.generate_images(G, seeds)
    for k, f in zip([0, 4, 8], seeds):
        assert np.abs(frames[k].astype(int) - ends[seeds.index(f)]).max() <= (0 if space == "w" else 1)
    assert not np.array_equal(frames[1], frames[0])
    looped = generate.interpolation_frames(G, seeds, space, frames=4, loop=True)
    assert looped.shape[0] == 3 * 4 and np.array_equal(looped[:9], frames)


def test_interpolation_noise_is_fixed(G):
    """With random noise every frame takes the first seed's noise: a path from a seed to itself is constant."""
    frames = generate.interpolation_frames(G, [4, 4], "w", frames=3, noise_mode="random")
    assert all(np.array_equal(f, frames[0]) for f in frames)
    assert np.array_equal(frames[0], generate.generate_images(G, [4], noise_mode="random")[0])


def test_figure_commands_write_files(tiny_network, tmp_path, capsys):
    net = ["--network", str(tiny_network), "--outdir", str(tmp_path), "--upscale", "1"]
    cases = {
        "mixing-rows1-2-cols3-5.png": ["--figure", "mixing", "--rows", "1-2", "--cols", "3-5"],
        "mixing-rows1-cols3-styles0-1_fine.png": ["--figure", "mixing", "--rows", "1", "--cols", "3",
                                                  "--styles", "0-1,fine"],
        "noise-seed0005.png": ["--figure", "noise", "--seeds", "5", "--samples", "8"],
        "truncation-seeds1-2-psis1_0_-1.png": ["--figure", "truncation", "--seeds", "1-2", "--psis", "1,0,-1"],
        "interp-z-seeds1_2-loop.gif": ["--figure", "interp", "--seeds", "1,2", "--space", "z", "--frames", "3",
                                       "--loop"],
        "interp-w-seeds1_2.webp": ["--figure", "interp", "--seeds", "1,2", "--frames", "3", "--format", "webp"],
    }
    for name, argv in cases.items():
        code, out, err = run(net + argv, capsys)
        assert code == 0, err
        assert (tmp_path / name).is_file() and name in out
    mix = Image.open(tmp_path / "mixing-rows1-2-cols3-5.png")
    assert mix.text["figure"].startswith("style mixing") and json.loads(mix.text["rows"]) == [1, 2]
    assert len(json.loads(mix.text["layout"])["cells"]) == 1 + 3 * 2
    assert len(json.loads(Image.open(tmp_path / "mixing-rows1-cols3-styles0-1_fine.png").text["layout"])["cells"]) == 3
    trunc = Image.open(tmp_path / "truncation-seeds1-2-psis1_0_-1.png")
    assert json.loads(trunc.text["psi"]) == [1, 0, -1] and trunc.text["network"] == str(tiny_network)
    gif = Image.open(tmp_path / "interp-z-seeds1_2-loop.gif")
    assert gif.n_frames == 2 * 3 and gif.size == (R, R) and "seeds" in json.loads(gif.info["comment"])
    assert Image.open(tmp_path / "interp-w-seeds1_2.webp").n_frames == 3 + 1
    code, _, err = run(net + cases["noise-seed0005.png"], capsys)  # a second time: refuses to overwrite
    assert code == 2 and "--overwrite" in err


# ----------------------------------------------------------------------------------------------------------------
# Bad input: one line, exit code 2, no traceback


def test_without_runs_the_reference_network_is_used(tiny_network, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(common, "REFERENCE_NETWORK", Path(tiny_network))
    code, out, err = run(["--seeds", "3", "--outdir", "out"], capsys)
    assert code == 0 and (tmp_path / "out" / "seed0003.png").is_file()
    assert "using the reference network that ships with the code" in err
    (tmp_path / "runs" / "00000-mine").mkdir(parents=True)  # a run of your own wins over the reference
    save_network(generate.load_network(tiny_network), tmp_path / "runs" / "00000-mine" / "network")
    assert common.resolve_network(None) == str(Path("runs") / "00000-mine" / "network")


def _bad_network(tmp_path: Path) -> Path:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"this is not a safetensors file")
    return bad


@pytest.mark.parametrize("argv, fix", [
    (["--seeds", "9-3"], "low-high"),
    (["--seeds", "1,x"], "ranges like 0-99"),
    (["--seeds", "0-3", "--trunc", "2.5"], "truncation psi must be between -2.0 and 2.0"),
    (["--figure", "truncation", "--seeds", "1", "--psis", "1,-7"], "truncation psi must be between"),
    (["--seeds", "0-3", "--trunc", "0.7", "--trunc-cutoff", "7"], "from 0 to 6"),
    (["--seeds", "0-3", "--batch", "0"], "--batch must be at least 1"),
    (["--figure", "mixing", "--rows", "1"], "--cols"),
    (["--figure", "mixing", "--rows", "1", "--cols", "2", "--styles", "0-9"], "e.g. --styles 0-3"),
    (["--figure", "interp", "--seeds", "1"], "at least two seeds"),
    (["--figure", "noise", "--seeds", "1", "--zoom", "32"], "at most 16"),
    (["--figure", "nope", "--seeds", "1"], "invalid choice"),
    (["--grid"], "--seeds is required"),
    (["--seeds", "1", "--device", "cuda:0" if not torch.cuda.is_available() else "nonsense"], "--device"),
])
def test_bad_input_in_process(tiny_network, tmp_path, capsys, argv, fix):
    code, out, err = run(["--network", str(tiny_network), "--outdir", str(tmp_path / "out")] + argv, capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and fix in err, err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bad_network_in_process(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(common, "REFERENCE_NETWORK", tmp_path / "no-reference")
    code, _, err = run(["--seeds", "1"], capsys)  # no runs/ here, and no shipped network
    assert code == 2 and "train one" in err and err.count("\n") == 1
    code, _, err = run(["--seeds", "1", "--network", str(tmp_path / "missing")], capsys)
    assert code == 2 and "no network at" in err and err.count("\n") == 1
    code, _, err = run(["--seeds", "1", "--network", str(_bad_network(tmp_path))], capsys)
    assert code == 2 and "not a valid safetensors file" in err and err.count("\n") == 1


def test_outdir_not_writable_in_process(tiny_network, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(["--network", str(tiny_network), "--seeds", "1", "--outdir", str(blocker / "sub")], capsys)
    assert code == 2 and "cannot write to --outdir" in err and "writable" in err and err.count("\n") == 1


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write to read-only folders")
def test_read_only_outdir(tiny_network, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        code, _, err = run(["--network", str(tiny_network), "--seeds", "1", "--outdir", str(ro)], capsys)
    finally:
        ro.chmod(0o700)
    assert code == 2 and "cannot write to --outdir" in err


def test_mp4_without_a_system_ffmpeg(tiny_network, tmp_path, capsys, monkeypatch):
    """mp4 through the ffmpeg of the imageio-ffmpeg wheel: written, and read back frame by frame, with no ffmpeg on
    the PATH."""
    import imageio_ffmpeg
    import shutil

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("IMAGEIO_FFMPEG_EXE", raising=False)
    assert shutil.which("ffmpeg") is None
    code, _, err = run(["--network", str(tiny_network), "--outdir", str(tmp_path), "--figure", "interp",
                        "--seeds", "1,2", "--frames", "3", "--format", "mp4"], capsys)
    assert code == 0, err
    (path,) = tmp_path.glob("*.mp4")
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    frames = list(reader)
    assert meta["size"] == (16, 16) and len(frames) == 4  # 3 frames of the transition and the end point


def test_cli_subprocess_errors(tiny_network, tmp_path):
    """The real script: bad seeds, a bad network and an unwritable outdir each give one line and exit 2."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases = [
        (["--seeds", "99-0"], "reversed"),
        (["--seeds", "1", "--network", str(_bad_network(tmp_path))], "not a valid safetensors file"),
        (["--seeds", "1", "--network", str(tiny_network), "--outdir", str(blocker / "out")], "cannot write"),
    ]
    for argv, fix in cases:
        res = subprocess.run([sys.executable, str(ROOT / "generate.py")] + argv, cwd=tmp_path, capture_output=True,
                             text=True, timeout=120)
        assert res.returncode == 2, res.stderr
        assert "Traceback" not in res.stderr and res.stderr.count("\n") == 1 and fix in res.stderr, res.stderr


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit) as e:
        generate.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "--figure mixing --rows" in out and "--overwrite" in out
