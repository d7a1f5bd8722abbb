"""Networks, runs and checkpoints on disk: everything train.py and the scripts read and write, and nothing else.

- Networks: load_network and read_network_meta take any network (our folders, .safetensors files, Hub ids and
  NVIDIA's .pkl files, through official.py); save_network writes ours (model.py).
- Run folders: runs/NNNNN-name, numbered by creating them, so two runs started at once never share one.
- Checkpoints: runs/<run>/checkpoints/ckpt-N, written by every process into ckpt-N.tmp and renamed into place, the
  network folder rewritten only after; verified before a resume, which falls back past a damaged one.
- Fine-tuning sources (--init): a checkpoint, a run, a network folder or an official pickle, as state dicts.
Only safetensors, JSON, torch.save archives read with weights_only=True and the allow-listed contents of an official
pickle are read: loading never runs code from a file.
"""

from __future__ import annotations

import errno
import json
import math
import os
import pickle
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import broadcast_object_list
from accelerate.utils import load as accelerate_load
from PIL import Image
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

import model
import official
from common import WEIGHTS_NAME, NetworkError, UsageError
from model import Discriminator, Generator, save_network


# ----------------------------------------------------------------------------------------------------------------
# Networks of any kind


def is_official(path: str | os.PathLike) -> bool:
    """NVIDIA's networks are pickles; ours never are."""
    return str(path).lower().endswith(".pkl")


def load_network(path: str | os.PathLike, device: str | torch.device = "cpu") -> Generator:
    """A generator from a network folder, a .safetensors file, a Hub repo id ('user/repo') or one of NVIDIA's
    official .pkl files (its Gs, read without running any of its code: see official.py). Eval mode; on a CPU in
    channels_last, where it renders 1.3-1.7 times faster than in NCHW (docs/performance.md)."""
    G = official.load_pkl(path, device) if is_official(path) else model.load_network(path, device)
    return G.to(memory_format=torch.channels_last) if torch.device(device).type == "cpu" else G


def read_network_meta(path: str | os.PathLike) -> dict:
    """The JSON metadata of any network load_network reads (its config under 'network', plus training info)."""
    return official.pkl_meta(path) if is_official(path) else model.read_network_meta(path)


# ----------------------------------------------------------------------------------------------------------------
# Run folders

def run_ids(outdir: Path) -> list[int]:
    return [int(p.name.split("-")[0]) for p in outdir.glob("*") if p.is_dir() and p.name.split("-")[0].isdigit()]


def next_run_dir(outdir: Path, name: str) -> Path:
    """Create and return outdir/NNNNN-name, one past the highest number there. Creating the folder is the claim: of
    two runs started at once under one name, the second finds the folder taken and numbers itself again, instead of
    writing into the first's folder. (Two names started at once may still get the same number: harmless.)"""
    outdir.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        run_dir = outdir / f"{max(run_ids(outdir), default=-1) + 1:05d}-{name}"
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise UsageError(f"could not create a new run folder in {outdir}: other runs keep taking the numbers; try again")



def claim_run_dir(outdir: Path, name: str, state) -> Path:
    """A new run folder (next_run_dir), made by the main process and named to every process."""
    run_dir = next_run_dir(outdir, name) if state.is_main_process else None
    if state.num_processes == 1:
        return run_dir
    return Path(broadcast_object_list([str(run_dir) if run_dir else ""])[0])


def open_run(path: str | os.PathLike) -> tuple[Path, Path | None, dict]:
    """--resume PATH (a run folder or one of its checkpoints): (the run folder, the checkpoint named or None for the
    newest intact one, the run's config.json)."""
    path = Path(path)
    chosen = path if path.name.startswith("ckpt-") else None
    run_dir = path.parent.parent if chosen else path
    if not (run_dir / "config.json").is_file():
        raise UsageError(f"{path} is not a run folder (no config.json): pass runs/<run>")
    return run_dir, chosen, json.loads((run_dir / "config.json").read_text())


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints: listing, verifying, choosing the one to resume from

def remove_unfinished_checkpoints(run_dir: Path) -> list[Path]:
    """Delete the ckpt-N.tmp folders that a killed run left half-written (never a finished checkpoint)."""
    unfinished = sorted((run_dir / "checkpoints").glob("ckpt-*.tmp"))
    for p in unfinished:
        shutil.rmtree(p, ignore_errors=True)
    return unfinished


def checkpoint_to_resume(run_dir: Path, chosen: Path | None, state, allow_inexact: bool = False) -> Path:
    """What a resume starts from (resume_checkpoint), once the main process has removed the checkpoints that a
    killed run left unfinished; warnings on the main process's stderr."""
    if state.is_main_process:
        remove_unfinished_checkpoints(run_dir)
    state.wait_for_everyone()
    warn = (lambda message: print(message, file=sys.stderr)) if state.is_main_process else (lambda _: None)
    return resume_checkpoint(run_dir, chosen, state.num_processes, allow_inexact, warn=warn)


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoint folders, oldest first (the temporary `.tmp` folders of unfinished writes excluded)."""
    return sorted((run_dir / "checkpoints").glob("ckpt-*[0-9]"), key=lambda p: int(p.name.split("-")[1]))


def latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = [c for c in list_checkpoints(run_dir) if (c / "state.json").is_file()]
    return ckpts[-1] if ckpts else None


RNG_STATE_PREFIX = "random_states_"
PROCESS_STATE_PREFIX = "process_state_"  # save_checkpoint's process_state: process_state_<rank>.safetensors  # Accelerate's per-process RNG files: random_states_<rank>.pkl


def verify_checkpoint(ckpt: Path, processes: int = 1) -> dict[str, str]:
    """What is wrong with a checkpoint, as {file: problem}; empty when every file a resume reads is there and readable.

    Checked: the safetensors headers and sizes of both networks' weights and of G_ema (safetensors has no checksum,
    so flipped bits inside tensor data cannot be seen; truncation and a damaged header can), the optimizer, RNG and
    (if present) gradient-scaler states, and state.json. The .bin/.pkl files are torch.save zip archives holding a
    pickle: their CRC-32s are checked, then they are read with Accelerate's own loader, the one load_state uses:
    torch.load(weights_only=True), whose unpickler admits only tensors, plain containers and an allowlist of numpy
    types, so reading them runs no code from the file. Reading them in full is the only way to know load_state will
    succeed: Accelerate skips an unreadable RNG file silently.
    """
    problems = {}
    extra = sorted(p.name for p in ckpt.glob(f"{PROCESS_STATE_PREFIX}*.safetensors"))  # --batch-gpu runs only
    for name in ("model.safetensors", "model_1.safetensors", "G_ema/model.safetensors", *extra):  # G, D, G_ema
        f = ckpt / name
        if not f.is_file():
            problems[name] = "is missing"
            continue
        try:
            with safe_open(str(f), framework="pt") as st:  # checks the header against the file size
                st.keys()
        except Exception as e:  # SafetensorError, or OSError for an unreadable file
            problems[name] = f"is unreadable ({_one_line(e)})"
    pickles = ["optimizer.bin", "optimizer_1.bin"] + [f"{RNG_STATE_PREFIX}{i}.pkl" for i in range(processes)]
    if (ckpt / "scaler.pt").exists():  # fp16 runs only
        pickles.append("scaler.pt")
    for name in pickles:
        f = ckpt / name
        if not f.is_file():
            problems[name] = "is missing"
            continue
        try:
            with zipfile.ZipFile(f) as z:  # torch.save writes a zip archive with a CRC-32 per member
                bad = z.testzip()
        except (zipfile.BadZipFile, OSError):
            problems[name] = "is unreadable (not a complete torch.save archive: truncated or overwritten)"
            continue
        if bad is not None:
            problems[name] = f"is unreadable (checksum mismatch in {bad})"
            continue
        try:
            obj = accelerate_load(f, map_location="cpu")
        except pickle.UnpicklingError:
            problems[name] = "is unreadable (holds objects other than tensors and plain data; not loaded)"
            continue
        except Exception as e:
            problems[name] = f"is unreadable ({_one_line(e)})"
            continue
        if name.startswith(RNG_STATE_PREFIX):
            keys = ["random_state", "numpy_random_seed", "torch_manual_seed"]
            if torch.cuda.is_available():  # load_state restores the CUDA generators too, when there are any
                keys.append("torch_cuda_manual_seed")
            missing = [k for k in keys if not isinstance(obj, dict) or k not in obj]
            if missing:
                problems[name] = f"lacks {', '.join(missing)}"
    try:
        state = json.loads((ckpt / "state.json").read_text())
        if not isinstance(state, dict) or not isinstance(state.get("cur_nimg"), int) or "stats" not in state:
            problems["state.json"] = "lacks cur_nimg or stats"
    except FileNotFoundError:
        problems["state.json"] = "is missing"
    except (OSError, ValueError) as e:
        problems["state.json"] = f"is unreadable ({_one_line(e)})"
    return problems


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _describe(ckpt: Path, problems: dict[str, str]) -> str:
    return f"{ckpt.name}: " + ", ".join(f"{f} {p}" for f, p in problems.items())


def _rng_only(problems: dict[str, str]) -> bool:
    return bool(problems) and all(f.startswith(RNG_STATE_PREFIX) for f in problems)


def resume_checkpoint(run_dir: Path, chosen: Path | None = None, processes: int = 1, allow_inexact: bool = False,
                      warn=print) -> Path:
    """The checkpoint to resume from, verified: `chosen` if given (refused if damaged), else the newest intact one.
    A checkpoint whose only problem is its RNG states would resume, but not bit-identically: it is used only with
    allow_inexact. Falling back past a damaged checkpoint warns, naming both."""
    if chosen is not None and not chosen.is_dir():
        raise UsageError(f"{chosen} does not exist: pass a run folder or one of its checkpoints/ckpt-N folders")
    candidates = [chosen] if chosen is not None else list_checkpoints(run_dir)[::-1]  # newest first
    if not candidates:
        raise UsageError(f"{run_dir} has no complete checkpoint to resume from")
    skipped = []  # (checkpoint, problems), newest first
    for ckpt in candidates:
        problems = verify_checkpoint(ckpt, processes)
        if not problems or (allow_inexact and _rng_only(problems)):
            if skipped:
                warn(f"warning: damaged checkpoint {'; '.join(_describe(c, p) for c, p in skipped)}; resuming from "
                     f"{ckpt.name} instead, the newest intact one")
            if problems:
                warn(f"warning: {_describe(ckpt, problems)}; resuming from {ckpt.name} with fresh RNG states "
                     "(--allow-inexact-resume): the run goes on, but not bit-identically to an uninterrupted one")
            return ckpt
        skipped.append((ckpt, problems))
    damage = "; ".join(_describe(c, p) for c, p in skipped)
    inexact = [c.name for c, p in skipped if _rng_only(p)]
    if chosen is not None and inexact:
        raise UsageError(f"{damage}: the resume would not be bit-identical; add --allow-inexact-resume to go on "
                         f"anyway, or resume {run_dir} to use its newest intact checkpoint")
    if chosen is not None:
        raise UsageError(f"damaged checkpoint {damage}; resume {run_dir} to use its newest intact checkpoint")
    hint = (f"; {inexact[0]} has only unreadable RNG states: add --allow-inexact-resume to resume from it anyway"
            if inexact else "")
    raise UsageError(f"no intact checkpoint in {run_dir}: {damage}{hint}")


# ----------------------------------------------------------------------------------------------------------------
# Writing: checkpoints, the network, the run's first files

# torch.save reports a failed write as RuntimeError (without errno), safetensors as SafetensorError, Python as OSError.
WRITE_ERRORS = (OSError, RuntimeError, SafetensorError)


def fp32_bytes(*modules: torch.nn.Module) -> int:
    return sum(t.numel() * 4 for m in modules for t in [*m.parameters(), *m.buffers()])


def write_error(e: BaseException, where: Path, need: int) -> str:
    """Why a write into `where` that needs `need` bytes failed, in a few words: an OSError's own reason (its text
    repeats the path). torch.save names no cause (a full disk reads "unexpected pos ..."), so where the disk has
    less room than the write needs, the reason is the full disk, in the words an OSError would use."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    while not where.exists() and where != where.parent:
        where = where.parent
    return os.strerror(errno.ENOSPC) if shutil.disk_usage(where).free < need else _one_line(e)


def write_failed(path: Path, why: str, need: int, intact: str, run_dir: Path) -> UsageError:
    """The one-line message for a write that failed: what, why, the free space it needs, and what is intact."""
    free = shutil.disk_usage(path.parent if path.parent.exists() else run_dir).free
    return UsageError(f"could not write {path} ({why}): it needs about {need / 2**20:.1f} MB free in {path.parent}, "
                      f"which has {free / 2**20:.1f} MB free. {intact}")


def save_grid(images: np.ndarray, path: Path, cols: int) -> np.ndarray:
    """uint8 (N, H, W, C) -> one PNG grid."""
    n, h, w, c = images.shape
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * h, cols * w, c), np.uint8)
    for i, img in enumerate(images):
        grid[(i // cols) * h:(i // cols + 1) * h, (i % cols) * w:(i % cols + 1) * w] = img
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    Image.fromarray(grid.squeeze(-1) if c == 1 else grid).save(tmp)
    os.replace(tmp, path)
    return grid


def start_run_folder(run_dir: Path, config: dict, dataset, accel) -> None:
    """The main process writes config.json and a grid of the first reals."""
    if not accel.is_main_process:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    reals = torch.stack([dataset[i][0] for i in range(min(32, len(dataset)))])
    save_grid(reals.permute(0, 2, 3, 1).numpy(), run_dir / "reals.png", cols=8)


def load_checkpoint_state(accel, resume: Path, G_ema: Generator) -> tuple[int, dict, tuple | None, dict]:
    """Models, optimizers and RNG states (weights-only loading) from `resume`; returns cur_nimg, the run's timing
    stats, the phase the Adam states belong to and this process's extra tensors (save_checkpoint's
    process_state)."""
    accel.load_state(str(resume))
    G_ema.load_state_dict(load_network(resume / "G_ema").state_dict())
    state = json.loads((resume / "state.json").read_text())
    extra = resume / f"{PROCESS_STATE_PREFIX}{accel.process_index}.safetensors"
    return (state["cur_nimg"], state["stats"], tuple(state["phase_key"]) if state.get("phase_key") else None,
            load_file(str(extra)) if extra.is_file() else {})


def save_checkpoint(accel, run_dir: Path, G_ema: Generator, G_raw, D_raw, cur_nimg: int, stats: dict,
                    opt_key: tuple | None, keep: int, network_info: dict, final: bool = False,
                    process_state: dict | None = None) -> None:
    """Every process calls save_state into a temporary folder; the main process adds G_ema and the JSON state,
    renames it into place, and only then deletes the checkpoints beyond the newest `keep` and rewrites the network
    (with `network_info` in its metadata). A failed write (a full disk) removes the partial folder and stops the
    run with the previous checkpoint and network intact."""
    main = accel.is_main_process
    ckdir = run_dir / "checkpoints"
    tmp = ckdir / f"ckpt-{cur_nimg:09d}.tmp"
    dest = ckdir / f"ckpt-{cur_nimg:09d}"
    if main and tmp.exists():
        shutil.rmtree(tmp)
    accel.wait_for_everyone()
    why = None  # the text only: a kept exception would keep the failed writer's file open, and its space taken
    need = 3 * fp32_bytes(G_raw, D_raw) + fp32_bytes(G_ema)  # G and D with two Adam moments each, G_ema
    try:
        accel.save_state(str(tmp))
        if process_state:  # every process's own tensors beside its RNG states (the --batch-gpu slices' streams)
            save_file({k: v.contiguous() for k, v in process_state.items()},
                      str(tmp / f"{PROCESS_STATE_PREFIX}{accel.process_index}.safetensors"))
        if main:
            save_network(G_ema, tmp / "G_ema")
            (tmp / "state.json").write_text(json.dumps({"cur_nimg": cur_nimg, "stats": stats, "phase_key": opt_key}) + "\n")
    except WRITE_ERRORS as e:
        why = write_error(e, tmp, need)
    if accel.reduce(torch.tensor([float(why is not None)], device=accel.device), "sum").item():  # on any process
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        prev = latest_checkpoint(run_dir)
        raise write_failed(dest, why or "a write failed on another process", need,
                           f"{prev.name} and the network are intact: free some space, then continue with "
                           f"--resume {run_dir}" if prev else "Nothing was saved yet: free some space, then start "
                           "the run again", run_dir)
    if main:
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
        old = sorted(ckdir.glob("ckpt-*[0-9]"), key=lambda p: int(p.name.split("-")[1]))
        for p in old[:-keep]:
            shutil.rmtree(p, ignore_errors=True)
        try:
            save_network(G_ema, run_dir / "network", extra={"kimg": cur_nimg / 1000, "final": final,
                                                          "run": run_dir.name, **network_info})
        except WRITE_ERRORS as e:  # each file is written atomically: the previous network stays whole
            why = write_error(e, run_dir / "network", fp32_bytes(G_ema))
        if why is not None:
            raise write_failed(run_dir / "network", why, fp32_bytes(G_ema), f"The network stays loadable and "
                               f"{dest.name} is complete: free some space, then continue with --resume {run_dir}",
                               run_dir)
    accel.wait_for_everyone()


# ----------------------------------------------------------------------------------------------------------------
# Fine-tuning: the weights a run starts from (--init)

@dataclass
class InitSource:
    network: dict  # NetworkConfig as a dict
    G: dict  # state dicts: the training generator,
    G_ema: dict  # its moving average,
    D: dict | None  # and the discriminator; None = D starts from random weights
    description: str  # where each came from, for the log


def load_init(path: str | os.PathLike) -> InitSource:
    """The weights a fine-tuning run starts from, resolved from any --init source:

    a checkpoint (runs/<run>/checkpoints/ckpt-N)  G, D (Accelerate's model.safetensors, model_1.safetensors), G_ema/
    a run folder (runs/<run>)                     its newest complete checkpoint, as above
    a network folder (config.json + model.safetensors) or .safetensors file
                                                  G_ema; G from G.safetensors and D from D.safetensors beside it
                                                  when present (converted official networks hold both), else G is
                                                  a copy of G_ema and D starts fresh
    an official .pkl (karras2019stylegan-*.pkl)    G, D and Gs (as G_ema), through official.py
    Only safetensors, JSON and the allow-listed contents of an official pickle are read: nothing in the source is
    executed."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"--init {path} does not exist: pass a network folder, a run folder or a checkpoint")
    if p.suffix == ".pkl":  # NVIDIA's file, read by official.py's restricted unpickler: G, D and Gs
        cfg, G, D, Gs = official.read_official(p)
        return InitSource(cfg.to_dict(), G, Gs, D, f"official network {p} (G, D and Gs)")
    if p.is_dir() and (p / "checkpoints").is_dir():
        ckpt = latest_checkpoint(p)
        if ckpt is None:
            raise UsageError(f"--init {path}: the run has no complete checkpoint; pass its network folder instead")
        p = ckpt
    if p.is_dir() and (p / "state.json").is_file():
        G_ema = load_network(p / "G_ema")
        missing = [f for f in (WEIGHTS_NAME, "model_1.safetensors") if not (p / f).is_file()]
        if missing:
            raise UsageError(f"--init {p}: incomplete checkpoint (no {', '.join(missing)})")
        return InitSource(G_ema.cfg.to_dict(), load_file(str(p / WEIGHTS_NAME)), G_ema.state_dict(),
                          load_file(str(p / "model_1.safetensors")), f"checkpoint {p} (G, G_ema and D)")
    G_ema = load_network(p)  # a network folder or a .safetensors file; NetworkError if it is neither
    folder = p if p.is_dir() else p.parent
    has_G, has_D = (folder / "G.safetensors").is_file(), (folder / "D.safetensors").is_file()
    G = load_file(str(folder / "G.safetensors")) if has_G else G_ema.state_dict()
    D = load_file(str(folder / "D.safetensors")) if has_D else None
    return InitSource(G_ema.cfg.to_dict(), G, G_ema.state_dict(), D,
                      f"network {p} (G_ema; G {'from G.safetensors' if has_G else '= a copy of G_ema'}; "
                      f"D {'from D.safetensors' if has_D else 'fresh'})")


def load_init_weights(init: InitSource, G: Generator, G_ema: Generator, D: Discriminator) -> None:
    """Copy the source's weights into freshly built networks of the same config (a clear error if they differ)."""
    for name, module, state in (("G", G, init.G), ("G_ema", G_ema, init.G_ema), ("D", D, init.D)):
        if state is None:
            continue
        try:
            module.load_state_dict(state)
        except RuntimeError:
            raise NetworkError(f"--init {init.description}: its {name} weights do not match its network "
                               "config") from None
