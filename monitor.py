"""What a training run shows while it trains: the progress bar, one status line per tick (losses, speed, memory,
the time left), the tracker's scalars and sample grids, the metrics at each checkpoint, and the seconds per thousand
images at each resolution.

A step's losses stay on the device: the tracker gets every step's scalars at the next tick, with one wait for the
device, so that an ordinary step never waits for it. Only the main process draws and writes; every process counts
its time, and every process takes its share of a metric's samples.

Trackers (--tracker): tensorboard (installed with the project), wandb and mlflow (optional packages: `bash
install.sh --trackers`), or none. wandb writes under the run folder and honours WANDB_MODE=offline; mlflow writes to
the run folder's mlruns/ unless MLFLOW_TRACKING_URI says otherwise.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

import metrics
from checkpoint import save_grid
from common import UsageError, native_bf16, to_uint8
from model import Generator, seed_to_z

GRID_SEEDS = range(32)  # the fixed latents of every sample grid
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "none": None}  # name: package
METRICS_FILE = "metrics.jsonl"


def check_tracker(tracker: str) -> None:
    """One line saying what to install where --tracker's package is missing (before any run folder exists)."""
    package = TRACKERS[tracker]
    if package and importlib.util.find_spec(package) is None:
        raise UsageError(f"--tracker {tracker} needs the {package} package: pip install {package} (or bash "
                         f"install.sh --trackers), or pass --tracker tensorboard")


def tracker_setup(tracker: str, run_dir: Path) -> str | None:
    """Accelerate's log_with for --tracker, its package checked and its files pointed into the run folder."""
    check_tracker(tracker)
    if tracker == "wandb":
        os.environ.setdefault("WANDB_DIR", str(run_dir))
    if tracker == "mlflow":
        if "MLFLOW_TRACKING_URI" not in os.environ:  # no server named: a file store in the run folder, which
            os.environ["MLFLOW_TRACKING_URI"] = (run_dir / "mlruns").resolve().as_uri()  # mlflow 3 asks to allow
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return None if tracker == "none" else tracker


def start_trackers(accel, tracker: str, run_dir: Path, config: dict) -> None:
    """The tracker's run: tensorboard's logs in run_dir/logs, the others named after the run, with its settings."""
    if tracker == "none" or not accel.is_main_process:
        return
    if tracker == "tensorboard":
        accel.init_trackers("logs")
        return
    plain = {k: v for k, v in config.items() if isinstance(v, (int, float, str, bool)) or v is None}
    kwargs = {"wandb": {"name": run_dir.name}, "mlflow": {"run_name": run_dir.name}}[tracker]
    accel.init_trackers("stylegan", config={k: ("" if v is None else v) for k, v in plain.items()},
                        init_kwargs={tracker: kwargs})


def process_memory_mb(device: torch.device) -> float:
    """The tick's peak GPU memory (reset by the caller), or the process's resident set on a CPU, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    for line in Path("/proc/self/status").read_text().splitlines() if Path("/proc/self/status").exists() else []:
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    h, rest = divmod(int(seconds), 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}"


class Monitor:
    def __init__(self, accel, run_dir: Path, G_ema: Generator, cfg, cur_nimg: int, stats: dict, log_fn=print):
        self.accel, self.run_dir, self.G_ema, self.stats, self.log = accel, run_dir, G_ema, stats, log_fn
        self.cfg, self.main, self.device = cfg, accel.is_main_process, accel.device
        self.bar = tqdm(total=cfg.kimg, initial=cur_nimg / 1000, unit="kimg", disable=not self.main,
                        dynamic_ncols=True,
                        bar_format="{l_bar}{bar}| {n:.1f}/{total:.0f} kimg [{elapsed}<{remaining}{postfix}]")
        self.grid_z = seed_to_z(GRID_SEEDS, G_ema.cfg.z_dim).to(accel.device)
        self.grid_c = G_ema.label_rows(None, len(GRID_SEEDS), GRID_SEEDS)  # a conditional G's: fixed per seed
        self.steps = []  # (phase, losses on the device, cur_nimg after the step, seconds) since the last tick
        self.res_time = {}  # resolution -> [seconds, images] since the last tick
        self.tick_nimg, self.tick_time = cur_nimg, time.time()
        self.metric_names = metrics.parse_metrics(cfg.metrics) if cfg.metrics else []
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def step(self, phase, losses: torch.Tensor, cur_nimg: int, seconds: float) -> None:
        t = self.res_time.setdefault(phase.res, [0.0, 0])
        t[0], t[1] = t[0] + seconds, t[1] + phase.batch
        if self.main:
            self.bar.update(min(phase.batch / 1000, self.bar.total - self.bar.n))  # the last batch may overshoot
            self.steps.append((phase, losses, cur_nimg, seconds))

    def tick(self, phase, cur_nimg: int) -> None:
        """The status line, the tracker's scalars of every step since the last tick and a grid of G_ema's samples.
        Call it after the device has finished the tick's steps, so that its time is theirs."""
        for r, (t, n) in self.res_time.items():
            s = self.stats["sec_per_kimg"].setdefault(str(r), [0.0, 0])
            s[0], s[1] = s[0] + t, s[1] + n
        self.res_time = {}
        if self.main and self.steps:
            sec_kimg = (time.time() - self.tick_time) / max((cur_nimg - self.tick_nimg) / 1000, 1e-9)
            left = sec_kimg * max(self.cfg.kimg - cur_nimg / 1000, 0)
            memory = process_memory_mb(self.device)
            losses = self.log_steps({"perf/memory_mib": memory})
            self.bar.write(tick_line(phase, losses, cur_nimg, sec_kimg, memory, left, self.device.type == "cuda"))
            self.save_samples(phase, cur_nimg)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.tick_nimg, self.tick_time = cur_nimg, time.time()

    def log_steps(self, extra: dict) -> list[float]:
        """Every pending step's scalars to the tracker (`extra` with the last); returns the last step's losses."""
        values = torch.stack([losses for _, losses, _, _ in self.steps]).cpu().tolist()
        for i, ((phase, _, nimg, dt), (d, pen, g)) in enumerate(zip(self.steps, values)):
            self.accel.log({"loss/D": d, "loss/G": g, "loss/penalty": pen, "progress/resolution": phase.res,
                            "progress/alpha": phase.alpha, "progress/kimg": nimg / 1000,
                            "perf/images_per_sec": phase.batch / max(dt, 1e-9), "lr": phase.lr,
                            **(extra if i == len(values) - 1 else {})}, step=nimg)
        d, pen, g = values[-1]
        self.bar.set_postfix_str(f"res {self.steps[-1][0].res} D {d:.3f} G {g:.3f} R1 {pen:.3f}", refresh=False)
        self.steps = []
        return values[-1]

    def save_samples(self, phase, cur_nimg: int) -> None:
        """G_ema's images of the fixed grid latents, at the final resolution, to samples/ and the tracker."""
        with torch.no_grad():
            img = self.G_ema(self.grid_z, res=phase.res, alpha=phase.alpha, noise_mode="const", labels=self.grid_c)
        img = F.interpolate(img, size=self.G_ema.cfg.resolution, mode="nearest")
        path = self.run_dir / "samples" / f"fakes-{cur_nimg:09d}.png"
        grid = save_grid(to_uint8(img), path, cols=8)
        if self.cfg.tracker == "tensorboard":
            self.accel.get_tracker("tensorboard").writer.add_image("fakes", grid, cur_nimg, dataformats="HWC")
        elif self.cfg.tracker == "wandb":
            self.accel.get_tracker("wandb").log_images({"fakes": [grid]}, step=cur_nimg)
        elif self.cfg.tracker == "mlflow":
            import mlflow  # an optional package: tracker_setup checked that it is there

            mlflow.log_image(grid, artifact_file=f"samples/{path.name}")

    def measure(self, cur_nimg: int) -> dict:
        """The --metrics of G_ema on every process (each takes its share of the samples): to metrics.jsonl, the
        tracker and one line each. A metric that fails is said and skipped; training goes on."""
        if not self.metric_names:
            return {}
        self.G_ema.meta = {"mirror": self.cfg.mirror, "preset": self.cfg.preset}  # FID's mirrored reals, PPL's crop
        args = argparse_like(seed=0, batch=32, cache_dir=self.cfg.cache_dir, overwrite=False)
        run = metrics.MetricRun(self.G_ema, None, args, self.device, self.cfg.data, self.cfg.pad,
                                metrics.ppl_crop_default(self.G_ema), self.main)
        results = {}
        for name in self.metric_names:
            t0, before = time.time(), len(run.rows)
            try:
                run.measure(name, self.cfg.metrics_num or metrics.default_num(name))
            except Exception as e:  # noqa: BLE001 - reported, and the run goes on
                if self.main:
                    self.bar.write(f"metric {name} failed at kimg {cur_nimg / 1000:.1f}: {type(e).__name__}: "
                                   f"{str(e).splitlines()[0] if str(e) else ''}")
                continue
            if self.main:
                new = run.rows[before:]
                for key, value, seconds, num in new:
                    results[key] = value
                    self.record(key, value, seconds, num, cur_nimg)
                self.bar.write(f"kimg {cur_nimg / 1000:8.1f}  " + "  ".join(f"{key} {value:.4g}" for key, value, _, _ in new)
                               + f"  ({time.time() - t0:.0f} s)")
        return results

    def record(self, key: str, value: float, seconds: float, num: int, cur_nimg: int) -> None:
        line = {"kimg": cur_nimg / 1000, "metric": key, "value": value, "num": num, "seconds": round(seconds, 2),
                "date": datetime.datetime.now().isoformat(timespec="seconds")}
        with open(self.run_dir / METRICS_FILE, "a") as f:
            f.write(json.dumps(line) + "\n")
        if math.isfinite(value):
            self.accel.log({f"metrics/{key}": value}, step=cur_nimg)

    def close(self) -> None:
        self.bar.close()

    def sec_per_kimg(self) -> dict[int, float]:
        """Seconds per thousand images at each resolution over the whole run (resumes included), said once."""
        table = {int(r): t / (n / 1000) for r, (t, n) in self.stats["sec_per_kimg"].items() if n}
        if self.main:
            where = f"{torch.get_num_threads()} CPU threads per process" if self.device.type == "cpu" \
                else self.device.type
            self.log(f"sec/kimg per resolution (training steps only; {where}): " +
                     ", ".join(f"{r}x{r}: {v:.2f}" for r, v in sorted(table.items())))
        return table


def argparse_like(**kwargs):
    """The few settings metrics.MetricRun reads from metrics.py's command line."""
    return type("Settings", (), kwargs)()


class FiniteWatch:
    """Whether every step's losses were finite, kept on the device so that a step never waits for it."""

    def __init__(self):
        self.bad_nimg = self.bad_losses = None  # the first step whose losses were not finite

    def note(self, losses: torch.Tensor, cur_nimg: int) -> None:
        if self.bad_nimg is None:
            self.bad_nimg = torch.full((), -1, dtype=torch.int64, device=losses.device)
            self.bad_losses = torch.zeros_like(losses)
        new = (self.bad_nimg < 0) & ~torch.isfinite(losses).all()
        self.bad_nimg = torch.where(new, cur_nimg, self.bad_nimg)
        self.bad_losses = torch.where(new, losses, self.bad_losses)

    def check(self) -> None:
        """Raise FloatingPointError if a step so far had a non-finite loss: the weights are then not worth keeping,
        and the last checkpoint written is the last good state. One wait for the device."""
        if self.bad_nimg is None or self.bad_nimg.item() < 0:
            return
        raise FloatingPointError(f"loss became {self.bad_losses.tolist()} at kimg {self.bad_nimg.item() / 1000:.1f}")


def precision_note(precision: str, device: torch.device) -> str:
    """The run's first line: the precision it trains in, and whether this hardware computes in it."""
    why = native_bf16(device.type == "cpu")
    if precision == "bf16":
        return f"precision: bf16 autocast ({why})" if why else ("precision: bf16 autocast, emulated on this "
                                                                 "hardware: expect it slower than fp32")
    return f"precision: {'fp32' if precision == 'no' else precision}"


def tick_line(phase, losses: list[float], cur_nimg: int, sec_kimg: float, memory_mb: float = float("nan"),
              left_s: float = float("nan"), gpu: bool = False) -> str:
    """The status line printed every tick_kimg: losses, speed, memory (the tick's GPU peak, or the process's RSS on
    a CPU) and the time left at this tick's speed."""
    return (f"kimg {cur_nimg / 1000:8.1f}  res {phase.res:4d}  alpha {phase.alpha:4.2f}  "
            f"batch {phase.batch:4d}  lossD {losses[0]:7.4f}  lossG {losses[2]:7.4f}  "
            f"pen {losses[1]:7.4f}  sec/kimg {sec_kimg:7.2f}  {'gpumem' if gpu else 'rss'} {memory_mb:6.0f} MiB  "
            f"left {duration(left_s)}")
