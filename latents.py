"""Latent files and attribute directions: what project.py writes, metrics.py saves and generate.py/demo.py read.

A latent file (.npz, written by project.py) holds
    ws        float32 (num_ws, w_dim)   one w per style layer (a W projection repeats one w on every layer)
    noise_<i> float32 (r, r)            the optimised noise map of style layer i, where the network has one
    info      str (JSON)                the network's config and fingerprint, the space (w or w+), steps, LPIPS
An attribute-direction file (directions.npz, written by metrics.py beside the network) holds
    names      str (A,)                 attribute names
    directions float32 (A, w_dim)       unit normals of each attribute's linear SVM in W, + = attribute present
    stds       float32 (A,)             standard deviation of w along each direction over the fitted samples
    note       str (JSON)               the classifier, its data, the sample count and the network fingerprint

Both are plain arrays, read with np.load(allow_pickle=False): loading never runs code.

Editing strength: w' = w + s * std * n, so s = 1 moves w by one standard deviation of the generated w's along the
direction; s = +-3 takes a typical w well past the far side of the distribution (InterFaceGAN, Shen et al. 2020).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import torch

from common import UsageError

DIRECTIONS_NAME = "directions.npz"
EDIT_RANGE = (-10.0, 10.0)  # strengths in standard deviations; beyond ~5 the images are mostly artefacts


def network_fingerprint(G) -> str:
    """A short hash of G's weights (as float32, so a float64 copy has the same one): names the network a latent or
    direction belongs to."""
    h = hashlib.sha1()
    for name, t in sorted(G.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _atomic_savez(path: Path, arrays: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.stem}-", suffix=".npz", delete=False) as f:
        np.savez(f, **arrays)
    os.replace(f.name, path)
    return path


def _read_npz(path: str | Path, what: str, needed: tuple[str, ...]) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist: check the path") from None
    except (OSError, ValueError, EOFError) as e:
        raise UsageError(f"{path} is not a readable {what} ({type(e).__name__}): pass a .npz written by "
                         f"{'project.py' if what == 'latent file' else 'metrics.py --metrics ls'}") from None
    missing = [k for k in needed if k not in arrays]
    if missing:
        raise UsageError(f"{path} is not a {what}: it has no {', '.join(missing)}")
    return arrays


# ----------------------------------------------------------------------------------------------------------------
# Latent files


def save_latents(path: str | Path, G, ws: torch.Tensor, noise: list, info: dict) -> Path:
    """ws (num_ws, w_dim), noise maps (per layer, (1, 1, r, r) or None) -> an .npz, written atomically."""
    arrays = {"ws": ws.detach().cpu().float().numpy()}
    for i, n in enumerate(noise):
        if n is not None:
            arrays[f"noise_{i}"] = n.detach().cpu().float().numpy().reshape(n.shape[-2:])
    meta = {"network_config": G.cfg.to_dict(), "fingerprint": network_fingerprint(G), **info}
    arrays["info"] = np.array(json.dumps(meta))
    return _atomic_savez(path, arrays)


def load_latents(path: str | Path, G) -> tuple[torch.Tensor, list, dict]:
    """An .npz from project.py -> (ws (num_ws, w_dim), noise list for G.synthesis (None where G has none), info),
    on G's device and dtype. A file projected with another network is refused: its w means nothing here."""
    arrays = _read_npz(path, "latent file", ("ws", "info"))
    try:
        info = json.loads(str(arrays["info"]))
    except json.JSONDecodeError:
        raise UsageError(f"{path} has a damaged info record: project the image again") from None
    p = next(G.parameters())
    ws = arrays["ws"]
    if ws.shape != (G.num_ws, G.cfg.w_dim):
        raise UsageError(f"{path} holds latents of shape {ws.shape} from another network, but this one needs "
                         f"({G.num_ws}, {G.cfg.w_dim}): pass the --network it was projected with, or project again")
    if info.get("fingerprint") != network_fingerprint(G):
        raise UsageError(f"{path} was projected with another network (fingerprint {info.get('fingerprint')}, this "
                         f"one is {network_fingerprint(G)}): pass the --network it was projected with, or project "
                         "the image again with this one")
    noise = [None] * G.num_ws
    for i in range(G.num_ws):
        if f"noise_{i}" in arrays:
            noise[i] = torch.from_numpy(arrays[f"noise_{i}"]).to(p.device, p.dtype)[None, None]
    return torch.from_numpy(ws).to(p.device, p.dtype), noise, info


# ----------------------------------------------------------------------------------------------------------------
# Attribute directions


def save_directions(path: str | Path, names: list[str], directions: np.ndarray, stds: np.ndarray, note: dict) -> Path:
    return _atomic_savez(path, {"names": np.array(list(names), dtype=str),
                                "directions": np.asarray(directions, np.float32),
                                "stds": np.asarray(stds, np.float32), "note": np.array(json.dumps(note))})


def directions_path(network: str | Path) -> Path:
    """directions.npz beside the network: in its folder, or beside its .safetensors file."""
    p = Path(network)
    return (p if p.is_dir() else p.parent) / DIRECTIONS_NAME


def load_directions(path: str | Path, G=None) -> dict:
    """-> {'names': [...], 'directions': (A, w_dim) float32, 'stds': (A,), 'note': dict}. With G, directions fitted
    on another network are refused."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no attribute directions at {path}: compute them with `python metrics.py --metrics ls "
                         f"--network {path.parent}` (it saves {DIRECTIONS_NAME} beside the network)")
    a = _read_npz(path, "direction file", ("names", "directions", "stds", "note"))
    out = {"names": [str(n) for n in a["names"]], "directions": a["directions"], "stds": a["stds"],
           "note": json.loads(str(a["note"]))}
    if G is not None:
        fp = out["note"].get("fingerprint")
        if out["directions"].shape[1] != G.cfg.w_dim or (fp is not None and fp != network_fingerprint(G)):
            raise UsageError(f"{path} holds directions of another network: recompute them with `python metrics.py "
                             "--metrics ls` for this network")
    return out


def parse_edits(text: str, names: list[str]) -> list[tuple[str, float]]:
    """'smiling=2,eyeglasses=-1' -> [('smiling', 2.0), ('eyeglasses', -1.0)], names known, strengths in range."""
    lo, hi = EDIT_RANGE
    out = []
    for part in str(text).split(","):
        m = re.fullmatch(r"\s*([A-Za-z0-9_]+)\s*=\s*([-+]?[0-9.]+(?:e[-+]?\d+)?)\s*", part)
        if not m:
            raise UsageError(f"invalid edit {part.strip()!r}: write attribute=strength, comma-separated, "
                             "e.g. smiling=2,eyeglasses=-1")
        name, value = m.group(1), float(m.group(2))
        if name not in names:
            raise UsageError(f"unknown attribute {name!r}: choose from {', '.join(names)}")
        if not lo <= value <= hi:
            raise UsageError(f"edit strength {value:g} for {name} is outside [{lo:g}, {hi:g}] (units: standard "
                             "deviations of w along the direction; +-3 is a strong edit)")
        out.append((name, value))
    return out


def apply_edits(ws: torch.Tensor, edits: list[tuple[str, float]], dirs: dict, first: int = 0,
                stop: int | None = None) -> torch.Tensor:
    """ws (N, num_ws, w_dim) -> ws moved by strength * std along each attribute's direction on style layers
    [first, stop) only."""
    stop = ws.shape[1] if stop is None else stop
    delta = torch.zeros(ws.shape[-1], dtype=torch.float64)
    for name, s in edits:
        i = dirs["names"].index(name)
        d = dirs["directions"][i]
        if not np.isfinite(d).all():
            raise UsageError(f"attribute {name} has no direction: every fitted sample had the same label, so no "
                             "boundary was found; recompute directions with more samples")
        delta += s * float(dirs["stds"][i]) * torch.from_numpy(d.astype(np.float64))
    out = ws.clone()
    out[:, first:stop] += delta.to(ws.device, ws.dtype)
    return out
