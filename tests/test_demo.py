"""demo.py: the pure inference functions, every endpoint through gradio_client, the CLI's errors, and one end-to-end
run in headless Chromium (Debian's chromium driven by Playwright: skipped locally when it is missing, a failure in
CI, whose install.sh --browser installs it)."""

import contextlib
import dataclasses
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import common
import checkpoint
import demo
from common import UsageError, run_cli
from conftest import TINY, make_tiny_generator
from model import save_network

gr_client = pytest.importorskip("gradio_client")


@pytest.fixture(scope="module")
def G():
    return make_tiny_generator()


# ----------------------------------------------------------------------------------------------------------------
# Pure functions


def test_generate_image_is_seeded_and_psi_acts(G):
    a = demo.generate_image(G, 5, psi=0.7, noise_mode="random", noise_seed=3)
    assert a.shape == (16, 16, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, demo.generate_image(G, 5, psi=0.7, noise_mode="random", noise_seed=3))
    assert not np.array_equal(a, demo.generate_image(G, 6, psi=0.7, noise_mode="random", noise_seed=3))
    assert not np.array_equal(a, demo.generate_image(G, 5, psi=0.7, noise_mode="random", noise_seed=4))
    assert not np.array_equal(a, demo.generate_image(G, 5, psi=0.3, noise_mode="random", noise_seed=3))
    # psi = 0 on every layer is the average image, whatever the seed (paper Sec. 4.1)
    np.testing.assert_array_equal(demo.generate_image(G, 1, psi=0.0), demo.generate_image(G, 2, psi=0.0))
    # a cutoff of 0 truncates no layer: the same as psi = 1
    np.testing.assert_array_equal(demo.generate_image(G, 1, psi=0.2, cutoff=0), demo.generate_image(G, 1, psi=1.0))


def test_mix_images_properties(G):
    a, b, m = demo.mix_images(G, 3, 3, 0, 2, psi=0.7)  # mixing a latent with itself changes nothing
    np.testing.assert_array_equal(m, demo.generate_image(G, 3, psi=0.7))
    np.testing.assert_array_equal(a, m)
    a, b, m = demo.mix_images(G, 3, 4, 0, G.num_ws, psi=0.7, noise_mode="random", noise_seed=9)  # B on every layer
    np.testing.assert_array_equal(m, b)
    np.testing.assert_array_equal(b, demo.generate_image(G, 4, psi=0.7, noise_mode="random", noise_seed=9))
    a, b, m = demo.mix_images(G, 3, 4, 2, 4)
    assert not np.array_equal(m, a) and not np.array_equal(m, b)


def test_stochastic_variation(G):
    imgs, std = demo.stochastic_variation(G, 7, n=3, noise_seed=1)
    assert imgs.shape == (3, 16, 16, 3) and std.shape == (16, 16, 3) and std.dtype == np.uint8
    assert not np.array_equal(imgs[0], imgs[1]) and std.max() == 255  # noise varies the image; map scaled to white
    again, _ = demo.stochastic_variation(G, 7, n=3, noise_seed=1)
    np.testing.assert_array_equal(imgs, again)


@pytest.mark.parametrize("call, message", [
    (lambda G: demo.generate_image(G, -1), "seed must be a whole number"),
    (lambda G: demo.generate_image(G, 2**32), "4294967295"),
    (lambda G: demo.generate_image(G, 1.5), "whole number"),
    (lambda G: demo.generate_image(G, None), "seed is empty"),
    (lambda G: demo.generate_image(G, 0, psi=2.5), "psi must be between"),
    (lambda G: demo.generate_image(G, 0, psi=float("nan")), "psi must be between"),
    (lambda G: demo.generate_image(G, 0, cutoff=7), "cutoff"),
    (lambda G: demo.generate_image(G, 0, noise_mode="loud"), "noise mode"),
    (lambda G: demo.mix_images(G, 0, 1, 3, 3), "0 <= first < stop <= 6"),
    (lambda G: demo.mix_images(G, 0, 1, 0, 7), "out of range"),
    (lambda G: demo.stochastic_variation(G, 0, n=1), "variations"),
])
def test_bad_inputs_raise_usage_errors(G, call, message):
    with pytest.raises(UsageError, match=message):
        call(G)


def test_upscale_is_nearest_neighbour():
    img = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    big = demo.upscale(img, 5)  # a whole factor: ceil(5 / 2) = 3
    assert big.shape == (6, 6, 3)
    np.testing.assert_array_equal(big[::3, ::3], img)
    assert demo.upscale(np.zeros((512, 512, 3), np.uint8), 256).shape == (512, 512, 3)  # never shrinks


# ----------------------------------------------------------------------------------------------------------------
# The app, served on a free port, every endpoint through gradio_client


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def networks(tiny_network, tmp_path_factory):
    """Two runs: the tiny 16x16 network (newest, the default) and a 32x32 one with more style layers."""
    other = tmp_path_factory.mktemp("runs2") / "00001-tiny32" / "network"
    save_network(make_tiny_generator(1, dataclasses.replace(TINY, resolution=32)), other)
    return {"00000-tiny": tiny_network, "00001-tiny32": other}


@pytest.fixture(scope="module")
def app(networks):
    blocks = demo.build_demo(networks, "cpu")
    url = demo.launch_demo(blocks, port=_free_port(), block=False)
    yield url
    blocks.close()


@pytest.fixture(scope="module")
def client(app, tmp_path_factory):
    return gr_client.Client(app, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


def _img(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_generate_endpoint(client):
    args = dict(network="00000-tiny", seed=11, psi=0.7, cutoff=6, noise_mode="random", noise_seed=2)
    path, info = client.predict(**args, api_name="/generate")
    a = _img(path)
    assert a.shape == (256, 256, 3)  # 16x16 enlarged 16 times
    assert "ms per image" in info
    np.testing.assert_array_equal(a, _img(client.predict(**args, api_name="/generate")[0]))
    # the served pixels are the pure function's, enlarged
    np.testing.assert_array_equal(a[::16, ::16], demo.generate_image(make_tiny_generator(), 11, 0.7, 6, "random", 2))
    b = _img(client.predict(**{**args, "psi": 0.2}, api_name="/generate")[0])
    assert not np.array_equal(a, b)
    c = _img(client.predict(**{**args, "network": "00001-tiny32"}, api_name="/generate")[0])
    assert c.shape == (256, 256, 3) and not np.array_equal(a, c)


def test_mix_endpoint(client):
    common = dict(network="00000-tiny", psi=0.7, cutoff=6, noise_mode="const", noise_seed=0)
    a, b, m, info = client.predict(seed_a=4, seed_b=4, first=0, stop=2, **common, api_name="/mix")
    plain = _img(client.predict(network="00000-tiny", seed=4, psi=0.7, cutoff=6, noise_mode="const", noise_seed=0,
                                api_name="/generate")[0])
    for p in (a, b, m):
        np.testing.assert_array_equal(_img(p), plain)  # mixing a seed with itself gives the plain image
    a, b, m, info = client.predict(seed_a=4, seed_b=5, first=2, stop=4, **common, api_name="/mix")
    a, b, m = _img(a), _img(b), _img(m)
    assert m.shape == (256, 256, 3) and not np.array_equal(m, a) and not np.array_equal(m, b)
    assert "layers 2–3" in info


def test_variation_endpoint(client):
    gallery, std, info = client.predict(network="00000-tiny", seed=3, draws=3, psi=1.0, cutoff=6, noise_seed=0,
                                        api_name="/variation")
    imgs = [_img(item["image"]) for item in gallery]
    assert len(imgs) == 3 and all(x.shape == (256, 256, 3) for x in imgs)
    assert not np.array_equal(imgs[0], imgs[1])
    assert _img(std).shape == (256, 256, 3) and "3 noise draws" in info


def test_layer_preset_and_select_network_endpoints(client):
    # the tiny 16x16 network has 6 style layers: coarse 4^2 = 0-1, middle 8^2 = 2-3, fine 16^2 = 4-5
    assert tuple(client.predict("00000-tiny", "middle", api_name="/layer_preset")) == (2, 4)
    assert tuple(client.predict("00001-tiny32", "fine", api_name="/layer_preset")) == (6, 8)
    info, cutoff, first, stop, preset, gen_label, mix_label = client.predict("00001-tiny32", api_name="/select_network")
    assert gen_label["visible"] is False and mix_label["visible"] is False  # unconditional: no selector
    assert "32×32" in info and "8 style layers" in info
    assert cutoff["maximum"] == 8 and stop["maximum"] == 8 and first["maximum"] == 7
    assert [v for _, v in preset["choices"]] == ["coarse", "middle", "fine", "custom"]
    assert "16²–32²" in preset["choices"][2][0] or "32²" in preset["choices"][2][0]


def test_random_seed_endpoint(client):
    seeds = {client.predict(api_name="/random_seed") for _ in range(3)}
    assert all(0 <= s <= demo.SEED_MAX for s in seeds) and len(seeds) > 1


@pytest.mark.parametrize("endpoint, kwargs, message", [
    ("/generate", dict(seed=2**32), "seed must be a whole number from 0 to 4294967295"),
    ("/generate", dict(seed=-3), "seed must be a whole number"),
    ("/generate", dict(seed="abc"), "seed must be a whole number"),
    ("/generate", dict(seed=1.5), "seed must be a whole number"),  # not rounded to 2
    ("/generate", dict(psi=2.5), "truncation psi must be between -2.0 and 2.0"),
    ("/generate", dict(psi="high"), "truncation psi must be between"),
    ("/generate", dict(network="00000-tiny", cutoff=8), "cutoff must be a layer count from 0 to 6"),
    ("/generate", dict(cutoff="all"), "cutoff must be a layer count"),
    ("/generate", dict(noise_mode="loud"), "noise mode must be one of random, const, none"),
    ("/generate", dict(network="nope"), "unknown network 'nope'"),
    ("/mix", dict(network="00000-tiny", first=4, stop=3), "0 <= first < stop <= 6"),
    ("/mix", dict(network="00000-tiny", first=0, stop=8), "out of range"),
    ("/mix", dict(first="a"), "the mixed layers must be whole numbers"),
    ("/mix", dict(seed_b=2**32 + 5), "seed B must be"),
    ("/mix", dict(psi=[1]), "truncation psi must be between"),
    ("/variation", dict(noise_seed=-1), "noise seed must be"),
    ("/variation", dict(draws="many"), "the number of variations must be from 2 to 8"),
    ("/variation", dict(draws=9), "the number of variations must be from 2 to 8"),
    ("/layer_preset", dict(preset="everything"), "unknown layer preset 'everything'"),
    ("/layer_preset", dict(network=3, preset="fine"), "unknown network 3"),
    ("/select_network", dict(network="nope"), "unknown network 'nope'"),
])
def test_bad_input_is_our_message_not_a_traceback(client, capfd, endpoint, kwargs, message):
    capfd.readouterr()
    with pytest.raises(gr_client.exceptions.AppError) as e:
        client.predict(**kwargs, api_name=endpoint)
    assert message in str(e.value) and "Traceback" not in str(e.value)
    assert "Traceback" not in capfd.readouterr().err  # nor in the server's log (the server runs in this process)


# ----------------------------------------------------------------------------------------------------------------
# CLI


def test_cli_without_a_network_says_how_to_train_one(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(common, "REFERENCE_NETWORK", tmp_path / "no-reference")  # else the shipped one is served
    with pytest.raises(SystemExit) as e:
        run_cli(demo.main, ["--runs-dir", str(tmp_path / "runs")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "accelerate launch train.py" in err


def test_cli_bad_network_path_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        run_cli(demo.main, ["--network", str(tmp_path / "nope")])
    assert e.value.code == 2 and "no network at" in capsys.readouterr().err


def test_list_networks_newest_first_then_the_reference(networks, tmp_path, monkeypatch):
    for i, name in enumerate(["00000-old", "00001-new"]):
        save_network(make_tiny_generator(), tmp_path / name / "network")
        os.utime(tmp_path / name / "network" / "model.safetensors", (1e9 + i, 1e9 + i))
    monkeypatch.setattr(common, "REFERENCE_NETWORK", tmp_path / "no-reference")
    assert list(demo.list_networks(tmp_path)) == ["00001-new", "00000-old"]
    assert demo.list_networks(tmp_path / "missing") == {}
    save_network(make_tiny_generator(), tmp_path / "shipped")
    monkeypatch.setattr(common, "REFERENCE_NETWORK", tmp_path / "shipped")
    assert list(demo.list_networks(tmp_path)) == ["00001-new", "00000-old", "reference (shipped)"]
    assert demo.list_networks(tmp_path / "missing") == {"reference (shipped)": tmp_path / "shipped"}


# ----------------------------------------------------------------------------------------------------------------
# End to end in a real browser


def _need_chromium():
    if not Path(demo.CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests: {demo.CHROMIUM} is missing (bash install.sh --browser)")
        pytest.skip(f"no {demo.CHROMIUM}: install it with `bash install.sh --browser`")


@contextlib.contextmanager
def chromium_on(url: str):
    """(browser, page): headless Chromium on the app at `url`, once the page has made its first image."""
    _need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = demo.launch_chromium(p)
        try:
            page = browser.new_page()
            page.goto(url)
            page.locator("#generated img").wait_for()
            yield browser, page
        finally:
            browser.close()


def test_browser_generate_then_move_psi(app):
    with chromium_on(app) as (_, page):  # the page makes seed 0's image when it loads
        img = page.locator("#generated img")
        seed = page.locator("#seed input[type=number]")
        seed.fill("123")
        page.get_by_role("button", name="Generate", exact=True).click()
        page.wait_for_function("document.querySelector('#generate-info')?.innerText.includes('seed 123')")
        src = img.get_attribute("src")
        assert src

        psi = page.locator("#psi input[type=number]")
        psi.fill("0.1")
        psi.press("Tab")  # leaving the box releases the slider, which re-runs the open tab
        page.wait_for_function("document.querySelector('#generate-info')?.innerText.includes('psi 0.1')")
        assert img.get_attribute("src") != src

        # on the style-mixing tab, the same slider re-runs the mix instead
        page.get_by_role("tab", name="Style mixing").click()
        page.get_by_role("button", name="Mix", exact=True).click()
        mixed = page.locator("#mix-ab img")
        mixed.wait_for()
        src = mixed.get_attribute("src")
        psi.fill("0.9")
        psi.press("Tab")
        page.wait_for_function("document.querySelector('#mix-ab img')?.getAttribute('src') !== " + repr(src))

        # a bad seed shows our message in the page, not a traceback
        page.get_by_role("tab", name="Generate").click()
        seed.fill("-1")
        page.get_by_role("button", name="Generate", exact=True).click()
        page.get_by_text("seed must be a whole number from 0 to 4294967295").first.wait_for()
        assert "Traceback" not in page.content()


def test_screenshot_for_the_readme(app, tmp_path):
    _need_chromium()
    path = demo.take_screenshot(app, tmp_path / "docs" / "demo.png")
    img = Image.open(path)
    assert img.width == 1280 and img.height >= 700 and path.stat().st_size < 400_000


# ----------------------------------------------------------------------------------------------------------------
# A conditional network: the class selector, through gradio_client and in Chromium

CLASSES = ["cat", "dog", "fox"]


@pytest.fixture(scope="module")
def cond_setup(tmp_path_factory):
    cfg = dataclasses.replace(TINY, label_size=3, label_names=CLASSES, label_kind="classes",
                              label_prior=[0.5, 0.25, 0.25])
    G = make_tiny_generator(2, cfg)
    folder = tmp_path_factory.mktemp("cond") / "00000-cond" / "network"
    save_network(G, folder)
    blocks = demo.build_demo({"00000-cond": folder}, "cpu")
    url = demo.launch_demo(blocks, port=_free_port(), block=False)
    yield G, url
    blocks.close()


def test_class_selector_through_gradio_client(cond_setup, client, tmp_path):
    G, url = cond_setup
    c = gr_client.Client(url, verbose=False, download_files=str(tmp_path))
    args = dict(network="00000-cond", seed=4, psi=1.0, cutoff=6, noise_mode="const", noise_seed=0)
    cat, dog = (_img(c.predict(**args, label=name, api_name="/generate")[0]) for name in ("cat", "dog"))
    assert not np.array_equal(cat, dog)
    np.testing.assert_array_equal(dog, demo.upscale(demo.generate_image(G, 4, 1.0, 6, label="dog")))
    G.fixed_labels = None
    expected = G.ws_from_seeds([4], 1.0, labels=torch.tensor([0.0, 1.0, 0.0]))
    assert torch.equal(G.ws_from_seeds([4], 1.0, labels=demo.label_row(G, "dog")), expected)
    a, b, m = (_img(p) for p in c.predict("00000-cond", 1, 2, 0, 2, 1.0, 6, "const", 0, "fox", api_name="/mix")[:3])
    np.testing.assert_array_equal(m, demo.upscale(demo.mix_images(G, 1, 2, 0, 2, 1.0, 6, label="fox")[2]))
    with pytest.raises(Exception, match="unknown label 'wolf': choose from cat, dog, fox"):
        c.predict(**args, label="wolf", api_name="/generate")
    with pytest.raises(Exception, match="this network is unconditional"):  # the other app's networks have none
        client.predict(network="00000-tiny", seed=1, psi=1.0, cutoff=6, noise_mode="const", noise_seed=0,
                       label="dog", api_name="/generate")
    selector = c.predict("00000-cond", api_name="/select_network")[5]
    assert selector.get("visible", True) and [v for _, v in selector["choices"]] == CLASSES


def test_browser_class_selector(cond_setup, app):
    _, url = cond_setup
    with chromium_on(url) as (browser, page):
        img, srcs = page.locator("#generated img"), {}
        for name in ("fox", "cat"):  # choosing a class re-makes the image with it
            page.locator("#generate-label input").click()
            page.get_by_role("option", name=name).click()
            page.wait_for_function(f"document.querySelector('#generate-info')?.innerText.includes('class {name}')")
            srcs[name] = img.get_attribute("src")
        assert srcs["fox"] != srcs["cat"] and "Traceback" not in page.content()
        other = browser.new_page()  # an unconditional network's page shows no selector
        other.goto(app)
        other.locator("#generated img").wait_for()
        assert other.locator("#generate-label").count() == 0 or not other.locator("#generate-label").is_visible()


# ----------------------------------------------------------------------------------------------------------------
# Your photo: projection, edits and mixing, through gradio_client and in Chromium


@pytest.fixture(scope="module")
def photo_setup(tmp_path_factory):
    """A tiny network with attribute directions beside it, an app serving it, and a photo."""
    import latents

    G = make_tiny_generator()
    folder = tmp_path_factory.mktemp("photo") / "00000-tiny" / "network"
    save_network(G, folder)
    d = np.random.RandomState(0).randn(2, G.cfg.w_dim)
    latents.save_directions(latents.directions_path(folder), ["smiling", "bangs"],
                            d / np.linalg.norm(d, axis=1, keepdims=True), [1.0, 1.0],
                            {"fingerprint": latents.network_fingerprint(G)})
    photo = tmp_path_factory.mktemp("upload") / "me.png"
    Image.fromarray(np.random.RandomState(1).randint(0, 255, (30, 50, 3), np.uint8)).save(photo)
    blocks = demo.build_demo({"00000-tiny": folder}, "cpu")
    url = demo.launch_demo(blocks, port=_free_port(), block=False)
    yield url, photo, checkpoint.load_network(folder)  # the network as the app loads it (channels_last on a CPU)
    blocks.close()


def test_photo_functions(G, tmp_path):
    photo = tmp_path / "me.png"
    Image.fromarray(np.full((20, 40, 3), 128, np.uint8)).save(photo)
    img, lat = demo.project_photo(G, str(photo), 3, "w+")
    assert img.shape == (16, 16, 3) and lat["ws"].shape == (1, G.num_ws, G.cfg.w_dim) and lat["lpips"] >= 0
    dirs = {"names": ["smiling"], "directions": np.eye(1, G.cfg.w_dim, dtype=np.float32),
            "stds": np.ones(1, np.float32)}
    np.testing.assert_array_equal(demo.edit_projection(G, lat, dirs, {"smiling": 0.0}), img)  # no edit, no change
    assert not np.array_equal(demo.edit_projection(G, lat, dirs, {"smiling": 3.0}), img)
    seed_img, mixed = demo.mix_projection(G, lat, 4, 0, G.num_ws)  # every layer from the seed, the photo's noise
    _, self_mix = demo.mix_projection(G, lat, 4, 0, 0 + 1)
    assert not np.array_equal(mixed, img) and not np.array_equal(self_mix, img)
    for call, message in [(lambda: demo.project_photo(G, None, 3), "upload an image first"),
                          (lambda: demo.project_photo(G, str(tmp_path / "x.png"), 3), "does not exist"),
                          (lambda: demo.project_photo(G, str(photo), 0), "steps must be"),
                          (lambda: demo.edit_projection(G, lat, dirs, {"grin": 1.0}), "unknown attribute"),
                          (lambda: demo.edit_projection(G, lat, dirs, {"smiling": 11.0}), "between -10 and 10"),
                          (lambda: demo.mix_projection(G, None, 4, 0, 1), "press Project first")]:
        with pytest.raises(UsageError, match=message):
            call()


def test_photo_endpoints(photo_setup, tmp_path):
    url, photo, G = photo_setup
    client = gr_client.Client(url, verbose=False, download_files=str(tmp_path))
    with pytest.raises(gr_client.exceptions.AppError, match="press Project first"):
        client.predict("00000-tiny", 1, 0, 2, api_name="/mix_photo")
    target, projected, info = client.predict("00000-tiny", gr_client.handle_file(str(photo)), 3, "w",
                                                api_name="/project")
    assert _img(target).shape == (256, 256, 3) and "LPIPS" in info
    # the session's latents feed the edit and the mix
    plain = _img(client.predict("00000-tiny", 0, 0, api_name="/edit_photo"))
    np.testing.assert_array_equal(plain, _img(projected))
    assert not np.array_equal(_img(client.predict("00000-tiny", 3, -2, api_name="/edit_photo")), plain)
    seed_img, mixed = client.predict("00000-tiny", 5, 0, 2, api_name="/mix_photo")
    assert not np.array_equal(_img(mixed), plain)
    np.testing.assert_array_equal(_img(seed_img)[::16, ::16], demo.generate_image(G, 5))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(gr_client.exceptions.AppError) as e:
        client.predict("00000-tiny", gr_client.handle_file(str(tmp_path / "bad.png")), 3, "w", api_name="/project")
    assert "cannot read" in str(e.value) and "Traceback" not in str(e.value)


def test_photo_tab_reads_only_uploaded_files(photo_setup, tmp_path):
    """The events take raw values, so an API client could name any file on the server: only uploads are read."""
    from gradio.utils import get_upload_folder

    url, photo, _ = photo_setup  # a real image, outside Gradio's upload folder
    for value in ({"path": str(photo)}, str(photo), {"path": 5}, ["x"]):
        with pytest.raises(UsageError, match="must be an uploaded file"):
            demo.uploaded_path(value)
    inside = str(Path(get_upload_folder()) / "abc" / "me.png")
    assert demo.uploaded_path({"path": inside, "meta": {"_type": "gradio.FileData"}}) == inside
    assert demo.uploaded_path(None) is None
    # a bare file record through the API: Gradio's own validation refuses it before our function runs
    client = gr_client.Client(url, verbose=False, download_files=str(tmp_path))
    with pytest.raises(gr_client.exceptions.AppError):
        client.predict("00000-tiny", {"path": str(photo)}, 3, "w", api_name="/project")


def test_browser_project_a_photo(photo_setup):
    _need_chromium()
    from playwright.sync_api import sync_playwright

    url, photo, _ = photo_setup
    with sync_playwright() as p:
        browser = demo.launch_chromium(p)
        try:
            page = browser.new_page()
            page.goto(url)
            page.get_by_role("tab", name="Your photo").click()
            page.locator("#photo input[type=file]").set_input_files(str(photo))
            steps = page.locator("#steps input[type=number]")
            steps.fill("3")
            steps.press("Tab")
            page.get_by_role("button", name="Project", exact=True).click()
            page.wait_for_function("document.querySelector('#project-info')?.innerText.includes('in 3 steps')",
                                   timeout=120_000)
            assert page.locator("#projected img").get_attribute("src")
            assert "Traceback" not in page.content()
        finally:
            browser.close()
