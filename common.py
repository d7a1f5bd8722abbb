"""The bottom layer, shared by every file: the project's errors, command-line helpers in its one-line error style,
seed ranges, devices, atomic writes, finding the latest network, images. It imports none of the project's modules."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

WEIGHTS_NAME, CONFIG_NAME = "model.safetensors", "config.json"  # a saved network: a Hub-style folder of these two
RUNS_DIR = "runs"  # train.py's default --outdir
# The network that ships with the code (trained on the synthetic faces, see its README.md): what generate.py,
# demo.py, project.py and metrics.py use when no run of your own exists yet.
REFERENCE_NETWORK = Path(__file__).resolve().parent / "networks" / "synthetic32"


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2, no traceback (see run_cli)."""


class NetworkError(UsageError):
    """A network path that does not exist or is not a valid network: scripts print its message on one line."""


class DataError(UsageError):
    """A data source that cannot be used (missing, empty, unreadable): one line naming it and the fix."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse in the project's error style: a usage mistake is one line that names the flag, the problem and
    where the fix is, with exit code 2 (through run_cli), instead of argparse's usage block. `epilog` (typically
    the examples) is printed as written."""

    def __init__(self, prog: str, description: str | None = None, epilog: str | None = None, **kwargs):
        super().__init__(prog=prog, description=description, epilog=epilog,
                         formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)  # kwargs: sub-commands

    def error(self, message):
        m = re.fullmatch(r"argument ([^:]+): (.*)", message, re.S)
        if m:  # "argument --batch: must be at least 1, not 0" -> "--batch must be at least 1, not 0"
            flag, detail = m.group(1).split("/")[0], m.group(2)
            message = f"{flag} {detail}" if detail.startswith("must") else f"{flag}: {detail}"
        raise UsageError(f"{message} (see python {self.prog} --help)")


def _number(text: str, kind):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {'a whole number' if kind is int else 'a number'}, not "
                                         f"{text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return value


def int_at_least(low: int, high: int | None = None):
    """argparse type: a whole number >= low (and <= high if given)."""
    def parse(text: str) -> int:
        value = _number(text, int)
        if value < low or (high is not None and value > high):
            span = f"at least {low}" if high is None else f"from {low} to {high}"
            raise argparse.ArgumentTypeError(f"must be {span}, not {value}")
        return value
    return parse


def seed_type(text: str) -> int:
    """argparse type: a random seed, 0 <= seed < 2**32 (numpy's RandomState range)."""
    return int_at_least(0, 2**32 - 1)(text)


def float_in(low: float = -math.inf, high: float = math.inf, low_open: bool = False):
    """argparse type: a finite number in [low, high] (or (low, high] with low_open); nan and inf are refused."""
    def parse(text: str) -> float:
        value = _number(text, float)
        if value < low or value > high or (low_open and value == low):
            lo = f"above {low:g}" if low_open else f"at least {low:g}"
            span = lo if high == math.inf else f"{'more than' if low_open else 'from'} {low:g} " \
                f"{'and at most' if low_open else 'to'} {high:g}"
            raise argparse.ArgumentTypeError(f"must be {span}, not {value:g}")
        return value
    return parse


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    return float_in(0.0, low_open=True)(text)


def fail(message: str, code: int = 2):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def run_cli(main, argv=None, user_errors: tuple[type[Exception], ...] = ()):
    """Run a script's main(argv), turning user errors (UsageError, NetworkError and `user_errors`) into a one-line
    message and exit code 2."""
    try:
        return main(argv)
    except (UsageError, *user_errors) as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail("interrupted", code=130)


def parse_seeds(text: str) -> list[int]:
    """'0-99' or '1,5,10-12' -> list of ints. Seeds are numpy RandomState seeds: 0 <= seed < 2**32."""
    seeds = []
    for part in str(text).split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise UsageError(f"invalid seed {part!r} in {text!r}: use numbers and ranges like 0-99 or 1,5,10-12")
        lo, hi = int(m.group(1)), int(m.group(2) if m.group(2) is not None else m.group(1))
        if hi < lo:
            raise UsageError(f"seed range {part!r} is reversed: write it low-high, e.g. {hi}-{lo}")
        if hi >= 2**32:
            raise UsageError(f"seed {hi} is too large: seeds must be below 2**32")
        seeds.extend(range(lo, hi + 1))
    return seeds


def network_name(path: str | Path) -> str:
    """A short name for a network, usable in file names: runs/00003-ffhq/network (or its model.safetensors) ->
    '00003-ffhq'; a bare weights or .pkl file -> its stem; anything else -> its own name."""
    p = Path(path)
    if p.suffix in (".safetensors", ".pkl"):
        if p.name != WEIGHTS_NAME:
            return slug(p.stem)
        p = p.parent
    if p.name == "network" and p.parent.name:
        p = p.parent
    return slug(p.name) or "network"


def slug(text: str) -> str:
    """A name or a seed list as a file-name part: '1, 5,10-12' -> '1_5_10-12'."""
    return re.sub(r"[^0-9a-zA-Z.\-]+", "_", str(text)).strip("_")


def find_latest_network(runs_dir: str | Path = RUNS_DIR) -> Path | None:
    """The network folder most recently written by train.py under runs_dir, or None."""
    found = sorted(Path(runs_dir).glob(f"*/network/{WEIGHTS_NAME}"), key=lambda p: p.stat().st_mtime)
    return found[-1].parent if found else None


def reference_network() -> Path | None:
    """The shipped reference network's folder, or None where this copy of the code lacks it."""
    return REFERENCE_NETWORK if (REFERENCE_NETWORK / WEIGHTS_NAME).is_file() else None


def resolve_network(arg: str | None, runs_dir: str | Path = RUNS_DIR, quiet: bool = False) -> str:
    """--network as given; else the latest trained network under runs_dir; else the shipped reference network
    (saying so on stderr, unless quiet); a clear error if there is none of these."""
    if arg:
        return arg
    latest = find_latest_network(runs_dir) or reference_network()
    if latest is None:
        raise NetworkError(f"no trained network found under {runs_dir}/: train one with `accelerate launch train.py` "
                           "or pass --network PATH")
    if latest == reference_network() and not quiet:
        print(f"no run under {runs_dir}/ yet: using the reference network that ships with the code ({latest})",
              file=sys.stderr)
    return str(latest)


def mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def pick_device(name: str = "auto") -> torch.device:
    """--device of every script: auto (a GPU if there is one), cpu, cuda, cuda:N or mps; UsageError for a name
    that is not a device or a device that is not here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise UsageError(f"unknown --device {name!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"--device {name}: not supported here; use auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available here; use --device auto or cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s); use cuda:0 to "
                         f"cuda:{torch.cuda.device_count() - 1}")
    if device.type == "mps" and not mps_available():
        raise UsageError(f"--device {name}: MPS is not available here; use --device auto or cpu")
    return device


def native_bf16(on_cpu: bool, cpuinfo: str = "/proc/cpuinfo") -> str:
    """Why bf16 is fast on this machine ('' if it is not): a CPU with bf16 arithmetic (AVX512-BF16 or AMX), or a GPU
    that reports bf16 support. Elsewhere bf16 is emulated: slower than fp32."""
    if not on_cpu:
        return "this GPU has bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else ""
    found = [f.upper().replace("_", "-") for f in ("avx512_bf16", "amx_bf16") if f in cpu_flags(cpuinfo)]
    return f"this CPU has {' and '.join(found)}" if found else ""

def cpu_threads(requested: int = 0) -> int:
    """Threads for CPU training. `accelerate launch` without a config exports OMP_NUM_THREADS=1, which would leave
    every core but one idle in a single-process run (1.7x the time of the default run); unless --threads is
    given, the usable cores are shared out among this machine's processes instead."""
    if requested < 0:
        raise UsageError(f"--threads must be positive (or 0 for automatic), not {requested}")
    if requested:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, cores // max(local, 1))


def atomic_write(path: Path, write) -> None:
    """write(tmp) into a temporary file beside `path`, then rename it into place: a reader never sees a half-written
    file, and a failed write leaves the old one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # the permissions of an ordinary new file, not mkstemp's owner-only 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> list[str]:
    """This CPU's feature flags, read from /proc/cpuinfo (Linux; empty elsewhere)."""
    try:
        return next((line.split(":", 1)[1].split() for line in Path(cpuinfo).read_text().splitlines()
                     if line.startswith("flags")), [])
    except OSError:
        return []


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """Generator output (N, C, H, W) in [-1, 1] -> uint8 (N, H, W, C), as the official code converts it."""
    img = (img.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return img.permute(0, 2, 3, 1).cpu().numpy()
