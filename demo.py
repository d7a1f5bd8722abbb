"""Interactive StyleGAN demo in the browser (Gradio): generate from a seed, style mixing, stochastic variation, and
your own photo (projected into W, then edited along attribute directions or mixed with a seed).

    python demo.py                                 # latest network under runs/, on http://127.0.0.1:7860
    python demo.py --network runs/00003-ffhq/network --port 8000
    python demo.py --share                         # also a public *.gradio.live link (opt-in)
    python demo.py --screenshot docs/demo.png      # start, drive the page in headless Chromium, save a screenshot

The inference functions (`generate_image`, `mix_images`, `stochastic_variation`) are pure: the same arguments give
the same pixels. `build_demo` returns the Blocks without launching it, so tests can start it on any port.
"""

from __future__ import annotations

import functools
import math
import os
import random
import threading
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from gradio.utils import get_upload_folder, is_in_or_equal  # noqa: E402

import project  # noqa: E402
from checkpoint import load_network, read_network_meta  # noqa: E402
from common import (RUNS_DIR, WEIGHTS_NAME, ArgumentParser, NetworkError, UsageError, int_at_least,  # noqa: E402
                    network_name, pick_device, reference_network, resolve_network, run_cli, to_uint8)
from generate import deviation_map, label_text  # noqa: E402
from latents import EDIT_RANGE, apply_edits, directions_path, load_directions  # noqa: E402
from model import PSI_RANGE, Generator, NetworkConfig, is_number, is_whole, style_ranges  # noqa: E402

SEED_MAX = 2**32 - 1  # seeds are numpy RandomState seeds (see model.seed_to_z)
NOISE_MODES = ("random", "const", "none")  # random: drawn from the noise seed; const: the network's fixed images
DISPLAY_SIZE = 256  # small networks' images are enlarged (nearest neighbour) to at least this many pixels
MAX_VARIATIONS = 8
MAX_PROJECT_STEPS = 1000
MAX_SLIDERS = 10  # attribute sliders on the photo tab (the synthetic faces have 10 attributes)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
CSS = "img { image-rendering: pixelated; }"  # keep enlarged pixels sharp when the browser rescales an image


# ----------------------------------------------------------------------------------------------------------------
# Input checks: each raises UsageError with a message that a person can act on (the app shows it, never a traceback)


def check_seed(seed, name: str = "seed") -> int:
    if seed is None or (isinstance(seed, float) and not math.isfinite(seed)):
        raise UsageError(f"{name} is empty: enter a whole number from 0 to {SEED_MAX}")
    if not is_whole(seed) or not 0 <= seed <= SEED_MAX:
        raise UsageError(f"{name} must be a whole number from 0 to {SEED_MAX} (2**32 - 1), not {seed!r}")
    return int(seed)


def check_layers(G: Generator, first, stop) -> tuple[int, int]:
    n = G.num_ws
    if not is_whole(first) or not is_whole(stop):
        raise UsageError(f"the mixed layers must be whole numbers with 0 <= first < stop <= {n}, not {first!r} "
                         f"and {stop!r}")
    if not 0 <= first < stop <= n:
        raise UsageError(f"mixed layers {int(first)}..{int(stop)} are out of range: this network has style layers "
                         f"0..{n - 1}, so pick 0 <= first < stop <= {n}")
    return int(first), int(stop)


def check_variations(n) -> int:
    if not is_whole(n) or not 2 <= n <= MAX_VARIATIONS:
        raise UsageError(f"the number of variations must be from 2 to {MAX_VARIATIONS}, not {n!r}")
    return int(n)


def check_noise_mode(mode) -> str:
    if mode not in NOISE_MODES:
        raise UsageError(f"noise mode must be one of {', '.join(NOISE_MODES)}, not {mode!r}")
    return mode


# ----------------------------------------------------------------------------------------------------------------
# Pure inference


def _noise(G: Generator, noise_mode: str, noise_seed: int) -> list | None:
    """The noise maps of one draw for G.synthesis in 'random' mode (broadcast over the batch), from noise_seed so
    that it is reproducible; None in the other modes."""
    return G.noise_from_seeds([noise_seed]) if noise_mode == "random" else None


@torch.inference_mode()
def generate_image(G: Generator, seed: int, psi: float = 1.0, cutoff: int | None = None, noise_mode: str = "const",
                   noise_seed: int = 0, label=None) -> np.ndarray:
    """One image (H, W, 3) uint8 from a seed, truncated with psi on style layers [0, cutoff); `label`: a
    conditional network's selection (see label_row)."""
    seed, noise_mode = check_seed(seed), check_noise_mode(noise_mode)
    psi, cutoff = G.truncation(psi, cutoff)
    noise = _noise(G, noise_mode, check_seed(noise_seed, "noise seed"))
    ws = G.ws_from_seeds([seed], psi, cutoff, labels=label_row(G, label))
    return to_uint8(G.synthesis(ws, noise_mode=noise_mode, noise=noise))[0]


def label_choices(G: Generator) -> list[str]:
    """The label selector's choices: a conditional network's classes or attributes; none for an unconditional."""
    if not G.cfg.label_size:
        return []
    return list(G.cfg.label_names or [str(i) for i in range(G.cfg.label_size)])


def label_row(G: Generator, value) -> torch.Tensor | None:
    """The selector's value as a label row: a class name (one-hot), or the list of attributes that are on (the
    others off). None or empty for an unconditional network; for a conditional one, empty means drawn per seed."""
    chosen = [] if value in (None, "") else [value] if isinstance(value, str) else list(value)
    names = label_choices(G)
    if not names:
        if chosen:
            raise UsageError("this network is unconditional: it takes no class or attributes")
        return None
    unknown = [v for v in chosen if v not in names]
    if unknown:
        raise UsageError(f"unknown label {unknown[0]!r}: choose from {', '.join(names)}")
    if not chosen:
        return None
    if G.cfg.label_kind == "classes" and len(chosen) > 1:
        raise UsageError("choose one class")
    return torch.tensor([float(n in chosen) for n in names])


@torch.inference_mode()
def mix_images(G: Generator, seed_a: int, seed_b: int, first: int, stop: int, psi: float = 1.0,
               cutoff: int | None = None, noise_mode: str = "const", noise_seed: int = 0, label=None) -> np.ndarray:
    """Style mixing (paper Sec. 3.1): A's styles with B's on layers [first, stop). Returns (3, H, W, 3) uint8: A, B,
    mix. All three share one noise draw, so the mix differs from A only by the styles B supplies."""
    seed_a, seed_b = check_seed(seed_a, "seed A"), check_seed(seed_b, "seed B")
    noise_mode, (psi, cutoff) = check_noise_mode(noise_mode), G.truncation(psi, cutoff)
    first, stop = check_layers(G, first, stop)
    noise = _noise(G, noise_mode, check_seed(noise_seed, "noise seed"))  # batch 1: broadcast over A, B, mix
    ws = G.ws_from_seeds([seed_a, seed_b], psi=1.0, labels=label_row(G, label))  # (2, num_ws, w_dim)
    ws = G.truncate(torch.cat([ws, G.mix(ws[:1], ws[1:], first, stop)]), psi, cutoff)  # commutes with mixing
    return to_uint8(G.synthesis(ws, noise_mode=noise_mode, noise=noise))


@torch.inference_mode()
def stochastic_variation(G: Generator, seed: int, n: int = 4, psi: float = 1.0, cutoff: int | None = None,
                         noise_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Paper Sec. 3.2 / Fig. 4: one w, n noise draws. Returns (n, H, W, 3) uint8 images and an (H, W, 3) uint8 map of
    the per-pixel standard deviation over the draws, scaled so its largest value is white."""
    seed, n, (psi, cutoff) = check_seed(seed), check_variations(n), G.truncation(psi, cutoff)
    noise = G.synthesis.make_noise(n, seed=check_seed(noise_seed, "noise seed"), device=G.w_avg.device)
    ws = G.ws_from_seeds([seed], psi, cutoff).repeat(n, 1, 1)
    img = G.synthesis(ws, noise_mode="random", noise=noise)  # (n, 3, H, W)
    return to_uint8(img), deviation_map(img)[0]


# Your photo: projection (project.py), attribute edits and mixing of the projected latents (latents.py)


def uploaded_path(photo) -> str | None:
    """The server-side file of an upload. The events take their values unprocessed (see _wire_events), so an upload
    arrives as Gradio's file record, which Gradio has already confined to its upload folder; anything else an API
    client sends (a bare path, a record naming another file) is refused, so no other file on the server is read."""
    if photo is None:
        return None
    path = photo.get("path") if isinstance(photo, dict) else None
    if not isinstance(path, str) or not is_in_or_equal(path, get_upload_folder()):
        raise UsageError("the photo must be an uploaded file: use the upload box, or gradio_client's handle_file")
    return path


def project_photo(G: Generator, path: str, steps: int, space: str = "w", progress=None) -> tuple[np.ndarray, dict]:
    """An image file -> (the projected image (H, W, 3) uint8, latents {'ws', 'noise', 'lpips', 'target'}).
    `progress(step, steps, lpips)` is called after every step."""
    if path is None:
        raise UsageError("no photo yet: upload an image first")
    if not is_whole(steps) or not 1 <= steps <= MAX_PROJECT_STEPS:
        raise UsageError(f"projection steps must be a whole number from 1 to {MAX_PROJECT_STEPS}, not {steps}")
    if space not in project.SPACES:
        raise UsageError(f"latent space must be one of {', '.join(project.SPACES)}, not {space!r}")
    target = project.load_target(path, G.cfg.resolution, G.cfg.img_channels)
    cb = None if progress is None else (lambda step, d: progress(step + 1, int(steps), float(d.mean())))
    with torch.inference_mode(False):
        r = project.project(G, project.to_tensor(target[None]), int(steps), space, progress=False, callback=cb)
    with torch.no_grad():
        img = to_uint8(G.synthesis(r["ws"], noise=r["noise"]))[0]
    return img, {"ws": r["ws"], "noise": r["noise"], "lpips": float(r["lpips"][0]), "target": target}


def _need_latents(latents: dict | None) -> dict:
    if not latents:
        raise UsageError("no projected photo yet: upload a photo and press Project first")
    return latents


@torch.no_grad()
def edit_projection(G: Generator, latents: dict, dirs: dict, strengths: dict[str, float]) -> np.ndarray:
    """The projected latents moved along each attribute's direction by its strength (standard deviations of w)."""
    lo, hi = EDIT_RANGE
    edits = []
    for name, s in strengths.items():
        if name not in dirs["names"]:
            raise UsageError(f"unknown attribute {name!r}: choose from {', '.join(dirs['names'])}")
        if not is_number(s) or not math.isfinite(s) or not lo <= s <= hi:
            raise UsageError(f"strength of {name} must be between {lo:g} and {hi:g}, not {s}")
        if s:
            edits.append((name, float(s)))
    latents = _need_latents(latents)
    ws = apply_edits(latents["ws"], edits, dirs) if edits else latents["ws"]
    return to_uint8(G.synthesis(ws, noise=latents["noise"]))[0]


@torch.no_grad()
def mix_projection(G: Generator, latents: dict, seed: int, first: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """The projected face's styles with the seed's on layers [first, stop); the mix keeps the photo's noise maps.
    Returns (the seed's image, the mix)."""
    latents = _need_latents(latents)
    seed = check_seed(seed, "mixing seed")
    first, stop = check_layers(G, first, stop)
    wb = G.ws_from_seeds([seed], psi=1.0)
    ws = G.mix(latents["ws"], wb, first, stop)
    return to_uint8(G.synthesis(wb, noise_mode="const"))[0], to_uint8(G.synthesis(ws, noise=latents["noise"]))[0]


def upscale(img: np.ndarray, size: int = DISPLAY_SIZE) -> np.ndarray:
    """Enlarge (H, W, C) by a whole factor with nearest neighbour, so a 32x32 image is visible as sharp pixels."""
    k = max(1, math.ceil(size / img.shape[0]))
    return img.repeat(k, axis=0).repeat(k, axis=1) if k > 1 else img


# ----------------------------------------------------------------------------------------------------------------
# Networks: found once, loaded once


def list_networks(runs_dir: str | Path = RUNS_DIR, reference: bool = True) -> dict[str, Path]:
    """Every network folder under runs_dir, newest first, keyed by run name; then the reference network that ships
    with the code (the first choice where there is no run yet)."""
    found = sorted(Path(runs_dir).glob(f"*/network/{WEIGHTS_NAME}"), key=lambda p: p.stat().st_mtime, reverse=True)
    networks = {network_name(p.parent): p.parent for p in found}
    if reference and reference_network() is not None:
        networks.setdefault(f"reference ({network_name(reference_network())})", reference_network())
    return networks


class NetworkCache:
    """Loads each network at most once (by resolved path) and hands out the same Generator afterwards."""

    def __init__(self, networks: dict[str, str | Path], device: str | torch.device = "cpu"):
        self.paths = {name: Path(p) for name, p in networks.items()}
        self.device = torch.device(device)
        self._loaded: dict[Path, Generator] = {}
        self._lock = threading.Lock()  # two first requests for one network must not load it twice

    def __getitem__(self, name: str) -> Generator:
        if not isinstance(name, str) or name not in self.paths:
            raise UsageError(f"unknown network {name!r}: choose one of {', '.join(self.paths)}")
        key = self.paths[name].resolve()
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = load_network(self.paths[name], self.device)
            return self._loaded[key]


def _as_dict(networks) -> dict[str, Path]:
    if isinstance(networks, dict):
        return {str(k): Path(v) for k, v in networks.items()}
    out = {}
    for p in networks:
        name, i = network_name(p), 1
        while name in out:  # two folders with one run name: keep both, distinguishable
            i += 1
            name = f"{network_name(p)} ({i})"
        out[name] = Path(p)
    return out


def _num_ws(path: Path) -> int:
    try:
        return NetworkConfig.from_dict(read_network_meta(path)["network"]).num_ws
    except (NetworkError, KeyError, TypeError, ValueError):
        return 0  # unreadable: selecting it shows the loader's message


def _preset_choices(G: Generator) -> list[tuple[str, str]]:
    """[(label, value)] for the layer presets, labelled with the resolutions they cover, e.g. 'coarse (4²–8²)'."""
    try:
        ranges = style_ranges(G.cfg.resolution)
    except ValueError:  # below 16x16 the paper's split does not exist: custom ranges only
        ranges = {}
    sq = lambda label: "–".join(f"{r}²" for r in label.split("-"))
    return [(f"{k} ({sq(lab)}, layers {a}–{b - 1})", k) for k, (a, b, lab) in ranges.items()] + [("custom", "custom")]


def _network_info(name: str, G: Generator, device) -> str:
    c = G.cfg
    return (f"**{name}**: {c.architecture} generator, {c.resolution}×{c.resolution}, {G.num_ws} style layers, "
            f"noise {'on' if c.use_noise else 'off'}, on {device}" +
            (f"; conditional on {c.label_size} {'classes' if c.label_kind == 'classes' else 'attributes'}"
             if c.label_size else ""))


# ----------------------------------------------------------------------------------------------------------------
# The app


def _user_errors(fn):
    """Bad input -> a gr.Error toast with our message (and no traceback on the console or in the page)."""

    @functools.wraps(fn)
    def wrapper(*args):
        try:
            return fn(*args)
        except (UsageError, NetworkError) as e:
            raise gr.Error(str(e), print_exception=False) from None

    return wrapper


def _timing(t0: float, images: int) -> str:
    ms = (time.perf_counter() - t0) * 1000
    return f"{ms:.0f} ms for {images} image{'s' if images > 1 else ''} ({ms / images:.1f} ms per image)"


def _default_layers(G: Generator) -> tuple[int, int]:
    """The layers B supplies when a network is first shown: the paper's coarse styles, or layer 0 alone below 16x16
    where that split does not exist."""
    try:
        return style_ranges(G.cfg.resolution)["coarse"][:2]
    except ValueError:
        return 0, 1


class Handlers:
    """The app's event handlers. Each takes the network's name and finds its Generator in one NetworkCache, so a
    network is loaded once however many events use it; its attribute directions are likewise read once."""

    def __init__(self, cache: NetworkCache):
        self.cache = cache
        self._directions: dict[str, dict | None] = {}

    @_user_errors
    def generate(self, network, seed, psi, cutoff, noise_mode, noise_seed, label=None):
        G, t0 = self.cache[network], time.perf_counter()
        img = generate_image(G, seed, psi, cutoff, noise_mode, noise_seed, label)
        chosen = label_row(G, label)
        named = "" if chosen is None else f", {label_text(G, chosen)}"
        return upscale(img), f"seed {int(seed)}{named}, psi {psi:g}: {_timing(t0, 1)}"

    @_user_errors
    def mix(self, network, seed_a, seed_b, first, stop, psi, cutoff, noise_mode, noise_seed, label=None):
        G, t0 = self.cache[network], time.perf_counter()
        a, b, m = mix_images(G, seed_a, seed_b, first, stop, psi, cutoff, noise_mode, noise_seed, label)
        return upscale(a), upscale(b), upscale(m), f"B supplies layers {int(first)}–{int(stop) - 1}: {_timing(t0, 3)}"

    @_user_errors
    def variation(self, network, seed, draws, psi, cutoff, noise_seed):
        G, t0 = self.cache[network], time.perf_counter()
        imgs, std = stochastic_variation(G, seed, draws, psi, cutoff, noise_seed)
        note = " (all draws are equal: this network's noise strengths are zero)" if std.max() == 0 else ""
        return [upscale(x) for x in imgs], upscale(std), f"{int(draws)} noise draws: {_timing(t0, int(draws))}{note}"

    def refresh(self, which, network, seed, seed_a, seed_b, first, stop, var_seed, var_n, psi, cutoff, noise_mode,
                noise_seed, gen_label=None, mix_label=None):
        """Re-run the open tab (`which`) with new shared settings; the other tabs' outputs are left as they are."""
        skip_gen, skip_mix, skip_var = [gr.skip()] * 2, [gr.skip()] * 4, [gr.skip()] * 3
        if which == "mix":
            return (skip_gen + list(self.mix(network, seed_a, seed_b, first, stop, psi, cutoff, noise_mode,
                                             noise_seed, mix_label)) + skip_var)
        if which == "variation":
            return skip_gen + skip_mix + list(self.variation(network, var_seed, var_n, psi, cutoff, noise_seed))
        return list(self.generate(network, seed, psi, cutoff, noise_mode, noise_seed, gen_label)) + skip_mix + skip_var

    @_user_errors
    def layer_preset(self, network, preset):
        if preset == "custom":
            return gr.skip(), gr.skip()
        ranges = style_ranges(self.cache[network].cfg.resolution)
        if not isinstance(preset, str) or preset not in ranges:
            raise UsageError(f"unknown layer preset {preset!r}: choose one of {', '.join(ranges)} or custom")
        return ranges[preset][0], ranges[preset][1]

    @_user_errors
    def select_network(self, network):
        G = self.cache[network]
        n, choices, (first, stop) = G.num_ws, _preset_choices(G), _default_layers(G)
        cut = G.truncation()[1]
        return (_network_info(network, G, self.cache.device), gr.Slider(maximum=n, value=cut),
                gr.Slider(maximum=n - 1, value=first), gr.Slider(maximum=n, value=stop),
                gr.Radio(choices=choices, value=choices[0][1])) + (selector(G),) * 2

    @staticmethod
    def random_seed():
        return random.randint(0, SEED_MAX)

    def dirs_of(self, network):
        """The network's directions.npz, read once; None where it has none (the sliders then stay hidden)."""
        if network not in self._directions:
            path = directions_path(self.cache.paths[network])
            self._directions[network] = load_directions(path, self.cache[network]) if path.is_file() else None
        return self._directions[network]

    @_user_errors
    def project_photo_event(self, network, photo, steps, space, progress=gr.Progress()):
        G, t0 = self.cache[network], time.perf_counter()
        progress(0, desc="projecting")
        img, latents = project_photo(G, uploaded_path(photo), steps, space,
                                     lambda k, n, d: progress((k, n), desc=f"step {k}/{n}, LPIPS {d:.4f}"))
        note = (f"projected into {space.upper()} in {int(steps)} steps: LPIPS to your photo {latents['lpips']:.4f} "
                f"({time.perf_counter() - t0:.1f} s)")
        return upscale(latents["target"]), upscale(img), note, {**latents, "network": network}

    @staticmethod
    def _latents_for(network, latents):
        latents = _need_latents(latents)
        if latents.get("network") != network:
            raise UsageError(f"the photo was projected with {latents.get('network')}, not {network}: press Project "
                             "again")
        return latents

    @_user_errors
    def edit_photo(self, network, latents, *strengths):
        dirs = self.dirs_of(network)
        if dirs is None:
            raise UsageError(f"{network} has no attribute directions: run `python metrics.py --metrics ls` for it")
        latents = self._latents_for(network, latents)
        names = dirs["names"][:MAX_SLIDERS]
        return upscale(edit_projection(self.cache[network], latents, dirs, dict(zip(names, strengths))))

    @_user_errors
    def mix_photo(self, network, latents, seed, first, stop):
        latents = self._latents_for(network, latents)
        b, m = mix_projection(self.cache[network], latents, seed, first, stop)
        return upscale(b), upscale(m)


# The layout: one function per part of the page, each returning its components by name. They run inside the
# Blocks context of build_demo. `most_ws` is the most style layers of any network (the layer sliders' ends).


def _settings_column(networks: list[str], default: str, info: str, cutoff: int, most_ws: int) -> SimpleNamespace:
    """The shared settings on the left: network, its description, truncation and noise."""
    s = SimpleNamespace()
    with gr.Column(scale=1, min_width=260):
        s.net = gr.Dropdown(networks, value=default, label="network", visible=len(networks) > 1)
        s.info = gr.Markdown(info, label="network info")
        s.psi = gr.Slider(*PSI_RANGE, value=0.7, step=0.05, label="truncation psi", elem_id="psi",
                          info="1 = none, 0 = the average image")
        s.cutoff = gr.Slider(0, most_ws, value=cutoff, step=1, label="truncation cutoff",
                             info="truncate style layers [0, cutoff)")
        s.noise_mode = gr.Radio(list(NOISE_MODES), value="const", label="noise mode",
                                info="random: drawn from the noise seed; const: the network's fixed noise")
        s.noise_seed = gr.Number(0, precision=0, label="noise seed")
    return s


def selector(G: Generator, elem_id: str | None = None) -> gr.Dropdown:
    """A conditional network's class (one) or attributes (any on, the rest off); hidden for an unconditional one."""
    classes = G.cfg.label_kind == "classes"
    return gr.Dropdown(label_choices(G), value=None, multiselect=not classes, visible=bool(G.cfg.label_size),
                       label="class" if classes else "attributes on (the others off; none: drawn per seed)",
                       elem_id=elem_id)


def _generate_tab(G0: Generator) -> SimpleNamespace:
    t = SimpleNamespace()
    with gr.Tab("Generate") as t.tab:
        with gr.Row(equal_height=True):
            t.seed = gr.Number(0, precision=0, label="seed", info=f"0 to {SEED_MAX}", elem_id="seed")
            t.rand_btn = gr.Button("Random seed", scale=0)
            t.btn = gr.Button("Generate", variant="primary", scale=0)
        t.label = selector(G0, "generate-label")
        t.image = gr.Image(label="image", format="png", type="numpy", interactive=False, elem_id="generated",
                           height=DISPLAY_SIZE + 40)
        t.info = gr.Markdown(label="timing", elem_id="generate-info")
    return t


def _mixing_tab(G0: Generator, presets: list[tuple[str, str]], first: int, stop: int, most_ws: int) -> SimpleNamespace:
    t = SimpleNamespace()
    with gr.Tab("Style mixing") as t.tab:
        with gr.Row(equal_height=True):
            t.seed_a = gr.Number(0, precision=0, label="seed A (source of most styles)")
            t.seed_b = gr.Number(1, precision=0, label="seed B")
            t.btn = gr.Button("Mix", variant="primary", scale=0)
        t.label = selector(G0, "mix-label")  # A and B take the same label, so that the mix changes styles only
        t.preset = gr.Radio(presets, value=presets[0][1], label="layers B supplies")
        with gr.Row():
            t.first = gr.Slider(0, most_ws - 1, value=first, step=1, label="first layer")
            t.stop = gr.Slider(1, most_ws, value=stop, step=1, label="stop layer (exclusive)")
        with gr.Row():
            t.img_a = gr.Image(label="A", format="png", interactive=False, elem_id="mix-a")
            t.img_b = gr.Image(label="B", format="png", interactive=False, elem_id="mix-b")
            t.img_m = gr.Image(label="A with B's styles", format="png", interactive=False, elem_id="mix-ab")
        t.info = gr.Markdown(label="timing", elem_id="mix-info")
    return t


def _variation_tab() -> SimpleNamespace:
    t = SimpleNamespace()
    with gr.Tab("Stochastic variation") as t.tab:
        with gr.Row(equal_height=True):
            t.seed = gr.Number(0, precision=0, label="seed")
            t.n = gr.Slider(2, MAX_VARIATIONS, value=4, step=1, label="noise draws")
            t.btn = gr.Button("Show variation", variant="primary", scale=0)
        t.gallery = gr.Gallery(label="same w, different noise (draws from the noise seed on)", format="png",
                               columns=4, interactive=False, elem_id="variations")
        t.std_map = gr.Image(label="per-pixel standard deviation over the draws", format="png", interactive=False,
                             height=DISPLAY_SIZE + 40)
        t.info = gr.Markdown(label="timing", elem_id="variation-info")
    return t


def _photo_tab(names: list[str], first: int, stop: int, most_ws: int) -> SimpleNamespace:
    """Upload and project a photo, then edit it along the attribute directions `names` or mix it with a seed.
    There are always MAX_SLIDERS sliders; those beyond `names` stay hidden."""
    t = SimpleNamespace()
    with gr.Tab("Your photo"):
        t.latents = gr.State(None)
        with gr.Row(equal_height=True):
            # a File, not an Image: an unreadable upload then reaches our check and its message
            t.photo = gr.File(label="your photo (any size: centre-cropped)", type="filepath", elem_id="photo")
            with gr.Column(min_width=200):
                t.space = gr.Radio(["w", "w+"], value="w", label="latent space",
                                   info="w: one w for all layers; w+: one per layer")
                t.steps = gr.Slider(1, MAX_PROJECT_STEPS, value=300, step=1, label="steps", elem_id="steps")
                t.proj_btn = gr.Button("Project", variant="primary")
        with gr.Row():
            t.target = gr.Image(label="target (as the network sees it)", format="png", interactive=False,
                                elem_id="proj-target")
            t.projected = gr.Image(label="projection", format="png", interactive=False, elem_id="projected")
        t.proj_info = gr.Markdown(elem_id="project-info")
        gr.Markdown("**Edit** along attribute directions (strength in standard deviations of w)" if names else
                    "_No attribute directions beside this network: run `python metrics.py --metrics ls` to make them._")
        t.sliders = [gr.Slider(-5, 5, value=0, step=0.5, label=n, visible=i < len(names))
                     for i, n in enumerate(names + [f"attribute {k}" for k in range(len(names), MAX_SLIDERS)])]
        t.edited = gr.Image(label="edited", format="png", interactive=False, elem_id="edited")
        with gr.Row(equal_height=True):
            t.seed = gr.Number(1, precision=0, label="mix with seed")
            t.first = gr.Slider(0, most_ws - 1, value=first, step=1, label="first layer")
            t.stop = gr.Slider(1, most_ws, value=stop, step=1, label="stop layer (exclusive)")
            t.mix_btn = gr.Button("Mix", scale=0)
        with gr.Row():
            t.seed_img = gr.Image(label="seed", format="png", interactive=False)
            t.mix_img = gr.Image(label="your face with the seed's styles", format="png", interactive=False,
                                 elem_id="photo-mix")
    return t


def _wire_events(demo: gr.Blocks, h: Handlers, s: SimpleNamespace, gen: SimpleNamespace, mix: SimpleNamespace,
                 var: SimpleNamespace, photo: SimpleNamespace) -> None:
    """Connect the components to the handlers, inside demo's Blocks context. The api_names are the app's API."""
    gen_in = [s.net, gen.seed, s.psi, s.cutoff, s.noise_mode, s.noise_seed, gen.label]
    gen_out = [gen.image, gen.info]
    mix_in = [s.net, mix.seed_a, mix.seed_b, mix.first, mix.stop, s.psi, s.cutoff, s.noise_mode, s.noise_seed,
              mix.label]
    mix_out = [mix.img_a, mix.img_b, mix.img_m, mix.info]
    var_in = [s.net, var.seed, var.n, s.psi, s.cutoff, s.noise_seed]
    var_out = [var.gallery, var.std_map, var.info]
    # Every event that runs a network shares one queue slot group: at most `concurrency` (launch_demo) at once.
    # preprocess=False hands our functions the values as sent, so that the check_* functions judge every value,
    # from the page or an API client, with our messages: Gradio's own preprocessing would reject text or an
    # out-of-range number with its message and a traceback in the server's log, and round 1.5 to a seed of 2.
    model = dict(concurrency_id="model", preprocess=False)
    # always_last: a click while the page's first image is still being made runs after it instead of being dropped
    gr.on([gen.btn.click, gen.seed.submit, demo.load], h.generate, gen_in, gen_out, api_name="generate",
          trigger_mode="always_last", **model)
    gen.rand_btn.click(h.random_seed, None, gen.seed, api_name="random_seed").then(
        h.generate, gen_in, gen_out, api_visibility="private", **model)
    gr.on([mix.btn.click, mix.seed_a.submit, mix.seed_b.submit], h.mix, mix_in, mix_out, api_name="mix", **model)
    gen.label.change(h.generate, gen_in, gen_out, api_visibility="private", **model)
    mix.label.change(h.mix, mix_in, mix_out, api_visibility="private", **model)
    mix.preset.select(h.layer_preset, [s.net, mix.preset], [mix.first, mix.stop], api_name="layer_preset",
                      preprocess=False).then(h.mix, mix_in, mix_out, api_visibility="private", **model)
    for slider in (mix.first, mix.stop):  # moving a layer slider by hand makes the range a custom one
        slider.input(lambda: "custom", None, mix.preset, api_visibility="private", queue=False)
    gr.on([var.btn.click, var.seed.submit], h.variation, var_in, var_out, api_name="variation", **model)
    s.net.change(h.select_network, s.net, [s.info, s.cutoff, mix.first, mix.stop, mix.preset, gen.label, mix.label],
                 api_name="select_network", **model).then(h.generate, gen_in, gen_out, api_visibility="private",
                                                          **model)

    photo.proj_btn.click(h.project_photo_event, [s.net, photo.photo, photo.steps, photo.space],
                         [photo.target, photo.projected, photo.proj_info, photo.latents], api_name="project", **model)
    gr.on([slider.release for slider in photo.sliders], h.edit_photo, [s.net, photo.latents] + photo.sliders,
          photo.edited, api_name="edit_photo", **model)
    gr.on([photo.mix_btn.click, photo.seed.submit], h.mix_photo,
          [s.net, photo.latents, photo.seed, photo.first, photo.stop], [photo.seed_img, photo.mix_img],
          api_name="mix_photo", **model)

    # The shared settings re-run whichever tab is open, so moving psi changes the picture you are looking at.
    tab = gr.State("generate")
    gen.tab.select(lambda: "generate", None, tab, api_visibility="private", queue=False)
    mix.tab.select(lambda: "mix", None, tab, api_visibility="private", queue=False)
    var.tab.select(lambda: "variation", None, tab, api_visibility="private", queue=False)
    gr.on([s.psi.release, s.cutoff.release, s.noise_mode.change, s.noise_seed.submit], h.refresh,
          [tab, s.net, gen.seed, mix.seed_a, mix.seed_b, mix.first, mix.stop, var.seed, var.n, s.psi, s.cutoff,
           s.noise_mode, s.noise_seed, gen.label, mix.label], gen_out + mix_out + var_out, api_visibility="private",
          **model)


def build_demo(networks: dict[str, str | Path] | list, device: str | torch.device = "cpu") -> gr.Blocks:
    """The whole app, not launched. `networks`: {name: network folder} (first = default) or a list of folders.
    The default network is loaded here, so a bad path fails before anything is served."""
    networks = _as_dict(networks)
    if not networks:
        raise NetworkError("no networks given: train one with `accelerate launch train.py` or pass --network PATH")
    h = Handlers(NetworkCache(networks, device))
    default = next(iter(networks))
    G0 = h.cache[default]
    first0, stop0 = _default_layers(G0)
    # Slider ends fit the largest network (read from its config, weights not loaded); selecting a network in the page
    # narrows them. The values reach our checks unprocessed (preprocess=False in _wire_events), whatever the ends.
    most_ws = max([G0.num_ws, 2] + [_num_ws(p) for p in networks.values()])
    dirs0 = h.dirs_of(default)

    with gr.Blocks(title="StyleGAN demo") as demo:
        gr.Markdown("# StyleGAN\nA style-based generator (Karras et al. 2019): a seed gives a latent z, the mapping "
                    "network turns it into styles w, one per synthesis layer.")
        with gr.Row():
            settings = _settings_column(list(networks), default, _network_info(default, G0, h.cache.device),
                                        G0.truncation()[1], most_ws)
            with gr.Column(scale=3):
                with gr.Tabs():
                    gen = _generate_tab(G0)
                    mix = _mixing_tab(G0, _preset_choices(G0), first0, stop0, most_ws)
                    var = _variation_tab()
                    photo = _photo_tab(dirs0["names"][:MAX_SLIDERS] if dirs0 else [], first0, stop0, most_ws)
        _wire_events(demo, h, settings, gen, mix, var, photo)
    return demo


def launch_demo(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = 7860, share: bool = False,
                concurrency: int = 1, block: bool = True) -> str:
    """Queue (at most `concurrency` inferences at once; the rest wait their turn) and serve. Returns the local URL.
    show_error stays False: our own gr.Error messages are shown anyway, anything unexpected only as 'Error'."""
    demo.queue(default_concurrency_limit=concurrency, max_size=64)
    try:
        _, url, _ = demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block,
                                show_error=False, quiet=not block, css=CSS, footer_links=["api"])
    except OSError as e:  # the port is taken, typically
        raise UsageError(f"cannot serve on {host}:{port} ({e}); pick another --port") from None
    return url


# ----------------------------------------------------------------------------------------------------------------
# Screenshot (headless Chromium via Playwright), for the README


def launch_chromium(playwright):
    if not Path(CHROMIUM).exists():
        raise UsageError(f"no browser at {CHROMIUM}: install one with `bash install.sh --browser` "
                         "(Debian's chromium package)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def take_screenshot(url: str, path: str | Path, tab: str = "Style mixing") -> Path:
    """Open the app, run the given tab's main action, and save a PNG of the page."""
    from playwright.sync_api import sync_playwright  # only for --screenshot: the app itself never needs it

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        page.locator("#generated img").wait_for(timeout=60_000)  # the page generates seed 0 when it loads
        if tab != "Generate":
            page.get_by_role("tab", name=tab).click()
            page.get_by_role("button", name={"Style mixing": "Mix", "Stochastic variation": "Show variation"}[tab]
                             ).click()
            page.locator("#mix-ab img" if tab == "Style mixing" else "#variations img"
                         ).first.wait_for(timeout=60_000)
        page.wait_for_timeout(500)  # let images finish decoding
        page.screenshot(path=str(path), full_page=True)
        browser.close()
    return path


def main(argv=None):
    parser = ArgumentParser(
        "demo.py", "Interactive StyleGAN demo (Gradio): generate from a seed, style mixing, stochastic variation.",
        "examples:\n  python demo.py\n  python demo.py --network runs/00003-ffhq/network --port 8000\n"
               "  python demo.py --screenshot docs/demo.png")
    parser.add_argument("--network", help="network folder or .safetensors file (default: every run under "
                        "--runs-dir, the most recent first, with a dropdown to switch)")
    parser.add_argument("--runs-dir", default=RUNS_DIR, help="where train.py writes runs (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default: %(default)s, this "
                        "machine only; 0.0.0.0 exposes it to your network)")
    parser.add_argument("--port", type=int_at_least(0, 65535), default=7860, help="port (default: %(default)s)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default: %(default)s)")
    parser.add_argument("--concurrency", type=int_at_least(1), default=1, help="inferences run at once; more wait in the queue "
                        "(default: %(default)s)")
    parser.add_argument("--screenshot", metavar="PNG", help="start the app on --port, save a screenshot of it "
                        "with generated images (headless Chromium), and exit")
    args = parser.parse_args(argv)

    networks = {network_name(args.network): args.network} if args.network else list_networks(args.runs_dir)
    if not networks:
        resolve_network(None, args.runs_dir)  # raises the project's one-line "train one" error
    device = pick_device(args.device)
    demo = build_demo(networks, device)
    if args.screenshot:
        url = launch_demo(demo, args.host, args.port, concurrency=args.concurrency, block=False)
        try:
            print(f"saved {take_screenshot(url, args.screenshot)}")
        finally:
            demo.close()
        return
    print(f"serving {len(networks)} network(s) on {device}; default {next(iter(networks))}")
    launch_demo(demo, args.host, args.port, args.share, args.concurrency, block=True)


if __name__ == "__main__":
    run_cli(main)
