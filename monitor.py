"""What a training run shows while it trains: the progress bar, one status line per tick, the tracker's scalars and
sample grids, and the seconds per thousand images at each resolution.

A step's losses stay on the device: the tracker gets every step's scalars at the next tick, with one wait for the
device, so that an ordinary step never waits for it. Only the main process draws and writes; every process counts
its time.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from checkpoint import save_grid
from common import native_bf16, to_uint8
from model import Generator, seed_to_z

GRID_SEEDS = range(32)  # the fixed latents of every sample grid


class Monitor:
    def __init__(self, accel, run_dir: Path, G_ema: Generator, kimg: float, cur_nimg: int, stats: dict,
                 log_fn=print):
        self.accel, self.run_dir, self.G_ema, self.stats, self.log = accel, run_dir, G_ema, stats, log_fn
        self.main = accel.is_main_process
        self.bar = tqdm(total=kimg, initial=cur_nimg / 1000, unit="kimg", disable=not self.main, dynamic_ncols=True,
                        bar_format="{l_bar}{bar}| {n:.1f}/{total:.0f} kimg [{elapsed}<{remaining}{postfix}]")
        self.grid_z = seed_to_z(GRID_SEEDS, G_ema.cfg.z_dim).to(accel.device)
        self.steps = []  # (phase, losses on the device, cur_nimg after the step, seconds) since the last tick
        self.res_time = {}  # resolution -> [seconds, images] since the last tick
        self.tick_nimg, self.tick_time = cur_nimg, time.time()

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
            losses = self.log_steps()
            self.bar.write(tick_line(phase, losses, cur_nimg, sec_kimg))
            self.save_samples(phase, cur_nimg)
        self.tick_nimg, self.tick_time = cur_nimg, time.time()

    def log_steps(self) -> list[float]:
        """Every pending step's scalars to the tracker; returns the last step's losses (D, penalty, G)."""
        values = torch.stack([losses for _, losses, _, _ in self.steps]).cpu().tolist()
        for (phase, _, nimg, dt), (d, pen, g) in zip(self.steps, values):
            self.accel.log({"loss/D": d, "loss/G": g, "loss/penalty": pen, "progress/resolution": phase.res,
                            "progress/alpha": phase.alpha, "progress/kimg": nimg / 1000,
                            "perf/images_per_sec": phase.batch / max(dt, 1e-9), "lr": phase.lr}, step=nimg)
        d, pen, g = values[-1]
        self.bar.set_postfix_str(f"res {self.steps[-1][0].res} D {d:.3f} G {g:.3f} R1 {pen:.3f}", refresh=False)
        self.steps = []
        return values[-1]

    def save_samples(self, phase, cur_nimg: int) -> None:
        """G_ema's images of the fixed grid latents, at the final resolution, to samples/ and the tracker."""
        with torch.no_grad():
            img = self.G_ema(self.grid_z, res=phase.res, alpha=phase.alpha, noise_mode="const")
        img = F.interpolate(img, size=self.G_ema.cfg.resolution, mode="nearest")
        grid = save_grid(to_uint8(img), self.run_dir / "samples" / f"fakes-{cur_nimg:09d}.png", cols=8)
        self.accel.get_tracker("tensorboard").writer.add_image("fakes", grid, cur_nimg, dataformats="HWC")

    def close(self) -> None:
        self.bar.close()

    def sec_per_kimg(self) -> dict[int, float]:
        """Seconds per thousand images at each resolution over the whole run (resumes included), said once."""
        table = {int(r): t / (n / 1000) for r, (t, n) in self.stats["sec_per_kimg"].items() if n}
        if self.main:
            device = self.accel.device
            where = f"{torch.get_num_threads()} CPU threads per process" if device.type == "cpu" else device.type
            self.log(f"sec/kimg per resolution (training steps only; {where}): " +
                     ", ".join(f"{r}x{r}: {v:.2f}" for r, v in sorted(table.items())))
        return table


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


def tick_line(phase, losses: list[float], cur_nimg: int, sec_kimg: float) -> str:
    """The status line printed every tick_kimg."""
    return (f"kimg {cur_nimg / 1000:8.1f}  res {phase.res:4d}  alpha {phase.alpha:4.2f}  "
            f"batch {phase.batch:4d}  lossD {losses[0]:7.4f}  lossG {losses[2]:7.4f}  "
            f"pen {losses[1]:7.4f}  sec/kimg {sec_kimg:7.2f}")
