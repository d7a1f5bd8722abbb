"""Generate images, and the StyleGAN paper's figures, from a trained generator.

    python generate.py --seeds 0-99                                # one PNG per seed, from the latest run's network
    python generate.py --seeds 0-15 --grid --trunc 0.7             # ... plus a grid of them, truncated (psi 0.7)
    python generate.py --figure mixing --rows 1-3 --cols 4-7       # style mixing (paper Figure 3)
    python generate.py --figure noise --seeds 5 --samples 100      # stochastic variation (Figure 4)
    python generate.py --figure truncation --seeds 1-4             # truncation sweep (Figure 8)
    python generate.py --figure interp --seeds 1,2,3 --space z     # interpolation GIF, fixed noise
    python generate.py --latents out/projections/me.npz --edit smiling=2   # a projected image (project.py), edited
    python generate.py --figure edit --seeds 0-3 --attribute smiling        # rows of seeds, columns of strengths
    python generate.py --seeds 0-7 --labels smiling=1,wearing_hat=0  # a conditional network (train.py --cond)
    python generate.py --figure labels --seeds 0-3                 # a row per class or attribute (off, on)

A seed means the same image on every device and at every batch size: z comes from numpy's RandomState(seed), the
noise is the network's fixed ('const') noise by default or is drawn on the CPU from the seed ('random'), and on the
CPU a network below 256x256 runs in float64 (--dtype), because float32 matrix-vector products (batch 1-3) round
differently from the matrix-matrix products of larger batches and move a pixel by one level now and then. From
256x256 up float64 costs 4-6 times float32 on a CPU (docs/performance.md), so there the default is float32: a
seed's images then agree across batch sizes to float32 rounding, and `--dtype float64` makes them bit-identical
again. On a GPU the images of a seed agree to float32 rounding across devices and batch sizes, not bit for bit.

The figure functions (`grid_figure`, `style_mixing_figure`, `noise_figure`, `truncation_figure`,
`interpolation_frames`) take a generator and plain arguments and return a PIL image (or uint8 frames); a figure's
`info['layout']` is JSON giving the cell size and each cell's top-left corner.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import tempfile
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo
from tqdm import tqdm

from checkpoint import load_network
from common import (ArgumentParser, UsageError, float_in, int_at_least, network_name, parse_seeds, pick_device,
                    resolve_network, run_cli, slug, to_uint8)
from latents import EDIT_RANGE, apply_edits, directions_path, load_directions, load_latents, parse_edits
from model import Generator, check_psi, seed_to_z, slerp, style_ranges

PAPER_PSIS = [1.0, 0.7, 0.5, 0.0, -0.5, -1.0]  # Figure 8's columns
MIN_CELL = 128  # by default figures upscale small networks' images (nearest) to at least this many pixels a cell
GAP = 2  # white pixels between figure cells
BLOCK_GAP = 8  # extra white pixels between the blocks of the style-mixing figure
FIGURES = ("mixing", "noise", "truncation", "interp", "edit", "labels")
EDIT_STRENGTHS = [-3.0, -1.5, 0.0, 1.5, 3.0]  # --figure edit's default columns, in standard deviations of w
SOFTWARE = "StyleGAN generate.py"


# ----------------------------------------------------------------------------------------------------------------
# Parsing and checking arguments (UsageError: one line, exit code 2)


def parse_psis(text: str) -> list[float]:
    """'1,0.7,0,-1' -> [1.0, 0.7, 0.0, -1.0], each within PSI_RANGE."""
    try:
        psis = [float(p) for p in str(text).split(",")]
    except ValueError:
        raise UsageError(f"invalid psi list {text!r}: use comma-separated numbers, e.g. --psis 1,0.7,0.5,0,-0.5,-1")
    return [check_psi(p) for p in psis]


def parse_styles(text: str, num_ws: int, resolution: int) -> list[tuple[str, int, int]]:
    """'coarse,middle,fine' or '0-3' or 'coarse,8-9' -> [(label, first, stop)]: style layers [first, stop) come from B.
    Names are the paper's ranges (model.style_ranges); numbers are style-layer indices, ranges inclusive."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if m:
            first, last = int(m.group(1)), int(m.group(2) or m.group(1))
            if last < first or last >= num_ws:
                raise UsageError(f"style layers {part!r} must be a low-high range within 0-{num_ws - 1} "
                                 f"(this network has {num_ws} style layers), e.g. --styles 0-3")
            out.append((f"layers {part}", first, last + 1))
        elif part in ("coarse", "middle", "fine"):
            try:
                first, stop, res = style_ranges(resolution)[part]
            except ValueError:
                raise UsageError(f"a {resolution}x{resolution} network has no coarse/middle/fine layers: pass "
                                 f"--styles with layer numbers, e.g. --styles 0-1") from None
            out.append((f"{part} ({res})", first, stop))
        else:
            raise UsageError(f"invalid --styles {part!r}: use coarse, middle, fine or layer numbers like 0-3, "
                             "comma-separated")
    return out


# ----------------------------------------------------------------------------------------------------------------
# Generating: seeds -> w -> images, batch by batch


DTYPES = ("auto", "float32", "float64", "bfloat16")
EXACT_BELOW = 256  # 'auto' renders in float64 on a CPU below this resolution: float64 costs 3-7x float32 on a CPU


def render_dtype(G: Generator, device: torch.device | str, dtype: str = "auto") -> str:
    """What 'auto' means: on a CPU float64 below 256x256, so that batch size cannot change a pixel (see the module
    docstring), float32 from 256x256 up and on a GPU. bfloat16 is an option, not a default: on a CPU with bf16
    arithmetic it renders the 32x32 reference network 1.3x faster (batch 50) at 0.23 levels of 255 from float32 on
    average, but random 256x256 and 1024x1024 networks at 1.7 and 2.0 (docs/performance.md)."""
    if dtype != "auto":
        return dtype
    if torch.device(device).type == "cpu" and G.cfg.resolution < EXACT_BELOW:
        return "float64"
    return "float32"


def load_generator(path: str | Path, device: torch.device | str = "cpu", dtype: str = "auto") -> Generator:
    """load_network in the precision `dtype` (render_dtype): float32 and float64 weights as named, bfloat16 as
    float32 weights run under bf16 autocast (G.render_dtype, which synthesize and render_precision apply)."""
    G = load_network(path, device)
    dtype = render_dtype(G, device, dtype)
    G = G.to(torch.float64 if dtype == "float64" else torch.float32)
    G.render_dtype = torch.bfloat16 if dtype == "bfloat16" else None
    return G


def render_precision(G: Generator):
    """The autocast of G's rendering precision (a no-op unless load_generator chose bfloat16)."""
    dtype = getattr(G, "render_dtype", None)
    return torch.autocast(_where(G)[0].type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def _where(G: Generator) -> tuple[torch.device, torch.dtype]:
    p = next(G.parameters())
    return p.device, p.dtype


@torch.no_grad()
def synthesize(G: Generator, ws: torch.Tensor, noise_mode: str = "const", noise_seeds: list[int] | None = None,
               batch: int = 16, progress: bool = False, desc: str | None = None,
               noise: list | None = None, on_cpu: bool = True) -> torch.Tensor:
    """The one way every script renders images: ws (N, num_ws, w_dim) -> float32 images (N, C, R, R), batch by
    batch, on the CPU (on_cpu=False: on G's device). noise_mode 'random' takes image i's noise from noise_seeds[i]
    (drawn on the CPU), so it too is the same on every device and batch size. `noise`, per layer (N, 1, r, r) or
    None, gives every image its own noise maps instead (projected latents)."""
    if noise_mode == "random" and (noise_seeds is None or len(noise_seeds) != len(ws)):
        raise ValueError("noise_mode='random' needs one noise seed per image")
    device, dtype = _where(G)
    out = []
    with tqdm(total=len(ws), unit="img", desc=desc, disable=not progress, leave=False) as bar, render_precision(G):
        for i in range(0, len(ws), batch):
            chunk = None
            if noise is not None:
                chunk = [n if n is None else n[i:i + batch].to(device, dtype) for n in noise]
            elif noise_mode == "random":
                chunk = G.noise_from_seeds(noise_seeds[i:i + batch])
            img = G.synthesis(ws[i:i + batch].to(device, dtype), noise_mode=noise_mode, noise=chunk)
            out.append(img.float().cpu() if on_cpu else img.float())
            bar.update(len(img))
    return torch.cat(out)


def label_request(G: Generator, cls: str | None = None, labels: str | None = None) -> torch.Tensor | None:
    """The label row (label_size,) of --class NAME|INDEX or --labels name=1,name=0 for a conditional G; NaN where
    --labels leaves an attribute open (drawn per seed from the training data's rates). None when neither is
    given. Raises UsageError in one line for an unconditional network, an unknown name, or a wrong value."""
    if cls is None and labels is None:
        return None
    flag = "--class" if cls is not None else "--labels"
    cfg = G.cfg
    if not cfg.label_size:
        raise UsageError(f"{flag}: this network is unconditional (trained without --cond): leave {flag} out")
    if cls is not None and labels is not None:
        raise UsageError("--class and --labels both name labels: pass one of them")
    names = cfg.label_names or [str(i) for i in range(cfg.label_size)]
    if cls is not None:
        if cfg.label_kind != "classes":
            raise UsageError(f"--class: this network is conditioned on attributes, not classes: pass --labels "
                             f"{names[0]}=1 (any of {', '.join(names)})")
        index = names.index(cls) if cls in names else int(cls) if cls.isdigit() and int(cls) < len(names) else None
        if index is None:
            raise UsageError(f"--class {cls}: unknown class; the network knows {', '.join(names)} (or 0-{len(names) - 1})")
        return torch.eye(cfg.label_size)[index]
    if cfg.label_kind != "attributes":
        raise UsageError(f"--labels: this network is conditioned on classes: pass --class NAME ({', '.join(names)})")
    row = torch.full((cfg.label_size,), float("nan"))
    for item in labels.split(","):
        name, _, value = item.strip().partition("=")
        if name not in names:
            raise UsageError(f"--labels {item}: unknown attribute {name!r}; the network knows {', '.join(names)}")
        if value not in ("0", "1"):
            raise UsageError(f"--labels {item}: give {name}=1 (present) or {name}=0 (absent)")
        row[names.index(name)] = float(value)
    return row


def label_text(G: Generator, row: torch.Tensor | None) -> str:
    """A label row in words ('smiling=1,wearing_hat=0'; 'class cat'), for file names and figure captions."""
    if row is None or not G.cfg.label_size:
        return ""
    names = G.cfg.label_names or [str(i) for i in range(G.cfg.label_size)]
    if G.cfg.label_kind == "classes":
        return f"class {names[int(row.argmax())]}"
    return ",".join(f"{n}={int(v)}" for n, v in zip(names, row.tolist()) if not math.isnan(v))


def iter_images(G: Generator, seeds: list[int], psi: float = 1.0, cutoff: int | None = None,
                noise_mode: str = "const", batch: int = 16, edit=None):
    """Yield (seeds, uint8 images (n, H, W, C)) one batch at a time, so any number of seeds fits in memory.
    `edit`, if given, maps the truncated ws (n, num_ws, w_dim) to edited ones (see latents.apply_edits)."""
    for i in range(0, len(seeds), batch):
        chunk = seeds[i:i + batch]
        ws = G.ws_from_seeds(chunk, psi, cutoff, batch)
        ws = ws if edit is None else edit(ws)
        yield chunk, to_uint8(synthesize(G, ws, noise_mode, chunk, batch))


def generate_images(G: Generator, seeds: list[int], psi: float = 1.0, cutoff: int | None = None,
                    noise_mode: str = "const", batch: int = 16, edit=None) -> np.ndarray:
    """seeds -> uint8 (N, H, W, C): the image of each seed, the same whatever `batch`."""
    return np.concatenate([imgs for _, imgs in iter_images(G, seeds, psi, cutoff, noise_mode, batch, edit)])


# ----------------------------------------------------------------------------------------------------------------
# Projected latents (project.py) beside seeds: explicit ws and noise maps per image


def seed_noise_maps(G: Generator, seeds: list[int], noise_mode: str) -> list[torch.Tensor | None]:
    """The noise each seed's image gets in `noise_mode`, spelled out per layer as (N, 1, r, r), so that seeds and
    projected latents (which carry their own maps) can share one batch. 'none' is zeros."""
    if noise_mode == "random":
        return [None if n is None else n.cpu() for n in G.noise_from_seeds(seeds)]
    maps = G.synthesis.const_noise()
    maps = [None if m is None else m.detach().cpu().expand(len(seeds), -1, -1, -1) for m in maps]
    return [None if m is None else (torch.zeros_like(m) if noise_mode == "none" else m) for m in maps]


def cat_noise(*lists: list) -> list:
    """Concatenate per-layer noise lists along the batch."""
    return [None if parts[0] is None else torch.cat([p.cpu().to(parts[0].dtype) for p in parts])
            for parts in zip(*lists)]


def read_latents(G: Generator, files: list[str]) -> tuple[list[str], torch.Tensor, list]:
    """latent .npz files -> (labels, ws (N, num_ws, w_dim), noise per layer (N, 1, r, r) or None)."""
    labels, wss, noises = [], [], []
    for f in files:
        ws, noise, _ = load_latents(f, G)
        labels.append(Path(f).stem)
        wss.append(ws[None])
        noises.append([None if n is None else n.cpu() for n in noise])
    return labels, torch.cat(wss), cat_noise(*noises)


def parse_latent_files(text: str) -> list[str]:
    files = [f.strip() for f in str(text).split(",") if f.strip()]
    if not files:
        raise UsageError("--latents is empty: pass one or more .npz files from project.py, comma-separated")
    return files


def parse_strengths(text: str) -> list[float]:
    lo, hi = EDIT_RANGE
    try:
        vals = [float(v) for v in str(text).split(",")]
    except ValueError:
        raise UsageError(f"invalid --strengths {text!r}: use comma-separated numbers, e.g. -3,-1.5,0,1.5,3") from None
    bad = [v for v in vals if not lo <= v <= hi]
    if bad:
        raise UsageError(f"edit strength {bad[0]:g} is outside [{lo:g}, {hi:g}] (units: standard deviations of w "
                         "along the direction; +-3 is a strong edit)")
    return vals


def edit_figure(G: Generator, labels: list[str], ws: torch.Tensor, noise: list, attribute: str,
                strengths: list[float], dirs: dict, first: int = 0, stop: int | None = None, batch: int = 16,
                upscale: int | None = None, progress: bool = False) -> Image.Image:
    """A row per latent (ws (N, num_ws, w_dim), already truncated, with its noise maps), a column per strength of
    the edit along `attribute`'s direction on style layers [first, stop)."""
    rows = [apply_edits(ws, [(attribute, s)], dirs, first, stop) for s in strengths]  # each (N, num_ws, w_dim)
    grid = torch.stack(rows, 1).flatten(0, 1)  # row-major: (N * S, num_ws, w_dim)
    rep = [None if n is None else n.repeat_interleave(len(strengths), 0) for n in noise]
    imgs = to_uint8(synthesize(G, grid, batch=batch, progress=progress, desc="edit", noise=rep))
    imgs = imgs.reshape(len(labels), len(strengths), *imgs.shape[1:])
    head = [[f"{attribute} {s:+g}" for s in strengths]] + [[None] * len(strengths)] * (len(labels) - 1)
    fig = compose([list(r) for r in imgs], head, labels, upscale or auto_upscale(G.cfg.resolution))
    layout = json.loads(fig.info["layout"])
    layout.update(rows=labels, cols=strengths, attribute=attribute, layers=[first, stop or G.num_ws])
    fig.info["layout"] = json.dumps(layout)
    return fig


@torch.no_grad()
def latent_path_frames(G: Generator, ws: torch.Tensor, noise: list, frames: int = 60, loop: bool = False,
                       batch: int = 16, progress: bool = False) -> np.ndarray:
    """An interpolation through latents ws (P, num_ws, w_dim) with their noise maps, in order: ws and noise maps
    are both lerped, so a projected image keeps its own noise at its end point. Returns uint8 (F, H, W, C)."""
    order = list(range(len(ws))) + ([0] if loop else [])
    t = torch.arange(frames, dtype=torch.float64) / frames
    a = torch.cat([torch.full((frames,), i) for i in order[:-1]] + ([] if loop else [torch.tensor([order[-1]])]))
    b = torch.cat([torch.full((frames,), j) for j in order[1:]] + ([] if loop else [torch.tensor([order[-1]])]))
    tt = torch.cat([t.repeat(len(order) - 1)] + ([] if loop else [torch.zeros(1, dtype=t.dtype)]))[:, None, None]
    w = ws.double().cpu()
    path = w[a] + (w[b] - w[a]) * tt
    maps = [None if n is None else n.double()[a] + (n.double()[b] - n.double()[a]) * tt[..., None] for n in noise]
    return to_uint8(synthesize(G, path, batch=batch, progress=progress, desc="interp", noise=maps))


# ----------------------------------------------------------------------------------------------------------------
# Laying out figures


def _font(cell: int):
    size = max(10, min(28, cell // 8))
    try:
        return ImageFont.load_default(size=size)  # scalable when Pillow has FreeType
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def auto_upscale(resolution: int) -> int:
    return max(1, math.ceil(MIN_CELL / resolution))


def compose(cells: list[list[np.ndarray | None]], labels: list[list[str | None]] | None = None,
            row_labels: list[str] | None = None, upscale: int = 1, row_gaps: list[int] | None = None) -> Image.Image:
    """Lay out a figure on white: `cells` are rows of uint8 (H, W, C) images (None leaves a blank), `labels` the
    same shape of captions drawn in a strip above their row (a row without any gets no strip), `row_labels` one
    caption per row at the left, `row_gaps` extra space above each row. Images are upscaled (nearest) by `upscale`.
    info['layout'] = JSON {'cell': size, 'cells': rows of [x, y] top-left corners or null}."""
    first = next(c for row in cells for c in row if c is not None)
    cell = first.shape[0] * upscale
    ncols = max(len(row) for row in cells)
    labels = labels or [[None] * len(row) for row in cells]
    row_labels = row_labels or [""] * len(cells)
    row_gaps = row_gaps or [0] * len(cells)
    font, m = _font(cell), 3
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def size(text):
        x0, y0, x1, y1 = measure.multiline_textbbox((0, 0), text, font=font)
        return x1 - x0, y1

    strip = [max((size(t)[1] + 2 * m for t in row if t), default=0) for row in labels]
    left = max((size(t)[0] + 2 * m for t in row_labels if t), default=0)
    ys, y = [], 0
    for r in range(len(cells)):
        y += row_gaps[r] + strip[r]
        ys.append(y)
        y += cell + GAP
    fig = Image.new("RGB", (left + ncols * cell + (ncols - 1) * GAP, y - GAP), "white")
    draw = ImageDraw.Draw(fig)
    corners = []
    for r, row in enumerate(cells):
        corners.append([])
        for c, img in enumerate(row):
            x = left + c * (cell + GAP)
            if img is None:
                corners[-1].append(None)
                continue
            tile = Image.fromarray(img.squeeze(-1) if img.shape[-1] == 1 else img).convert("RGB")
            fig.paste(tile.resize((cell, cell), Image.NEAREST) if upscale != 1 else tile, (x, ys[r]))
            corners[-1].append([x, ys[r]])
        for c, text in enumerate(labels[r]):
            if text:
                w, h = size(text)
                draw.multiline_text((left + c * (cell + GAP) + (cell - w) // 2, ys[r] - m - h), text, fill="black",
                                    font=font, align="center")
        if row_labels[r]:
            w, h = size(row_labels[r])
            draw.multiline_text((left - m - w, ys[r] + (cell - h) // 2), row_labels[r], fill="black", font=font,
                                align="right")
    fig.info["layout"] = json.dumps({"cell": cell, "cells": corners})
    return fig


def _psi_label(psi: float) -> str:
    return f"psi={psi:g}"


# ----------------------------------------------------------------------------------------------------------------
# The paper's figures


def grid_figure(images: np.ndarray, seeds: list[int], cols: int | None = None, upscale: int = 1) -> Image.Image:
    """uint8 images (N, H, W, C) of `seeds` -> a near-square grid (row-major), each image captioned with its seed."""
    cols = cols or math.ceil(math.sqrt(len(seeds)))
    rows = [list(range(i, min(i + cols, len(seeds)))) for i in range(0, len(seeds), cols)]
    return compose([[images[i] for i in r] for r in rows], [[f"seed {seeds[i]}" for i in r] for r in rows],
                   upscale=upscale)


def style_mixing_figure(G: Generator, row_seeds: list[int], col_seeds: list[int],
                        styles: list[tuple[str, int, int]] | None = None, psi: float = 1.0, cutoff: int | None = None,
                        noise_mode: str = "const", batch: int = 16, upscale: int | None = None,
                        progress: bool = False, row_latents: tuple | None = None) -> Image.Image:
    """Paper Figure 3. Top row: the B sources (col_seeds); left column: the A sources (row_seeds); cell (a, b) is A
    with the style layers [first, stop) of one range copied from B. One block of rows per range in `styles`
    (default: the paper's coarse, middle and fine). Truncation, if any, applies after mixing. With 'random'
    noise a mixed image takes A's noise. row_latents = (labels, ws (A, num_ws, w_dim), noise maps) puts projected
    latents in the A column instead of row_seeds; their mixed images take their own noise maps."""
    R = G.cfg.resolution
    styles = styles or parse_styles("coarse,middle,fine", G.num_ws, R)
    wb = G.broadcast(G.w_from_seeds(col_seeds, batch))
    wa = G.broadcast(G.w_from_seeds(row_seeds, batch)) if row_latents is None else row_latents[1].to(wb)
    na, nb = len(wa), len(wb)
    pairs_a, pairs_b = wa.repeat_interleave(nb, 0), wb.repeat(na, 1, 1)  # (A * B, num_ws, w_dim), row-major
    mixed = [G.mix(pairs_a, pairs_b, first, stop) for _, first, stop in styles]
    ws = G.truncate(torch.cat([wb, wa] + mixed), psi, cutoff)
    if row_latents is None:
        noise_seeds = col_seeds + row_seeds + [a for _ in styles for a in row_seeds for _ in col_seeds]
        imgs = to_uint8(synthesize(G, ws, noise_mode, noise_seeds, batch, progress, "mixing"))
    else:
        na_noise = row_latents[2]
        per_a = [None if n is None else n.repeat_interleave(len(col_seeds), 0) for n in na_noise]
        noise = cat_noise(seed_noise_maps(G, col_seeds, noise_mode), na_noise, *[per_a] * len(styles))
        imgs = to_uint8(synthesize(G, ws, batch=batch, progress=progress, desc="mixing", noise=noise))
        row_seeds = row_latents[0]
    b_imgs, a_imgs, cells_mixed = imgs[:nb], imgs[nb:nb + na], imgs[nb + na:].reshape(len(styles), na, nb, *imgs.shape[1:])
    cells = [[None] + list(b_imgs)]
    labels = [[None] + [f"B {s}" for s in col_seeds]]
    row_labels, gaps = [""], [0]
    for k, (name, _, _) in enumerate(styles):
        for i, a in enumerate(row_seeds):
            cells.append([a_imgs[i]] + list(cells_mixed[k, i]))
            labels.append([None] * (nb + 1))
            row_labels.append(f"{name}\nA {a}" if i == 0 else f"A {a}")
            gaps.append(BLOCK_GAP if i == 0 else 0)
    fig = compose(cells, labels, row_labels, upscale or auto_upscale(R), gaps)
    layout = json.loads(fig.info["layout"])
    layout.update(top="B sources (seeds)", left="A sources (seeds)", rows=row_seeds, cols=col_seeds,
                  styles=[[n, a, b] for n, a, b in styles])
    fig.info["layout"] = json.dumps(layout)
    return fig


def noise_figure(G: Generator, seed: int, samples: int = 100, shown: int = 4, zoom: int = 4, psi: float = 1.0,
                 cutoff: int | None = None, batch: int = 16, upscale: int | None = None,
                 progress: bool = False) -> Image.Image:
    """Paper Figure 4: one latent (seed) under `samples` noise realisations (realisation k drawn from noise seed k).
    Top row: the first `shown` realisations, then the per-pixel standard deviation over all of them (averaged over
    RGB, scaled so the largest is white). With zoom > 0 a second row shows the centre 1/zoom of each, enlarged."""
    if not G.cfg.use_noise:
        raise UsageError("this network has no noise inputs (traditional generator), so it has no stochastic "
                         "variation to show: pick a style-based network")
    R = G.cfg.resolution
    ws = G.truncate(G.broadcast(G.w_from_seeds([seed])), psi, cutoff).expand(samples, -1, -1)
    imgs = synthesize(G, ws, "random", list(range(samples)), batch, progress, "noise")  # (S, C, R, R)
    std_img, std_max = deviation_map(imgs)
    tiles = list(to_uint8(imgs[:shown])) + [std_img]
    cells = [tiles]
    labels = [[f"noise {k}" for k in range(shown)] + [f"std, n={samples}"]]
    row_labels = [f"seed {seed}"]
    if zoom:
        side, lo = R // zoom, (R - R // zoom) // 2
        crop = lambda t: np.asarray(Image.fromarray(t[lo:lo + side, lo:lo + side]).resize((R, R), Image.NEAREST))
        cells.append([crop(t) for t in tiles])
        labels.append([None] * len(tiles))
        row_labels.append(f"centre\nx{zoom}")
    fig = compose(cells, labels, row_labels, upscale or auto_upscale(R))
    layout = json.loads(fig.info["layout"])
    layout.update(seed=seed, samples=samples, shown=shown, zoom=zoom, std_max=std_max)
    fig.info["layout"] = json.dumps(layout)
    return fig


def deviation_map(imgs: torch.Tensor) -> tuple[np.ndarray, float]:
    """Figure 4's map of stochastic variation: the per-pixel standard deviation over images (S, C, H, W) of one
    latent under S noise draws, averaged over colour, as uint8 (H, W, 3) scaled so the largest is white; and that
    largest standard deviation (in [-1, 1] image units)."""
    std = imgs.double().std(0, unbiased=False).mean(0)  # (H, W)
    std_max = float(std.max())
    return (std / max(std_max, 1e-12) * 255).round().byte().cpu().numpy()[..., None].repeat(3, -1), std_max


def truncation_figure(G: Generator, seeds: list[int], psis: list[float] = PAPER_PSIS, cutoff: int | None = None,
                      noise_mode: str = "const", batch: int = 16, upscale: int | None = None,
                      progress: bool = False) -> Image.Image:
    """Paper Figure 8: a row per seed, a column per psi (w' = w_avg + psi (w - w_avg) on layers [0, cutoff))."""
    w = G.broadcast(G.w_from_seeds(seeds, batch))
    ws = torch.cat([G.truncate(w[i:i + 1], p, cutoff) for i in range(len(seeds)) for p in psis])  # row-major
    noise_seeds = [s for s in seeds for _ in psis]
    imgs = to_uint8(synthesize(G, ws, noise_mode, noise_seeds, batch, progress, "truncation"))
    imgs = imgs.reshape(len(seeds), len(psis), *imgs.shape[1:])
    labels = [[_psi_label(p) for p in psis]] + [[None] * len(psis)] * (len(seeds) - 1)
    fig = compose([list(r) for r in imgs], labels, [f"seed {s}" for s in seeds],
                  upscale or auto_upscale(G.cfg.resolution))
    layout = json.loads(fig.info["layout"])
    layout.update(rows=seeds, cols=psis)
    fig.info["layout"] = json.dumps(layout)
    return fig


@torch.no_grad()
def labels_figure(G: Generator, seeds: list[int], psi: float = 1.0, cutoff: int | None = None,
                  noise_mode: str = "const", batch: int = 16, upscale: int | None = None,
                  progress: bool = False) -> Image.Image:
    """A conditional network by label: for attributes a row per attribute, each seed off then on (the other
    attributes the seed's own draw, the same in both); for classes a row per class, a column per seed."""
    cfg = G.cfg
    if not cfg.label_size:
        raise UsageError("--figure labels shows a conditional network (train.py --cond); this one is unconditional")
    names = cfg.label_names or [str(i) for i in range(cfg.label_size)]
    base = G.label_rows(G.fixed_labels, len(seeds), seeds).cpu()
    rows, cells = [], []
    if cfg.label_kind == "classes":
        for k in range(cfg.label_size):
            rows.append(f"{names[k]}")
            cells += [torch.eye(cfg.label_size)[k]] * len(seeds)
        cols = [f"seed {s}" for s in seeds]
    else:
        for k in range(cfg.label_size):
            rows.append(names[k])
            for i in range(len(seeds)):
                for on in (0.0, 1.0):
                    row = base[i].clone()
                    row[k] = on
                    cells.append(row)
        cols = [f"{s} {'on' if on else 'off'}" for s in seeds for on in (0, 1)]
    per_row = len(cols)
    row_seeds = [s for s in seeds for _ in range(per_row // len(seeds))] * cfg.label_size
    c = torch.stack(cells)
    w = torch.cat([G.w(seed_to_z(row_seeds[i:i + batch], cfg.z_dim).to(*_where(G)), c[i:i + batch])
                   for i in range(0, len(c), batch)])
    ws = G.truncate(G.broadcast(w), psi, cutoff)
    imgs = to_uint8(synthesize(G, ws, noise_mode, row_seeds, batch, progress, "labels"))
    imgs = imgs.reshape(cfg.label_size, per_row, *imgs.shape[1:])
    labels = [cols] + [[None] * per_row] * (cfg.label_size - 1)
    fig = compose([list(r) for r in imgs], labels, rows, upscale or auto_upscale(cfg.resolution))
    layout = json.loads(fig.info["layout"])
    layout.update(rows=rows, cols=cols)
    fig.info["layout"] = json.dumps(layout)
    return fig


@torch.no_grad()
def interpolation_frames(G: Generator, seeds: list[int], space: str = "w", frames: int = 60, loop: bool = False,
                         psi: float = 1.0, cutoff: int | None = None, noise_mode: str = "const", batch: int = 16,
                         progress: bool = False) -> np.ndarray:
    """An interpolation through `seeds` in order (back to the first with loop): lerp between mapped w ('w'), or
    slerp between normalized z then map ('z'). `frames` per transition; the noise is the same in every frame.
    Returns uint8 (F, H, W, C), F = frames * transitions (+ 1 for the end point without loop)."""
    if space not in ("w", "z"):
        raise ValueError("space must be 'w' or 'z'")
    path = seeds + seeds[:1] if loop else seeds
    device, dtype = _where(G)
    t = torch.arange(frames, dtype=torch.float64) / frames
    src = seed_to_z(path, G.cfg.z_dim).double() if space == "z" else G.w_from_seeds(path, batch).double().cpu()
    pts = [src[i:i + 1].expand(frames, -1) for i in range(len(path) - 1)]
    ends = [src[i + 1:i + 2].expand(frames, -1) for i in range(len(path) - 1)]
    a, b, tt = torch.cat(pts), torch.cat(ends), t.repeat(len(path) - 1)
    if not loop:  # include the last seed itself as the final frame
        a, b, tt = torch.cat([a, src[-1:]]), torch.cat([b, src[-1:]]), torch.cat([tt, torch.zeros(1, dtype=tt.dtype)])
    if space == "z":
        z = slerp(a, b, tt)
        w = torch.cat([G.w(z[i:i + batch].to(device, dtype)) for i in range(0, len(z), batch)])
    else:
        w = (a + (b - a) * tt[:, None]).to(device, dtype)
    ws = G.truncate(G.broadcast(w), psi, cutoff)
    return to_uint8(synthesize(G, ws, noise_mode, [seeds[0]] * len(ws), batch, progress, "interp"))


# ----------------------------------------------------------------------------------------------------------------
# Writing files


def save_png(img: Image.Image | np.ndarray, path: Path, meta: dict) -> None:
    """Save with text chunks: the image's own info['layout'] (figures) and `meta` (seed, psi, network, ...)."""
    img = Image.fromarray(img) if isinstance(img, np.ndarray) else img
    info = PngInfo()
    items = {"Software": SOFTWARE, **{k: v for k, v in img.info.items() if k == "layout"}, **meta}
    for k, v in items.items():
        info.add_text(k, v if isinstance(v, str) else json.dumps(v))
    img.save(path, pnginfo=info)


def save_animation(frames: np.ndarray, path: Path, fps: int, meta: dict, overwrite: bool) -> None:
    comment = json.dumps(meta)
    if path.suffix == ".mp4":
        ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()  # the ffmpeg binary of the imageio-ffmpeg wheel: no system one needed
        n, h, w, _ = frames.shape
        cmd = [ffmpeg, "-loglevel", "error", "-y" if overwrite else "-n", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18",
               "-metadata", f"comment={comment}", str(path)]
        res = subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), capture_output=True)
        if res.returncode != 0:
            last = (res.stderr.decode(errors="replace").strip().splitlines() or ["unknown error"])[-1]
            raise UsageError(f"ffmpeg could not write {path} ({last}): use --format gif or webp")
        return
    imgs = [Image.fromarray(f) for f in frames]
    extra = {"comment": comment} if path.suffix == ".gif" else {"lossless": True}
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=round(1000 / fps), loop=0, **extra)


def prepare_outdir(outdir: Path, targets: list[Path], overwrite: bool) -> None:
    """Make outdir and check that it can be written and that no target exists, before anything is generated."""
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=outdir, prefix=".write-test-"):
            pass
    except OSError as e:
        raise UsageError(f"cannot write to --outdir {outdir} ({e.strerror or type(e).__name__}): "
                         "pass an --outdir in a writable folder") from None
    clashes = [t for t in targets if t.exists()]
    if clashes and not overwrite:
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        raise UsageError(f"{clashes[0]} already exists{more}: pass --overwrite to replace, or choose another --outdir")


# ----------------------------------------------------------------------------------------------------------------
# Command line


EXAMPLES = """examples:
  python generate.py --seeds 0-99                              one PNG per seed, latest network under runs/
  python generate.py --seeds 1,5,10-12 --trunc 0.7 --trunc-cutoff 8 --network runs/00000-cpu/network
  python generate.py --seeds 0-15 --grid                       the PNGs plus a grid of them
  python generate.py --figure mixing --rows 1-3 --cols 4-8     style mixing, coarse/middle/fine (Figure 3)
  python generate.py --figure mixing --rows 1-3 --cols 4-8 --styles 0-3
  python generate.py --figure noise --seeds 5 --samples 100    stochastic variation and std map (Figure 4)
  python generate.py --figure truncation --seeds 1-4 --psis 1,0.7,0.5,0,-0.5,-1   (Figure 8)
  python generate.py --seeds 0-7 --class cat                   a conditional network's class (or --labels a=1,b=0)
  python generate.py --figure labels --seeds 0-3               a row per class, or per attribute off and on
  python generate.py --figure interp --seeds 1,2,3 --space z --frames 60 --loop --format gif
  python generate.py --latents out/projections/me.npz          render a projected image (project.py)
  python generate.py --latents me.npz --figure mixing --cols 4-8       the projection as A, seeds as B
  python generate.py --latents me.npz,you.npz --figure interp --seeds 3   through the latents, then the seeds
  python generate.py --seeds 0-7 --edit smiling=2,eyeglasses=-1 --edit-layers 0-5
  python generate.py --figure edit --seeds 0-3 --latents me.npz --attribute smiling --strengths=-3,-1.5,0,1.5,3

Edits move w along an attribute's direction (directions.npz beside the network, written by
`python metrics.py --metrics ls`); a strength of 1 is one standard deviation of the generated w's along it.

Files are named by seed; existing files are never replaced without --overwrite.
Each PNG carries its seed(s), psi, cutoff, noise mode and network in its text metadata."""


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser("generate.py", "Generate images and the StyleGAN paper's figures.", EXAMPLES)
    p.add_argument("--network", help="network folder or .safetensors file (default: the latest under runs/)")
    p.add_argument("--seeds", help="seeds, e.g. 0-99 or 1,5,10-12")
    p.add_argument("--figure", choices=FIGURES, help="make one of the paper's figures instead of per-seed images")
    p.add_argument("--grid", action="store_true", help="also write a grid of the seeds' images")
    p.add_argument("--trunc", type=float_in(), metavar="PSI", help="truncation psi, in [-2, 2] (default: the "
                   "network's; 1, none, except 0.7 for NVIDIA's networks)")
    p.add_argument("--trunc-cutoff", type=int_at_least(0), metavar="N", help="truncate style layers [0, N) (default: "
                   "the network's; all, except 8 for NVIDIA's networks)")
    p.add_argument("--class", dest="cls", metavar="NAME", help="a conditional network's class (name or index)")
    p.add_argument("--labels", metavar="A=1,B=0", help="a conditional network's attributes, e.g. smiling=1,"
                   "wearing_hat=0 (the others drawn per seed from the training data's rates)")
    p.add_argument("--trunc-center", choices=("w_avg", "label"), default="w_avg",
                   help="truncate toward the tracked w_avg (default, as the official code) or toward the mean w of "
                        "the requested label (10k samples; keeps the class at low psi)")
    p.add_argument("--noise-mode", choices=("const", "random", "none"), default="const",
                   help="const: the network's fixed noise; random: drawn from each seed; none (default const)")
    p.add_argument("--outdir", help="output folder (default: out/<run>-<options>)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.add_argument("--batch", type=int_at_least(1), default=16, help="images per forward pass (default 16)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps")
    p.add_argument("--dtype", choices=DTYPES, default="auto",
                   help="auto: on the CPU float64 below 256x256 (a seed's pixels then never depend on --batch), "
                        "else float32; bfloat16: float32 weights under bf16 autocast (fast where the CPU has bf16)")
    p.add_argument("--upscale", type=int_at_least(1), help="figures: enlarge each image N times (default: to >= 128 px)")
    g = p.add_argument_group("style mixing (--figure mixing)")
    g.add_argument("--rows", help="A source seeds (left column)")
    g.add_argument("--cols", help="B source seeds (top row)")
    g.add_argument("--styles", default="coarse,middle,fine",
                   help="layers taken from B: coarse, middle, fine or numbers like 0-3; a block per comma-part")
    g = p.add_argument_group("stochastic variation (--figure noise)")
    g.add_argument("--samples", type=int_at_least(2), default=100, help="noise realisations for the std map (default 100)")
    g.add_argument("--shown", type=int_at_least(1), default=4, help="realisations shown (default 4)")
    g.add_argument("--zoom", type=int_at_least(0), default=4, help="row of centre crops enlarged N times; 0 for none")
    g = p.add_argument_group("truncation (--figure truncation)")
    g.add_argument("--psis", default=",".join(f"{p:g}" for p in PAPER_PSIS), help="psi per column")
    g = p.add_argument_group("interpolation (--figure interp)")
    g.add_argument("--space", choices=("w", "z"), default="w", help="lerp in W or slerp in Z (default w)")
    g.add_argument("--frames", type=int_at_least(1), default=60, help="frames per transition (default 60)")
    g.add_argument("--fps", type=int_at_least(1), default=30)
    g.add_argument("--loop", action="store_true", help="return to the first seed")
    g.add_argument("--format", choices=("gif", "webp", "mp4"), default="gif", help="animation format (default gif)")
    g = p.add_argument_group("projected latents and attribute edits")
    g.add_argument("--latents", metavar="FILES", help="latent .npz files from project.py, comma-separated: rendered, "
                   "or the A rows of --figure mixing, points of --figure interp (before --seeds), rows of "
                   "--figure edit")
    g.add_argument("--edit", metavar="EDITS", help="move w along attribute directions, e.g. smiling=2,eyeglasses=-1 "
                   "(strength in standard deviations of w, within [-10, 10])")
    g.add_argument("--edit-layers", default=None, metavar="LAYERS",
                   help="style layers the edit acts on: coarse, middle, fine or a range like 0-5 (default: all)")
    g.add_argument("--directions", help="attribute directions .npz (default: directions.npz beside the network)")
    g.add_argument("--attribute", help="--figure edit: the attribute to vary")
    g.add_argument("--strengths", default=",".join(f"{s:g}" for s in EDIT_STRENGTHS),
                   help="--figure edit: strength per column, written --strengths=-3,0,3 so that a leading minus is "
                        "not read as an option (default %(default)s)")
    return p


class Job:
    """One run of the CLI: the checked arguments, the network and the resolved truncation, then what to write."""

    def __init__(self, args):
        self.args = args
        self.fig = args.figure
        self.latent_files = parse_latent_files(args.latents) if args.latents is not None else []
        self.seeds, self.rows, self.cols = self.parse_sources()
        self.psis = parse_psis(args.psis) if self.fig == "truncation" else None
        if self.fig == "interp" and len(self.seeds) + len(self.latent_files) < 2 and not args.loop:
            raise UsageError("--figure interp needs at least two seeds, e.g. --seeds 1,2,3")
        device = pick_device(args.device)
        if device.type == "mps" and args.dtype == "float64":
            raise UsageError("MPS has no float64: pass --dtype float32 or auto, or --device cpu")
        self.network = resolve_network(args.network)
        self.G = G = load_generator(self.network, device, args.dtype)
        self.psi, self.cutoff = G.truncation(args.trunc, args.trunc_cutoff)  # None: the network's defaults
        G.fixed_labels = self.label = label_request(G, args.cls, args.labels)
        if args.trunc_center == "label":
            if self.label is None or self.label.isnan().any():
                raise UsageError("--trunc-center label needs the whole label: --class NAME, or every attribute in "
                                 "--labels")
            G.trunc_center = G.label_w_avg(self.label)
        self.styles = parse_styles(args.styles, G.num_ws, G.cfg.resolution) if self.fig == "mixing" else None
        self.edits, self.dirs, self.edit = self.parse_edits()
        self.labels, self.ws, self.noise = (read_latents(G, self.latent_files) if self.latent_files
                                            else ([], None, None))
        if self.fig == "noise" and args.zoom > G.cfg.resolution:
            raise UsageError(f"--zoom {args.zoom} is larger than the image ({G.cfg.resolution} px): pass a zoom of "
                             f"at most {G.cfg.resolution}, or 0")
        self.upscale = args.upscale or auto_upscale(G.cfg.resolution)
        self.outdir = Path(args.outdir) if args.outdir else Path("out") / self.default_outdir_name()
        self.meta = {"network": str(self.network), "psi": f"{self.psi:g}", "cutoff": str(self.cutoff),
                     "noise_mode": args.noise_mode, **({"labels": label_text(G, self.label),
                                                         "trunc_center": args.trunc_center} if self.label is not None else {})}

    def parse_sources(self) -> tuple[list[int], list[int], list[int]]:
        """(seeds, mixing rows, mixing cols), checked against the figure and the latent files."""
        args, fig, latent_files = self.args, self.fig, self.latent_files
        if latent_files and fig in ("noise", "truncation"):
            raise UsageError(f"--figure {fig} takes seeds only: drop --latents, or use --figure mixing, interp or edit")
        if latent_files and fig == "interp" and args.space == "z":
            raise UsageError("projected latents live in W: use --space w with --latents")
        if fig == "edit" and not args.attribute:
            raise UsageError("--figure edit needs --attribute, e.g. --attribute smiling")
        if fig == "mixing":
            if not ((args.rows or latent_files) and args.cols):
                raise UsageError("--figure mixing needs --rows (A seeds) and --cols (B seeds), e.g. --rows 1-3 "
                                 "--cols 4-8")
            if args.rows and latent_files:
                raise UsageError("--figure mixing takes its A sources from --rows or --latents, not both")
            return [], parse_seeds(args.rows) if args.rows else [], parse_seeds(args.cols)
        if args.seeds:
            return parse_seeds(args.seeds), [], []
        if not latent_files:
            raise UsageError("--seeds is required, e.g. --seeds 0-99 or --seeds 1,5,10-12")
        return [], [], []

    def parse_edits(self):
        """(edits, directions, edit function or None) from --edit / --figure edit and --edit-layers."""
        args, G = self.args, self.G
        if args.edit is None and self.fig != "edit":
            return [], None, None
        dirs = load_directions(args.directions or directions_path(self.network), G)
        layers = parse_styles(args.edit_layers, G.num_ws, G.cfg.resolution) if args.edit_layers else [
            ("all", 0, G.num_ws)]
        if len(layers) != 1:
            raise UsageError(f"--edit-layers takes one range, not {args.edit_layers!r}: e.g. coarse or 0-5")
        self.first, self.stop = layers[0][1:]
        if self.fig == "edit":
            parse_edits(f"{args.attribute}=0", dirs["names"])  # the attribute must be known
            self.strengths = parse_strengths(args.strengths)
        if args.edit is None:
            return [], dirs, None
        edits = parse_edits(args.edit, dirs["names"])
        return edits, dirs, lambda ws: apply_edits(ws, edits, dirs, self.first, self.stop)

    def default_outdir_name(self) -> str:
        """The network's run name and the options that change the pixels."""
        args = self.args
        tag = [network_name(self.network), self.fig or ("latents" if self.latent_files and not self.seeds else "seeds")]
        if self.edits:
            tag.append("edit-" + slug(args.edit.replace("=", "")))
        if self.fig != "truncation" and self.psi != 1:
            tag.append(f"psi{self.psi:g}")
        if args.trunc_cutoff is not None:
            tag.append(f"cutoff{self.cutoff}")
        if args.cls is not None or args.labels is not None:
            tag.append(slug(("class-" + args.cls) if args.cls is not None else args.labels.replace("=", "")))
        if args.trunc_center == "label":
            tag.append("label-centre")
        if self.fig != "noise" and args.noise_mode != "const":
            tag.append(f"noise-{args.noise_mode}")
        return "-".join(tag)

    def seeds_after_latents(self) -> tuple[torch.Tensor, list]:
        """ws and noise maps of the latent files followed by the seeds (untruncated)."""
        ws, noise = self.ws, self.noise
        if self.seeds:
            seed_ws = self.G.broadcast(self.G.w_from_seeds(self.seeds, self.args.batch))
            seed_maps = seed_noise_maps(self.G, self.seeds, self.args.noise_mode)
            ws = seed_ws if ws is None else torch.cat([ws, seed_ws.to(ws)])
            noise = seed_maps if noise is None else cat_noise(noise, seed_maps)
        return ws, noise

    def run(self) -> list[Path]:
        if self.fig is None:
            return self.write_latent_images() if self.latent_files else self.write_seed_images()
        if self.fig == "interp":
            return self.write_interpolation()
        paths, images, extra = getattr(self, f"figure_{self.fig}")()
        prepare_outdir(self.outdir, paths, self.args.overwrite)
        for path, img, more in zip(paths, images(), extra):
            save_png(img, path, {**self.meta, **more})
            print(f"wrote {path}")
        return paths

    def write_latent_images(self) -> list[Path]:
        args, G = self.args, self.G
        targets = ([self.outdir / f"{name}.png" for name in self.labels] +
                   [self.outdir / f"seed{s:04d}.png" for s in self.seeds])
        prepare_outdir(self.outdir, targets, args.overwrite)
        ws = G.truncate(self.ws, self.psi, self.cutoff)
        imgs = to_uint8(synthesize(G, ws if self.edit is None else self.edit(ws), batch=args.batch, noise=self.noise))
        if self.seeds:
            imgs = np.concatenate([imgs, generate_images(G, self.seeds, self.psi, self.cutoff, args.noise_mode,
                                                         args.batch, self.edit)])
        for path, img, src in zip(targets, imgs, self.latent_files + [str(s) for s in self.seeds]):
            save_png(img, path, {**self.meta, **({"latents": src} if src.endswith(".npz") else {"seed": src}),
                                 **({"edit": args.edit} if self.edits else {})})
        print(f"wrote {len(targets)} images to {self.outdir}")
        return targets

    def write_seed_images(self) -> list[Path]:
        args, seeds, outdir = self.args, self.seeds, self.outdir
        meta = {**self.meta, **({"edit": args.edit} if self.edits else {})}
        targets = [outdir / f"seed{s:04d}.png" for s in seeds]
        grid_path = outdir / f"grid-seeds{slug(args.seeds)}.png"
        prepare_outdir(outdir, targets + ([grid_path] if args.grid else []), args.overwrite)
        kept = []
        with tqdm(total=len(seeds), unit="img", desc="generate") as bar:
            for chunk, imgs in iter_images(self.G, seeds, self.psi, self.cutoff, args.noise_mode, args.batch,
                                           self.edit):
                for s, img in zip(chunk, imgs):
                    save_png(img, outdir / f"seed{s:04d}.png", {**meta, "seed": str(s)})
                kept += [imgs] if args.grid else []
                bar.update(len(chunk))
        if args.grid:
            save_png(grid_figure(np.concatenate(kept), seeds, upscale=self.upscale), grid_path,
                     {**meta, "figure": "grid", "seeds": seeds})
            targets.append(grid_path)
        print(f"wrote {len(targets)} images to {outdir}")
        return targets

    # Each figure: (paths, a function making the images, the metadata of each)

    def figure_mixing(self):
        args = self.args
        a_name = slug(args.rows) if args.rows else "-".join(self.labels)
        name = f"mixing-rows{a_name}-cols{slug(args.cols)}"
        name += "" if args.styles == "coarse,middle,fine" else f"-styles{slug(args.styles)}"
        row_latents = (self.labels, self.ws, self.noise) if self.latent_files else None
        make = lambda: [style_mixing_figure(self.G, self.rows, self.cols, self.styles, self.psi, self.cutoff,
                                            args.noise_mode, args.batch, self.upscale, progress=True,
                                            row_latents=row_latents)]
        return ([self.outdir / f"{name}.png"], make,
                [{"figure": "style mixing (Figure 3)", "rows": self.rows or self.latent_files, "cols": self.cols}])

    def figure_edit(self):
        args = self.args
        labels = self.labels + [f"seed {s}" for s in self.seeds]
        ws, noise = self.seeds_after_latents()
        ws = self.G.truncate(ws, self.psi, self.cutoff)
        name = "edit-" + "-".join(self.labels + ([f"seeds{slug(args.seeds)}"] if self.seeds else []))
        make = lambda: [edit_figure(self.G, labels, ws, noise, args.attribute, self.strengths, self.dirs, self.first,
                                    self.stop, args.batch, self.upscale, progress=True)]
        return ([self.outdir / f"{name}-{args.attribute}.png"], make,
                [{"figure": "attribute edit", "rows": labels, "attribute": args.attribute,
                  "strengths": self.strengths, "layers": [self.first, self.stop]}])

    def figure_noise(self):
        args, seeds = self.args, self.seeds
        shown = min(args.shown, args.samples)
        make = lambda: (noise_figure(self.G, s, args.samples, shown, args.zoom, self.psi, self.cutoff, args.batch,
                                     self.upscale, progress=True) for s in seeds)
        return ([self.outdir / f"noise-seed{s:04d}.png" for s in seeds], make,
                [{"figure": "stochastic variation (Figure 4)", "seed": str(s), "noise_mode": "random"}
                 for s in seeds])

    def figure_truncation(self):
        args = self.args
        make = lambda: [truncation_figure(self.G, self.seeds, self.psis, self.cutoff, args.noise_mode, args.batch,
                                          self.upscale, progress=True)]
        return ([self.outdir / f"truncation-seeds{slug(args.seeds)}-psis{slug(args.psis)}.png"], make,
                [{"figure": "truncation (Figure 8)", "seeds": self.seeds, "psi": self.psis}])

    def figure_labels(self):
        args = self.args
        make = lambda: [labels_figure(self.G, self.seeds, self.psi, self.cutoff, args.noise_mode, args.batch,
                                      self.upscale, progress=True)]
        return ([self.outdir / f"labels-seeds{slug(args.seeds)}.png"], make,
                [{"figure": "by label", "seeds": self.seeds, "labels": self.G.cfg.label_names}])

    def write_interpolation(self) -> list[Path]:
        args, G = self.args, self.G
        points = "-".join(self.labels + ([f"seeds{slug(args.seeds)}"] if self.seeds else []))
        path = self.outdir / f"interp-{args.space}-{points}{'-loop' if args.loop else ''}.{args.format}"
        prepare_outdir(self.outdir, [path], args.overwrite)
        if self.latent_files:
            ws, noise = self.seeds_after_latents()
            frames = latent_path_frames(G, G.truncate(ws, self.psi, self.cutoff), noise, args.frames, args.loop,
                                        args.batch, progress=True)
        else:
            frames = interpolation_frames(G, self.seeds, args.space, args.frames, args.loop, self.psi, self.cutoff,
                                          args.noise_mode, args.batch, progress=True)
        save_animation(frames, path, args.fps, {**self.meta, "figure": f"interpolation in {args.space.upper()}",
                                                "seeds": self.seeds, "latents": self.latent_files,
                                                "frames": len(frames)}, args.overwrite)
        print(f"wrote {path}")
        return [path]


def main(argv=None) -> list[Path]:
    """Run the CLI; returns the files written."""
    args = build_parser().parse_args(argv)
    if args.trunc is not None:
        check_psi(args.trunc)  # before the network loads: a typo costs no waiting
    return Job(args).run()


if __name__ == "__main__":
    run_cli(main)
