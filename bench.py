"""Throughput, memory and FLOP-rate benchmarks for the StyleGAN networks, measured on this machine.

    python bench.py                                 # every preset on the best device, tables + docs/benchmarks.md
    python bench.py --preset cpu --device cpu       # the default 32x32 network only
    python bench.py --preset ffhq1024 --device cuda --out docs/benchmarks.md
    python bench.py --quick                         # fewer sizes and repetitions (a smoke run)
    python bench.py --preset ffhq256 --device cuda --sections training --resolution 256   # one table
    python bench.py --sections data                 # images/s of data loading: synthetic, folders, the cache
    python bench.py --train-memory ~/a ~/b          # peak memory per process and time to the first step
    python bench.py --preset ffhq256 --sections memory --resolution 256   # a step's peak with --batch-gpu 4 and without

What it measures, per preset and device:
  * peak: a large matmul and a large convolution in each precision, and memory bandwidth (a large tensor copy),
    all in the same run, so every achieved FLOP rate is divided by a peak measured beside it, never a datasheet;
  * generator inference in images/s at 64, 256 and 1024 (or the preset's own resolution), at batch 1 and at the
    best batch, in fp32, bf16 and fp16 (autocast), with and without channels_last and torch.compile;
  * train.py's own training step (train.TrainStep, on an Accelerator in the measured precision; D: logistic loss +
    R1 every step, G: non-saturating loss with style mixing, w_avg and EMA updates), at each resolution of the
    preset's progressive schedule;
  * D's R1 step with ops.py's convolutions against PyTorch's, side by side;
  * the peak memory of one training step with the preset's batch, whole and with train.py --batch-gpu 4, each in a
    fresh process;
  * PPL and FID sample throughput through metrics.py's own functions;
  * data loading: rendering synthetic faces, DataLoaders, a folder decoded into the cache, cache reads;
  * peak memory (CPU RSS high-water mark, GPU max allocated) and FLOPs per image (torch.utils.flop_counter).

FLOPs count convolutions and matmuls only (2 per multiply-add), as torch.utils.flop_counter does; elementwise work
(instance norm, noise, bias, leaky ReLU, AdaIN) costs time but no counted FLOPs, which is why it lowers the ratio.
Every result is appended as a dated section to docs/benchmarks.md with the machine, versions and command.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import itertools
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import unittest.mock
from pathlib import Path

import accelerate
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import flop_registry

import data
import metrics
import ops
import train
from common import ArgumentParser, UsageError, int_at_least, pick_device, run_cli
from data import IMAGE_EXTENSIONS, ImageDataset, cached, make_dataset
from faces import render_faces
from model import PRESETS, Discriminator, EqualConv2d, Generator, NetworkConfig
from train import TRAIN_PRESETS, TrainConfig, schedule

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
V100_SEC_PER_KIMG_1024 = 142  # official: 41 days 4 h for 25 M images at 1024^2 on one V100 (NVlabs/stylegan README)
MEMORY_LEGEND = {
    "cpu": "the process's resident-set high-water mark (VmHWM, reset before each measurement; it includes about "
           "0.7 GB of Python, torch and the other loaded libraries)",
    "cuda": "torch.cuda.max_memory_allocated (reset before each measurement)",
}
INFERENCE_RES = (64, 256, 1024)  # smaller networks are measured at their own resolution
R1_IMPL_AT = {"cpu": {"ffhq1024": ([32, 64], 16)},  # ([resolutions], batch) of the R1 side-by-side table
              "cuda": {"ffhq256": ([64, 256], 32), "ffhq1024": ([1024], 8)}}


# ----------------------------------------------------------------------------------------------------------------
# Timing, memory and counting helpers


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, min_time: float = 1.0, min_reps: int = 2, max_reps: int = 50,
          warmup: int = 1, max_call: float = 20.0, best: bool = False) -> tuple[float, int]:
    """Median (best=True: fastest) seconds per call of fn() after `warmup` calls, repeating until min_time and
    min_reps are reached. A call slower than max_call seconds is timed once (the warmup call is then the measurement)."""
    times = []
    for _ in range(warmup):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    if times and times[-1] > max_call:
        return times[-1], 1
    times, total = [], 0.0
    while len(times) < max_reps and (len(times) < min_reps or total < min_time):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
        total += times[-1]
    times.sort()
    return (times[0] if best else times[len(times) // 2]), len(times)


def reset_peak_memory(device: torch.device) -> None:
    """Start a new high-water mark: VmHWM through /proc/self/clear_refs on Linux, the CUDA allocator's peak on GPUs."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_memory_mb(device: torch.device) -> float:
    """CPU: peak resident set size since the last reset (VmHWM; ru_maxrss where /proc is missing), in MiB.
    GPU: torch.cuda.max_memory_allocated, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    with contextlib.suppress(OSError, IndexError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def count_work(fn) -> tuple[int, int]:
    """(FLOPs, bytes) of one call of fn, forward and any backward it runs, from the aten ops it dispatches.

    FLOPs: convolutions and matmuls, by torch.utils.flop_counter's formulas (2 per multiply-add). We use its
    formula table in our own dispatch mode because FlopCounterMode's module tracker fails on a forward under
    no_grad whose parameters require grad (the generator call inside the D step).
    Bytes: what every non-view op reads and writes, as if no op reused another's data from a cache: the memory
    traffic of an unfused run, for the arithmetic-intensity estimate."""
    class Counter(TorchDispatchMode):
        flops, nbytes = 0, 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            formula = flop_registry.get(func._overloadpacket)
            if formula is not None:
                Counter.flops += int(formula(*args, **kwargs, out_val=out))
            if not func.is_view:
                for t in tree_leaves((args, kwargs, out)):
                    if isinstance(t, torch.Tensor):
                        n = min(t.numel(), t.untyped_storage().nbytes() // max(t.element_size(), 1))
                        Counter.nbytes += n * t.element_size()
            return out

    with Counter():
        fn()
    return Counter.flops, Counter.nbytes


def count_flops(fn) -> int:
    return count_work(fn)[0]


def matmul_share(fn) -> float:
    """Fraction of fn's CPU operator time spent in convolutions and matmuls (torch.profiler, self time)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    heavy = ("conv", "mm", "matmul", "linear", "addmm", "bmm", "mkldnn")
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    mm = sum(e.self_cpu_time_total for e in prof.key_averages() if any(h in e.key for h in heavy))
    return mm / max(total, 1e-9)


def autocast(device: torch.device, dtype: torch.dtype):
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


# ----------------------------------------------------------------------------------------------------------------
# Peaks measured in the same run


def peak_flops(device: torch.device, dtype: torch.dtype, size: int | None = None, min_time: float = 1.0) -> dict:
    """FLOP/s of large square matmuls and large 3x3 convolutions (NCHW and channels_last) in `dtype`: the best
    repetition of the best shape, so that the peak is what the device can do, not what one shape happened to get."""
    cpu = device.type == "cpu"
    slow = cpu and dtype != torch.float32  # CPUs without bf16/fp16 units emulate them (about 100x slower, measured)
    if size:  # tests
        sizes, convs = [size], [(2, 64, 16)]
    elif slow:
        sizes, convs = [512], [(2, 128, 16)]
    elif cpu:
        sizes, convs = [1024, 2048, 4096], [(8, 512, 32), (32, 128, 32), (16, 256, 16)]
    else:
        sizes, convs = [4096, 8192], [(64, 512, 64), (256, 128, 64), (128, 256, 32)]
    best = lambda fn: min(timed(fn, device, min_time=min_time / 3, min_reps=3, warmup=1, best=True)[0], 1e30)
    mm = {}
    for n in sizes:
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        mm[n] = 2 * n**3 / best(lambda: a @ b)
    conv = {}
    for batch, c, hw in convs:
        x = torch.randn(batch, c, hw, hw, device=device, dtype=dtype)
        w = torch.randn(c, c, 3, 3, device=device, dtype=dtype)
        for layout in (torch.contiguous_format, torch.channels_last):
            xl, wl = x.contiguous(memory_format=layout), w.contiguous(memory_format=layout)
            key = f"{batch}x{c}x{hw}x{hw}{' channels_last' if layout == torch.channels_last else ''}"
            conv[key] = 2 * batch * c * c * 9 * hw * hw / best(lambda: F.conv2d(xl, wl, padding=1))
    n_best, c_best = max(mm, key=mm.get), max(conv, key=conv.get)
    return {"matmul": mm[n_best], "conv": conv[c_best], "peak": max(mm[n_best], conv[c_best]),
            "matmul_size": n_best, "conv_shape": f"{c_best}, 3x3", "all": {**mm, **conv}}


def memory_bandwidth(device: torch.device, mbytes: int = 256, min_time: float = 1.0) -> float:
    """Bytes/s of a large fp32 tensor copy (each byte read once and written once)."""
    n = mbytes * 2**20 // 4
    src, dst = torch.randn(n, device=device), torch.empty(n, device=device)
    t, _ = timed(lambda: dst.copy_(src), device, min_time=min_time)
    return 2 * n * 4 / t


# ----------------------------------------------------------------------------------------------------------------
# Generator inference


def make_generator(cfg: NetworkConfig, device: torch.device, channels_last: bool = False) -> Generator:
    torch.manual_seed(0)
    G = Generator(cfg).eval().requires_grad_(False).to(device)
    return G.to(memory_format=torch.channels_last) if channels_last else G


def inference_fn(G, res: int, batch: int, device: torch.device, dtype: torch.dtype, compiled=None):
    z = torch.randn(batch, G.cfg.z_dim, device=device)
    net = G if compiled is None else compiled

    def call():
        with torch.no_grad(), autocast(device, dtype):
            return net(z, res=res)

    return call


def g_inference(cfg: NetworkConfig, res: int, batch: int, device: torch.device, dtype: torch.dtype = torch.float32,
                channels_last: bool = False, compile: bool = False, min_time: float = 1.0, G=None) -> dict:
    """Images/s of G(z) at `res` (random noise, no truncation), with its peak memory; compile time if compiled."""
    G = G or make_generator(cfg, device, channels_last)
    compiled, compile_s = None, 0.0
    if compile:
        compiled = torch.compile(G)
        t0 = time.perf_counter()
        inference_fn(G, res, batch, device, dtype, compiled)()
        sync(device)
        compile_s = time.perf_counter() - t0
    fn = inference_fn(G, res, batch, device, dtype, compiled)
    reset_peak_memory(device)
    t, reps = timed(fn, device, min_time=min_time, warmup=2 if compile else 1)
    return {"img_s": batch / t, "sec": t, "reps": reps, "mem_mb": peak_memory_mb(device), "compile_s": compile_s}


# ----------------------------------------------------------------------------------------------------------------
# Training step (train.py's own TrainStep, built as train() builds it)

PRECISIONS = {torch.float32: "no", torch.bfloat16: "bf16", torch.float16: "fp16"}  # Accelerate's mixed_precision


@contextlib.contextmanager
def accelerator(device: torch.device, dtype: torch.dtype = torch.float32):
    """An Accelerator on `device` with `dtype` as its mixed precision, as `train.py --mixed-precision` makes it.
    Accelerate keeps one state per process and refuses a second precision, so the state is reset before and after."""
    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        yield Accelerator(cpu=device.type == "cpu", mixed_precision=PRECISIONS[dtype])
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


def bench_config(cfg: NetworkConfig, train_preset: str = "cpu", **overrides) -> TrainConfig:
    """The TrainConfig of a training preset, on the network `cfg`, with `overrides`."""
    return train.preset_config(train_preset, network=cfg.to_dict(), **overrides)


@contextlib.contextmanager
def training_step(cfg: NetworkConfig, res: int, batch: int, device: torch.device, dtype: torch.dtype = torch.float32,
                  gamma: float = 10.0, r1: bool = True, channels_last: bool = False, train_preset: str = "cpu",
                  real: torch.Tensor | None = None, compile: bool = False, impl: str = "custom",
                  batch_gpu: int | None = None):
    """train.py's TrainStep at `res` (fade-in alpha 1) with the preset's settings, as a function of no arguments that
    runs one iteration per call. Real images are random uint8 tensors (or `real`): data loading is not measured.
    r1=False trains with gamma 0, so no R1 at all (the "R1 none" rows). compile: train.py --compile. impl: the
    layers' convolutions ("custom", the default, or "native": see ops.py)."""
    if real is None:  # drawn from its own generator: the step's random numbers are those train() would draw
        gen = torch.Generator(device).manual_seed(0)
        real = torch.randint(0, 256, (batch, cfg.img_channels, res, res), device=device, generator=gen,
                             dtype=torch.uint8)
    tcfg = bench_config(cfg, train_preset, gamma=gamma if r1 else 0.0, r1_interval=1, channels_last=channels_last,
                        mixed_precision=PRECISIONS[dtype], compile=compile, batch_gpu=batch_gpu)
    with accelerator(device, dtype) as accel:
        G, D, G_ema, opt_G, opt_D = train.make_networks(tcfg, accel)
        step = train.TrainStep(tcfg, accel, G, D, G_ema, opt_G, opt_D)
        real = real.to(accel.device)
        phase = train.Phase(res, 1.0, batch, tcfg.lr_at(res), None)
        steps = itertools.count()

        def call():
            i = next(steps)
            with ops.implementation(impl):
                return step(real, phase, i, i * batch)

        call.train_step = step  # for the tests
        yield call


def train_step_throughput(cfg: NetworkConfig, res: int, batch: int, device: torch.device,
                          dtype: torch.dtype = torch.float32, iters: int = 3, gamma: float = 10.0, r1: bool = True,
                          channels_last: bool = False, count: bool = True, min_time: float = 1.0,
                          train_preset: str = "cpu", compile: bool = False, impl: str = "custom") -> dict:
    """Training images/s and sec/kimg at `res` with `batch`, FLOPs per image of the step (counted on the warmup step;
    not under compile, whose graphs the counter cannot see), and peak memory. `iters` timed steps after one warmup
    step (compile: four, so that the graphs with and without style mixing are built first; their time is
    compile_s)."""
    with training_step(cfg, res, batch, device, dtype, gamma, r1, channels_last, train_preset, compile=compile,
                       impl=impl) as step:
        count = count and not compile
        t0 = time.perf_counter()
        flops = count_flops(step) if count else 0  # the warmup step (also creates the Adam states)
        for _ in range(0 if count else 4 if compile else 1):
            step()
        sync(device)
        compile_s = time.perf_counter() - t0
        reset_peak_memory(device)
        t, reps = timed(step, device, min_time=min_time, min_reps=iters, max_reps=iters, warmup=0)
    return {"img_s": batch / t, "sec_per_kimg": 1000 * t / batch, "flops_per_img": flops / batch, "reps": reps,
            "mem_mb": peak_memory_mb(device), "compile_s": compile_s if compile else 0.0}


def step_memory(preset: str, res: int, batch_gpu: int | None, device: torch.device, out: str) -> None:
    """One fp32 training step of `preset` at `res` with the preset's global batch (all of it in this process),
    held whole or in slices of `batch_gpu` (train.py --batch-gpu); writes to `out` as JSON the peak memory of the
    step (from a reset after the networks, Adam states included, exist), the process's peak and the step's time."""
    cfg = PRESETS[preset]
    batch = train.preset_config(preset).batch_at(res)
    with training_step(cfg, res, batch, device, train_preset=preset, batch_gpu=batch_gpu) as step:
        sync(device)
        before = current_memory_mb(device)
        reset_peak_memory(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        seconds = time.perf_counter() - t0
    Path(out).write_text(json.dumps({"batch": batch, "before_mb": before, "step_peak_mb": peak_memory_mb(device),
                                     "process_peak_mb": process_peak_mb(device), "sec_per_kimg": 1000 * seconds / batch}))


def current_memory_mb(device: torch.device) -> float:
    """What the process holds now: the CUDA allocator's allocated bytes, or the resident set (VmRSS) on a CPU."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    return proc_kib("/proc/self/status", ("VmRSS",)).get("VmRSS", 0) / 2**20


def process_peak_mb(device: torch.device) -> float:
    """The process's peak since it started: the CUDA allocator's reserved peak, or ru_maxrss on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_reserved(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def d_r1_step(cfg: NetworkConfig, res: int, batch: int, device: torch.device, dtype: torch.dtype = torch.float32,
              gamma: float = 10.0, channels_last: bool = False, impl: str = "custom"):
    """D forward on reals, R1 and the backward, as a function of no arguments: the part of a D step that R1 makes
    slow, on a freshly initialised D at `res` (train.py's R1; no optimizer step), with the layers' convolutions
    `impl` (see ops.py)."""
    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    D = Discriminator(cfg).to(device, memory_format=layout)
    real = (torch.rand(batch, cfg.img_channels, res, res, device=device) * 2 - 1).contiguous(memory_format=layout)

    def call():
        x = real.detach().requires_grad_(True)
        with ops.implementation(impl):
            with autocast(device, dtype):
                logits = D(x, res=res).float()
                loss = F.softplus(-logits).mean() + train.r1_penalty(logits, x) * (gamma / 2)
            D.zero_grad(set_to_none=True)
            loss.backward()

    return call


def conv_census(cfg: NetworkConfig, res: int, batch: int, impl: str = "custom") -> dict:
    """Which convolutions one D step with R1 runs, traced at full size on the meta device (no arithmetic): for R1's
    first pass and for the final backward, the number of convolutions, of weight gradients, of those whose kernel
    is larger than any layer's own (PyTorch's double backward makes the gradient map itself a kernel), and of
    single-channel ones (its loop over the groups of a grouped convolution, one output channel each)."""
    conv, back = torch.ops.aten.convolution.default, torch.ops.aten.convolution_backward.default

    class Trace(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.calls = []  # (input shape, kernel shape, computes a weight gradient)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is conv:
                self.calls.append((args[0].shape, args[1].shape, False))
            elif func is back:
                self.calls.append((args[1].shape, args[2].shape, bool(args[10][1])))
            return func(*args, **(kwargs or {}))

    with ops.implementation(impl), torch.device("meta"):
        D = Discriminator(cfg)
        real = torch.empty(batch, cfg.img_channels, res, res).requires_grad_(True)
        fake = torch.empty(batch, cfg.img_channels, res, res)
        real_logits, fake_logits = D(real, res=res), D(fake, res=res)
        with Trace() as first:
            pen = train.r1_penalty(real_logits, real)
        with Trace() as final:
            (train.d_logistic_loss(real_logits, fake_logits) + pen).backward()
    largest = max(m.weight.shape[-1] for m in D.modules() if isinstance(m, EqualConv2d)) + 1  # + 1: fused 4x4
    out = {}
    for name, trace in (("first pass", first), ("final backward", final)):
        out[name] = {"convolutions": len(trace.calls),
                     "weight gradients": sum(w for _, _, w in trace.calls),
                     "oversized kernels": sum(max(k[2:]) > largest for _, k, _ in trace.calls),
                     "single-channel": sum(k[0] == 1 for _, k, _ in trace.calls)}  # D has no 1-channel layer
    return out


def alternating(fns: dict, device: torch.device, rounds: int = 3, min_time: float = 1.0) -> dict:
    """{name: best seconds per call} of several functions measured in turn, `rounds` times each, so that a change in
    the machine's load falls on all of them alike."""
    best = {}
    for _ in range(rounds):
        for name, fn in fns.items():
            t, _ = timed(fn, device, min_time=min_time / rounds, min_reps=2, best=True)
            best[name] = min(best.get(name, float("inf")), t)
    return best


def schedule_kimg(train_preset: str) -> dict[int, float]:
    """Thousands of images the preset's progressive schedule spends at each resolution (fades count to the new one)."""
    cfg = train.preset_config(train_preset)
    step = 1000 if cfg.kimg >= 1000 else 100
    out: dict[int, float] = {}
    for nimg in range(0, int(cfg.kimg * 1000), step):
        r = schedule(nimg, cfg).res
        out[r] = out.get(r, 0) + step / 1000
    return out


# ----------------------------------------------------------------------------------------------------------------
# Data loading (data.py, faces.py) and the memory of whole training runs


def images_per_second(fn, seconds: float, clock=time.perf_counter) -> float:
    """Images/s of repeated fn() -> number of images, for about `seconds` of `clock`."""
    n, t0 = 0, clock()
    while clock() - t0 < seconds or n == 0:
        n += fn()
    return n / (clock() - t0)


def loader_rate(dataset, seconds: float, workers: int = 2, batch: int = 32) -> float:
    """Images/s out of a shuffled DataLoader over `dataset` with `workers` worker processes (start-up included)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers)
    n, t0 = 0, time.perf_counter()
    while True:
        for img, _ in loader:
            n += len(img)
            if time.perf_counter() - t0 > seconds:
                return n / (time.perf_counter() - t0)


def write_photo_folder(folder: Path, count: int) -> Path:
    """`count` 512x512 files, half PNG and half JPEG, like a folder of photos: synthetic faces enlarged."""
    images, _ = render_faces(np.arange(count), 256)
    for k, im in enumerate(images):
        big = Image.fromarray(im).resize((512, 512), Image.BICUBIC)
        big.save(folder / (f"{k:05d}." + ("png" if k % 2 else "jpg")), quality=95)
    return folder


def cache_read_rate(cache: Path, res: int, seconds: float, batch: int = 32) -> float:
    """Random batches read from a warm cache in one single-threaded process (what one DataLoader worker does), per
    CPU second of this process (user + system, page faults included): what one core delivers, whatever else the
    machine runs. The cache holds up to 256 MiB of faces rendered at up to 256 px, repeated up to `res`."""
    count = max(64, min(4096, 2**28 // (res * res * 3)))
    name = f"bench-{res}"

    def fill(out):
        small, _ = render_faces(np.arange(min(count, 256)), min(res, 256))
        f = res // small.shape[1]
        for i in range(count):
            out[i] = small[i % len(small)].repeat(f, 0).repeat(f, 1)
        return count, {"labels": np.zeros((count, 0), np.float32)}

    cached(cache, name, res, count, "a benchmark", fill)
    ds = ImageDataset(name, res, count, images_path=str(cache / f"{name}.u8"))
    rng = np.random.default_rng(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return images_per_second(lambda: len(ds.__getitems__(rng.integers(0, count, batch).tolist())), seconds,
                                 clock=time.process_time)
    finally:
        torch.set_num_threads(threads)


def probe_training(out: str, train_args: list[str]) -> None:
    """Run train.main(train_args) in this process while a thread samples its memory, and write what it saw to
    out.<rank> as JSON: VmHWM, the peaks of RssAnon, RssFile and the PSS of the process and its DataLoader workers
    (MiB), the seconds to make_dataset and its length, to the first batch and to the first optimizer step."""
    t0, peak, timing = time.time(), {"anon": 0, "file": 0, "tree_pss": 0}, {}

    def sample():
        while True:
            status = proc_kib("/proc/self/status", ("RssAnon", "RssFile"))
            peak["anon"], peak["file"] = max(peak["anon"], status.get("RssAnon", 0)), max(peak["file"],
                                                                                          status.get("RssFile", 0))
            pids = [os.getpid()] + [int(p) for t in os.listdir("/proc/self/task")
                                    for p in read_or_empty(f"/proc/self/task/{t}/children").split()]
            peak["tree_pss"] = max(peak["tree_pss"], sum(proc_kib(f"/proc/{p}/smaps_rollup", ("Pss",)).get("Pss", 0)
                                                         for p in pids))
            time.sleep(0.2)

    def timed_dataset(*a, **k):
        timing["data_start_s"] = time.time() - t0
        dataset = make_dataset(*a, **k)
        timing["data_s"] = time.time() - t0 - timing["data_start_s"]
        return dataset

    def first_step(*_):
        timing.setdefault("first_step_s", time.time() - t0)

    next_batch = torch.utils.data.dataloader._BaseDataLoaderIter.__next__

    def timed_next(loader_iter):
        timing.setdefault("first_batch_s", time.time() - t0)
        return next_batch(loader_iter)

    threading.Thread(target=sample, daemon=True).start()
    with unittest.mock.patch.object(data, "make_dataset", timed_dataset), \
            unittest.mock.patch.object(torch.utils.data.dataloader._BaseDataLoaderIter, "__next__", timed_next):
        handle = register_optimizer_step_post_hook(first_step)
        try:
            train.main(train_args)
        finally:
            handle.remove()
            hwm = proc_kib("/proc/self/status", ("VmHWM",)).get("VmHWM", 0)
            Path(f"{out}.{os.environ.get('RANK', '0')}").write_text(json.dumps(
                {"hwm": hwm, **peak, **timing, "wall_s": time.time() - t0}))


def proc_kib(path: str, keys) -> dict[str, int]:
    """The `keys` of a /proc status-style file, in bytes (empty where the file is missing)."""
    out = {}
    for line in read_or_empty(path).splitlines():
        k, _, v = line.partition(":")
        if k in keys:
            out[k] = int(v.split()[0]) * 1024
    return out


def read_or_empty(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def train_memory(folders: list[str], procs: list[int], runs: int = 2, resolution: int = 128,
                 extra: list[str] = ()) -> list[dict]:
    """Peak memory per training process and the time to its first step, training at `resolution` on each folder
    with 1 or more processes (torchrun, gloo on a CPU). Each configuration runs `runs` times in a row: the first
    builds the data cache where it is missing, the later ones map it warm. One dict per run (max over ranks)."""
    rows = []
    for folder in folders:
        count = sum(1 for f in Path(folder).rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
        for nproc in procs:
            for run in range(runs):
                with tempfile.TemporaryDirectory() as tmp:
                    args = ["--data", str(folder), "--resolution", str(resolution), "--start-res", str(resolution),
                            "--kimg", "0.032", "--batch", "16", "--tick-kimg", "0.032", "--snap-kimg", "1",
                            "--outdir", tmp, *extra]
                    launch = [sys.executable] if nproc == 1 else [
                        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                        "--master_port", str(29500 + os.getpid() % 1000)]
                    proc = subprocess.run([*launch, str(Path(__file__).resolve()), "--probe-train", f"{tmp}/probe",
                                           *args], capture_output=True, text=True)
                    if proc.returncode:
                        raise UsageError(f"training on {folder} failed: {proc.stderr.strip().splitlines()[-1:]}")
                    ranks = [json.loads(p.read_text()) for p in Path(tmp).glob("probe.*")]
                most = lambda key: max(r.get(key, 0) for r in ranks)  # noqa: E731
                rows.append({"images": count, "procs": nproc, "run": run + 1, "VmHWM MiB": most("hwm") / 2**20,
                             "anon MiB": most("anon") / 2**20, "file MiB": most("file") / 2**20,
                             "PSS+workers MiB": most("tree_pss") / 2**20, "data s": most("data_s"),
                             "to batch s": max(r["first_batch_s"] - r["data_start_s"] for r in ranks),
                             "first step s": most("first_step_s"), "wall s": most("wall_s")})
    return rows


# ----------------------------------------------------------------------------------------------------------------
# Metric throughput (metrics.py's own functions)


def metric_throughput(G, device: torch.device, num: int = 8) -> list[dict]:
    """Samples/s of PPL (pairs through G and LPIPS) and of FID's fake statistics (G and Inception)."""
    rows = []
    try:
        lpips = metrics.lpips_vgg(device)
        idx = np.arange(num)
        metrics.ppl_distances(G, idx[:2], "w", "end", distance=lpips, device=device)  # warmup
        t, _ = timed(lambda: metrics.ppl_distances(G, idx, "w", "end", distance=lpips, device=device), device,
                     min_time=0, min_reps=1, warmup=0)
        rows.append({"metric": "ppl_wend", "samples_s": num / t, "num": num, "note": "pairs: G(2N) + LPIPS VGG16"})
    except Exception as e:
        rows.append({"metric": "ppl_wend", "note": f"skipped ({type(e).__name__}: {str(e)[:80]})"})
    try:
        features = metrics.inception(device)
        metrics.fake_statistics(G, 2, batch=2, device=device, features=features, progress=False)  # warmup
        t, _ = timed(lambda: metrics.fake_statistics(G, num, batch=num, device=device, features=features,
                                                     progress=False), device, min_time=0, min_reps=1, warmup=0)
        rows.append({"metric": "fid (fakes)", "samples_s": num / t, "num": num, "note": "G + Inception-v3 pool3"})
    except Exception as e:
        rows.append({"metric": "fid (fakes)", "note": f"skipped ({type(e).__name__}: {str(e)[:80]})"})
    return rows


# ----------------------------------------------------------------------------------------------------------------
# Tables


def fmt(v) -> str:
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 100:
            return f"{v:,.0f}"
        return f"{v:.3g}" if abs(v) < 1 else f"{v:.1f}"
    return str(v)


def live_row(row: dict, columns: list[str], header: bool) -> str:
    """One row for the progress log, in fixed-width columns (the header once per table)."""
    widths = [max(len(c), 9) for c in columns]
    line = "  ".join(fmt(row.get(c, "")).rjust(w) for c, w in zip(columns, widths))
    return ("  ".join(c.rjust(w) for c, w in zip(columns, widths)) + "\n" + line) if header else line


def render(rows: list[dict], columns: list[str], markdown: bool = False) -> str:
    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    return "\n".join(lines + ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells])


# ----------------------------------------------------------------------------------------------------------------
# The benchmark


class Bench:
    """Runs the measurements for one device and collects the tables ({title: (columns, rows)}) and verdicts."""

    def __init__(self, device: torch.device, quick: bool = False, log=print, min_time: float | None = None):
        self.device, self.quick, self.log = device, quick, log
        self.cpu = device.type == "cpu"
        self.min_time = min_time if min_time is not None else (0.3 if quick else 1.0)
        self.tables: dict[str, tuple[list[str], list[dict]]] = {}
        self.notes: list[str] = []
        self.peaks: dict[str, dict] = {}
        self.bandwidth = 0.0

    def table(self, title: str, columns: list[str]) -> list[dict]:
        self.tables.setdefault(title, (columns, []))
        return self.tables[title][1]

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.log(f"note: {text}")

    def measure_peaks(self, dtypes=("fp32", "bf16", "fp16"), size: int | None = None) -> None:
        rows = self.table("Peak (measured in this run)", ["precision", "matmul GFLOP/s", "conv GFLOP/s",
                                                          "peak GFLOP/s", "best matmul", "best conv"])
        for name in dtypes:
            p = peak_flops(self.device, DTYPES[name], size=size, min_time=self.min_time)
            self.peaks[name] = p
            rows.append({"precision": name, "matmul GFLOP/s": p["matmul"] / 1e9, "conv GFLOP/s": p["conv"] / 1e9,
                         "peak GFLOP/s": p["peak"] / 1e9, "best matmul": f"{p['matmul_size']}^2", "best conv": p["conv_shape"]})
            self.log(live_row(rows[-1], list(rows[-1]), len(rows) == 1))
        self.bandwidth = memory_bandwidth(self.device, mbytes=64 if size else 256, min_time=self.min_time)
        self.log(f"memory bandwidth (fp32 copy): {self.bandwidth / 1e9:.1f} GB/s; machine balance "
                 f"{self.peaks['fp32']['peak'] / self.bandwidth:.1f} FLOP/byte (fp32)")

    def slow(self, dtype: str) -> bool:
        """A precision this device emulates (peak under a fifth of fp32's): measured at small sizes only."""
        return dtype in self.peaks and self.peaks[dtype]["peak"] < 0.2 * self.peaks["fp32"]["peak"]

    def ratio(self, flops_per_s: float, dtype: str) -> float:
        return flops_per_s / self.peaks[dtype]["peak"] if dtype in self.peaks else float("nan")

    # -- generator inference

    def batches(self, res: int) -> list[int]:
        if self.cpu:
            cap = {32: 64, 64: 16, 256: 4, 1024: 2}.get(res, 8)
        else:
            cap = {32: 512, 64: 256, 256: 64, 1024: 16}.get(res, 64)
        if self.quick:
            cap = min(cap, 4)
        return [b for b in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if b <= cap]

    def inference(self, preset: str, cfg: NetworkConfig, resolutions: list[int]) -> None:
        """Generator images/s at each resolution: a batch sweep in fp32, then the other precisions, layouts and
        torch.compile at batch 1 and at the best batch."""
        for res in resolutions:
            G = make_generator(cfg, self.device)
            flops = count_flops(inference_fn(G, res, 1, self.device, torch.float32))
            best = self.inference_batch_sweep(preset, cfg, res, G, flops)
            self.inference_variants(preset, cfg, res, flops, best["batch"])
            if self.cpu and not self.quick:
                self.bound(f"G inference {preset} {res}^2 batch {best['batch']} fp32",
                           inference_fn(G, res, best["batch"], self.device, torch.float32), flops * best["batch"],
                           best["img/s"] / best["batch"])
            del G

    def inference_row(self, preset: str, res: int, batch: int, prec: str, cl: bool, comp: bool, flops: float,
                      r: dict) -> dict:
        cols = ["preset", "res", "batch", "precision", "layout", "compile", "img/s", "ms/img", "GFLOP/img",
                "TFLOP/s", "% peak", "peak MiB", "compile s"]
        rows = self.table("Generator inference", cols)
        rate = flops * r["img_s"]
        row = {"preset": preset, "res": res, "batch": batch, "precision": prec,
               "layout": "channels_last" if cl else "NCHW", "compile": "yes" if comp else "no",
               "img/s": r["img_s"], "ms/img": 1000 / r["img_s"], "GFLOP/img": flops / 1e9,
               "TFLOP/s": rate / 1e12, "% peak": 100 * self.ratio(rate, prec), "peak MiB": r["mem_mb"],
               "compile s": r["compile_s"] if comp else ""}
        rows.append(row)
        self.log(live_row(row, cols, len(rows) == 1))
        return row

    def inference_batch_sweep(self, preset: str, cfg: NetworkConfig, res: int, G, flops: float) -> dict:
        """fp32 eager rows of growing batch; stops when throughput stops improving (by 5%) or memory runs out.
        Returns the best row."""
        best = None
        for b in self.batches(res):
            try:
                r = g_inference(cfg, res, b, self.device, min_time=self.min_time, G=G)
            except torch.OutOfMemoryError:
                self.note(f"{preset} {res}^2: batch {b} ran out of memory")
                break
            row = self.inference_row(preset, res, b, "fp32", False, False, flops, r)
            if best is not None and row["img/s"] < 1.05 * best["img/s"]:
                if row["img/s"] > best["img/s"]:
                    best = row
                break
            best = row
        return best

    def inference_variants(self, preset: str, cfg: NetworkConfig, res: int, flops: float, best_batch: int) -> None:
        """channels_last, bf16, fp16 and torch.compile rows at batch 1 and at the best batch."""
        big = self.cpu and res >= 64  # the paper's generators take a second or more per image on a CPU
        variants = [("fp32", True, False), ("bf16", False, False), ("bf16", True, False), ("fp16", False, False)]
        compiled = [("fp32", False, True), ("fp32", True, True), ("bf16", True, True)]
        if big or self.quick:
            variants = [("fp32", True, False), ("bf16", False, False)]
            compiled = []
            self.note(f"{preset} {res}^2: fewer variants (CPU time budget{' / --quick' if self.quick else ''})")
        slow = sorted({p for p, _, _ in variants + compiled if self.slow(p)})
        if slow:
            peaks = ", ".join(f"{self.peaks[p]['peak'] / 1e9:.2f}" for p in slow)
            self.note(f"{preset} {res}^2: {', '.join(slow)} is emulated on this {self.device.type} (peak "
                      f"{peaks} GFLOP/s): "
                      f"{'batch 1 only, eager' if res < 64 else 'not measured at this size'}")
        for b in sorted({1, best_batch}):
            for prec, cl, comp in variants + (compiled if (b == best_batch or not self.cpu) else []):
                if self.slow(prec) and (b > 1 or comp or res >= 64):
                    continue
                try:
                    r = g_inference(cfg, res, b, self.device, DTYPES[prec], cl, comp, min_time=self.min_time)
                except torch.OutOfMemoryError:
                    self.note(f"{preset} {res}^2 batch {b} {prec}: out of memory")
                    continue
                except Exception as e:  # torch.compile without a compiler, say: report it, go on
                    self.note(f"{preset} {res}^2 batch {b} {prec} compile={comp}: failed ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:100] if str(e) else ''})")
                    continue
                self.inference_row(preset, res, b, prec, cl, comp, flops, r)

    def bound(self, what: str, fn, flops: float, calls_per_s: float) -> None:
        """Memory or compute bound on the CPU: arithmetic intensity against the machine balance, and the share of
        time spent in convolutions/matmuls (the only counted FLOPs)."""
        rows = self.table("CPU: memory or compute bound", ["workload", "FLOP/byte", "balance", "conv+mm time %",
                                                           "conv+mm GFLOP/s", "% peak in convs", "verdict"])
        nbytes = count_work(fn)[1]
        share = matmul_share(fn)
        intensity = flops / nbytes
        balance = self.peaks["fp32"]["peak"] / self.bandwidth
        conv_rate = flops * calls_per_s / max(share, 1e-9)
        verdict = "compute bound" if intensity >= balance else "memory bound"
        if intensity >= balance and share < 0.6:
            verdict = "compute bound in convs, but overhead/elementwise-dominated"
        rows.append({"workload": what, "FLOP/byte": intensity, "balance": balance, "conv+mm time %": 100 * share,
                     "conv+mm GFLOP/s": conv_rate / 1e9, "% peak in convs": 100 * conv_rate / self.peaks["fp32"]["peak"],
                     "verdict": verdict})
        self.log(live_row(rows[-1], list(rows[-1]), len(rows) == 1))

    # -- training

    TRAINING = "Training step (D: logistic + R1, G: non-saturating + mixing)"
    TRAINING_COLUMNS = ["preset", "res", "batch", "precision", "layout", "compile", "R1", "img/s", "sec/kimg",
                        "R1 / none", "GFLOP/img", "TFLOP/s", "% peak", "peak MiB", "compile s"]

    def training(self, train_preset: str, cfg: NetworkConfig | None = None, resolutions: list[int] | None = None,
                 batch_cap: int | None = None, iters: int = 3) -> None:
        """train.py's training step at each resolution of the preset's schedule, in the variants of
        training_variants, each without R1 and with R1 every step (the ratio of the two is the row's "R1 / none"),
        then the schedule average and (CPU, cpu preset) the memory-or-compute analysis."""
        p = train.preset_config(train_preset)
        cfg = cfg or NetworkConfig.from_dict(p.network)
        kimg = schedule_kimg(train_preset)
        resolutions = resolutions or sorted(kimg)
        spk = {}  # fp32 NCHW sec/kimg with R1 at each resolution
        for res in resolutions:
            batch = p.batch_at(res)
            if batch_cap and batch > batch_cap:
                self.note(f"training {train_preset} {res}^2: batch {batch_cap} instead of the preset's {batch} "
                          f"(CPU time budget)")
                batch = batch_cap
            for prec, cl, comp in self.training_variants(train_preset, res, resolutions[-1]):
                none = self.training_row(train_preset, cfg, res, batch, prec, cl, False, comp, iters)
                full = self.training_row(train_preset, cfg, res, batch, prec, cl, True, comp, iters, none)
                if full is not None and (prec, cl, comp) == ("fp32", False, False):
                    spk[res] = full["sec/kimg"]
                if none is not None and full is not None and not comp:
                    self.lazy_r1_note(train_preset, none, full)
        if all(r in spk for r in kimg):
            self.schedule_note(train_preset, kimg, spk)
        if self.cpu and not self.quick and train_preset == "cpu":
            self.training_bound(train_preset, cfg, resolutions[-1])

    def training_variants(self, train_preset: str, res: int, last_res: int) -> list[tuple[str, bool, bool]]:
        """(precision, channels_last, torch.compile) to measure at `res`."""
        variants = [("fp32", False, False)]
        if not self.quick:
            if self.cpu and train_preset == "cpu":
                variants += [("fp32", True, False)]
                if res == last_res:
                    variants += [("bf16", False, False)]
            elif not self.cpu:
                variants += [("bf16", False, False), ("bf16", True, False)]
                if res == last_res:
                    variants += [("bf16", True, True)]
        return variants

    def training_row(self, train_preset: str, cfg: NetworkConfig, res: int, batch: int, prec: str, cl: bool,
                     r1: bool, comp: bool, iters: int, none: dict | None = None) -> dict | None:
        """One timed row of the training table (None when it ran out of memory). `none`: the same step's row
        without R1, for the ratio."""
        rows = self.table(self.TRAINING, self.TRAINING_COLUMNS)
        if self.slow(prec):  # emulated precision: the smallest batch, one step
            iters, batch = 1, 2
            self.note(f"training {train_preset} {res}^2 {prec}: emulated on this {self.device.type}, "
                      f"measured at batch 2, one step")
        try:
            r = train_step_throughput(cfg, res, batch, self.device, DTYPES[prec], iters=iters,
                                      gamma=train.preset_config(train_preset).gamma, r1=r1, channels_last=cl,
                                      min_time=self.min_time, train_preset=train_preset, compile=comp)
        except torch.OutOfMemoryError:
            self.note(f"training {train_preset} {res}^2 batch {batch} {prec}: out of memory")
            return None
        if comp:  # the counter cannot see compiled graphs: the FLOPs are those of the same step run eagerly
            same = ("every step" if r1 else "none", res, prec, "no")
            eager = [x for x in rows if (x["R1"], x["res"], x["precision"], x["compile"]) == same]
            r["flops_per_img"] = eager[-1]["GFLOP/img"] * 1e9 if eager else float("nan")
        rate = r["flops_per_img"] * r["img_s"]
        row = {"preset": train_preset, "res": res, "batch": batch, "precision": prec,
               "layout": "channels_last" if cl else "NCHW", "compile": "yes" if comp else "no",
               "R1": "every step" if r1 else "none", "img/s": r["img_s"], "sec/kimg": r["sec_per_kimg"],
               "R1 / none": r["sec_per_kimg"] / none["sec/kimg"] if none else "",
               "GFLOP/img": r["flops_per_img"] / 1e9, "TFLOP/s": rate / 1e12, "% peak": 100 * self.ratio(rate, prec),
               "peak MiB": r["mem_mb"], "compile s": r["compile_s"] if comp else ""}
        rows.append(row)
        self.log(live_row(row, self.TRAINING_COLUMNS, len(rows) == 1))
        return row

    MEMORY = "Peak memory of one training step: the whole batch in one process, and train.py --batch-gpu 4"

    def step_memory(self, preset: str, resolutions: list[int], batch_gpus=(None, 4)) -> None:
        """A step's peak memory at each resolution, with each --batch-gpu, each in a fresh process (so that no
        allocator cache of an earlier row hides a peak)."""
        rows = self.table(self.MEMORY, ["preset", "res", "batch", "batch-gpu", "precision", "before step MiB",
                                        "step peak MiB", "step adds MiB", "process peak MiB", "sec/kimg"])
        for res in resolutions:
            for batch_gpu in batch_gpus:
                with tempfile.TemporaryDirectory() as tmp:
                    out = Path(tmp) / "step.json"
                    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--threads",
                                           str(torch.get_num_threads()), "--probe-step", preset, str(res),
                                           str(batch_gpu or 0), self.device.type, str(out)],
                                          capture_output=True, text=True)
                    if proc.returncode:
                        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                        self.note(f"memory {preset} {res}^2 batch-gpu {batch_gpu}: failed ({last[:120]})")
                        continue
                    r = json.loads(out.read_text())
                row = {"preset": preset, "res": res, "batch": r["batch"], "batch-gpu": batch_gpu or "-",
                       "precision": "fp32", "before step MiB": r["before_mb"], "step peak MiB": r["step_peak_mb"],
                       "step adds MiB": r["step_peak_mb"] - r["before_mb"], "process peak MiB": r["process_peak_mb"], "sec/kimg": r["sec_per_kimg"]}
                rows.append(row)
                self.log(live_row(row, list(row), len(rows) == 1))

    def lazy_r1_note(self, train_preset: str, none: dict, full: dict) -> None:
        """Lazy R1 every 16 steps (StyleGAN2), estimated from a step's "R1 none" and "every step" rows."""
        lazy = (15 * none["sec/kimg"] + full["sec/kimg"]) / 16
        self.note(f"training {train_preset} {none['res']}^2 {none['precision']} {none['layout']}: lazy R1 (every 16 "
                  f"steps) would give {lazy:.1f} sec/kimg against {full['sec/kimg']:.1f} with R1 every step "
                  f"({full['sec/kimg'] / lazy:.2f}x)")

    R1_IMPL = "D forward + R1 + backward: ops.py's convolutions against PyTorch's (alternating, best of 3)"

    def r1_implementations(self, preset: str, cfg: NetworkConfig, resolutions: list[int], batch: int,
                           dtypes=("fp32",)) -> None:
        """The R1 part of a D step with the custom and the native convolutions, side by side in this run."""
        rows = self.table(self.R1_IMPL, ["preset", "res", "batch", "precision", "native img/s", "custom img/s",
                                         "custom / native"])
        for res in resolutions:
            for prec in dtypes:
                if self.slow(prec):
                    continue
                fns = {impl: d_r1_step(cfg, res, batch, self.device, DTYPES[prec], impl=impl)
                       for impl in ops.IMPLEMENTATIONS}
                try:
                    for fn in fns.values():
                        fn()  # warm up both before the first timed round
                    t = alternating(fns, self.device, min_time=self.min_time)
                except torch.OutOfMemoryError:
                    self.note(f"R1 {preset} {res}^2 batch {batch} {prec}: out of memory")
                    continue
                row = {"preset": preset, "res": res, "batch": batch, "precision": prec,
                       "native img/s": batch / t["native"], "custom img/s": batch / t["custom"],
                       "custom / native": t["native"] / t["custom"]}
                rows.append(row)
                self.log(live_row(row, list(row), len(rows) == 1))

    def schedule_note(self, train_preset: str, kimg: dict[int, float], spk: dict[int, float]) -> None:
        """sec/kimg averaged over the preset's whole schedule, each resolution weighted by its images."""
        avg = sum(kimg[r] * spk[r] for r in kimg) / sum(kimg.values())
        total_days = avg * sum(kimg.values()) / 86400
        line = (f"training {train_preset}: {avg:.1f} sec/kimg averaged over the whole schedule "
                f"({sum(kimg.values()):,.0f} kimg, {total_days:.2f} days) in fp32 at the batches above")
        if train_preset == "ffhq1024":
            line += f"; official StyleGAN on one V100: about {V100_SEC_PER_KIMG_1024} sec/kimg"
        self.note(line)

    def training_bound(self, train_preset: str, cfg: NetworkConfig, res: int) -> None:
        """Memory or compute bound: the fp32 NCHW step with R1 at `res` and the preset's batch."""
        rows = self.table(self.TRAINING, self.TRAINING_COLUMNS)
        p = train.preset_config(train_preset)
        batch = p.batch_at(res)
        full = next(x for x in rows if x["res"] == res and x["precision"] == "fp32" and x["R1"] == "every step")
        with training_step(cfg, res, batch, self.device, gamma=p.gamma,
                           train_preset=train_preset) as step:
            step()  # the Adam states
            self.bound(f"training step {train_preset} {res}^2 batch {batch} fp32", step,
                       full["GFLOP/img"] * 1e9 * batch, full["img/s"] / batch)

    def data_loading(self, sizes=(32, 64, 256), cache_sizes=(64, 256, 1024), count: int = 256) -> None:
        """Images/s of the data paths: rendering synthetic faces, the synthetic data set through a DataLoader, a
        folder of photos decoded into the cache and then read back, and cache reads per core."""
        rows = self.table("Data loading (data.py)", ["what", "res", "img/s", "note"])
        seconds = 0.3 if self.quick else 3.0
        if self.quick:
            sizes, cache_sizes, count = sizes[:1], cache_sizes[:1], 16

        def add(what, res, rate, note=""):
            rows.append({"what": what, "res": res, "img/s": rate, "note": note})
            self.log(live_row(rows[-1], list(rows[-1]), len(rows) == 1))

        for res in sizes:
            add("render_faces, one process", res,
                images_per_second(lambda: len(render_faces(np.arange(64), res)[0]), seconds))
            add("synthetic, DataLoader (2 workers)", res, loader_rate(make_dataset("synthetic", res), seconds))
        with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as cache:
            folder = write_photo_folder(Path(tmp), count)
            for res in sizes:
                t0 = time.perf_counter()
                ds = make_dataset(str(folder), res, cache_dir=cache)
                add(f"folder of {count} 512px PNG/JPEG: decode + resize into the cache", res,
                    count / (time.perf_counter() - t0), "once per data set and resolution")
                add("the same, then DataLoader (2 workers)", res, loader_rate(ds, seconds))
            for res in cache_sizes:
                add("cache read, random batches of 32", res, cache_read_rate(Path(cache), res, seconds),
                    "per CPU second of one single-threaded process (a DataLoader worker)")

    def metrics(self, preset: str, cfg: NetworkConfig, num: int) -> None:
        rows = self.table("Metric throughput (metrics.py)", ["preset", "metric", "samples/s", "num", "note"])
        G = make_generator(cfg, self.device)
        for r in metric_throughput(G, self.device, num):
            row = {"preset": preset, "metric": r["metric"], "samples/s": r.get("samples_s", ""),
                   "num": r.get("num", ""), "note": r.get("note", "")}
            rows.append(row)
            self.log(live_row(row, list(row), len(rows) == 1))

    # -- output

    def text(self, markdown: bool = False) -> str:
        parts = []
        for title, (cols, rows) in self.tables.items():
            if rows:
                parts.append((f"#### {title}\n\n" if markdown else f"\n== {title}\n") + render(rows, cols, markdown))
        if self.notes:
            parts.append(("#### Notes\n\n" if markdown else "\n== Notes\n") + "\n".join(f"- {n}" for n in self.notes))
        return "\n\n".join(parts)


def targets(bench: Bench) -> list[str]:
    """The project's efficiency targets (% of the measured peak), checked against the measured tables."""
    out = []
    inf = bench.tables.get("Generator inference", (None, []))[1]
    trn = bench.tables.get(Bench.TRAINING, (None, []))[1]
    best = lambda rows: max(rows, key=lambda r: r["% peak"]) if rows else None

    def check(label, rows, goal):
        b = best(rows)
        if b is None:
            return
        ok = b["% peak"] >= goal
        out.append(f"{'MET' if ok else 'NOT MET'}: {label}: best {b['% peak']:.1f}% of the measured {b['precision']} "
                   f"peak (goal {goal}%; res {b['res']}, batch {b['batch']}, {b['layout']}"
                   f"{', compiled' if b.get('compile') == 'yes' else ''})")

    if bench.cpu:
        check("CPU, cpu preset, G inference (fp32)",
              [r for r in inf if r["preset"] == "cpu" and r["precision"] == "fp32"], 50)
        final = PRESETS["cpu"].resolution  # where the schedule spends most of its images
        check(f"CPU, cpu preset, training step at {final} (fp32)",
              [r for r in trn if r["preset"] == "cpu" and r["res"] == final and r["precision"] == "fp32"], 50)
    else:
        for preset, res in (("ffhq256", 256), ("ffhq1024", 1024)):
            check(f"GPU, {preset} G inference at {res} (bf16)",
                  [r for r in inf if r["preset"] == preset and r["res"] == res and r["precision"] == "bf16"], 40)
            check(f"GPU, {preset} training at {res} (bf16)",
                  [r for r in trn if r["preset"] == preset and r["res"] == res and r["precision"] == "bf16"], 25)
    return out


def environment(device: torch.device, argv: list[str]) -> dict:
    cpu_model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    accel = accelerate.__version__
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu_model}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}",
        "gpu": gpu,
        "device": str(device),
        "versions": f"python {platform.python_version()}, torch {torch.__version__}, accelerate {accel}, "
                    f"CUDA {torch.version.cuda or 'none'}",
        "command": "python " + " ".join(shlex.quote(a) for a in ["bench.py", *argv]),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown",
    }


SECTIONS = ("inference", "r1", "training", "memory", "metrics", "data")


def run(presets: list[str], device: torch.device, quick: bool = False, log=print, sections=SECTIONS,
        only_res: list[int] | None = None) -> Bench:
    """Every section of `sections` for each preset; `only_res` keeps the resolutions of each section to those."""
    bench = Bench(device, quick, log)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if device.type == "cpu" and load > 0.5 * (os.cpu_count() or 1):
        bench.note(f"the machine was busy at the start (load average {load:.2f} on {os.cpu_count()} cores): CPU "
                   "numbers are low; multi-threaded ops wait for time slices on a shared CPU")
    keep = (lambda rs: [r for r in rs if r in only_res]) if only_res else (lambda rs: rs)
    bench.measure_peaks()
    if "data" in sections:
        bench.data_loading()
    for preset in presets:
        cfg = PRESETS[preset]
        resolutions = [r for r in INFERENCE_RES if r <= cfg.resolution] or [cfg.resolution]
        if quick:
            resolutions = resolutions[:1]
        if "inference" in sections and keep(resolutions):
            bench.inference(preset, cfg, keep(resolutions))
        r1_at = R1_IMPL_AT[device.type].get(preset)
        if "r1" in sections and r1_at and keep(r1_at[0]):  # the same D step with both convolution implementations
            (res_list, batch), dtypes = r1_at, ("fp32",) if device.type == "cpu" else ("fp32", "bf16")
            bench.r1_implementations(preset, cfg, keep(res_list)[:1] if quick else keep(res_list),
                                     4 if quick else batch, dtypes)
        if "training" in sections and preset in TRAIN_PRESETS:
            cpu_big = device.type == "cpu" and preset != "cpu"  # the paper's 256 preset on two cores: batch 2
            res_t = keep([8, 32, 256] if quick and cpu_big else [train.preset_config(preset).start_res] if quick
                         else sorted(schedule_kimg(preset)))
            if device.type == "cpu" and preset == "ffhq1024":
                bench.note("training ffhq1024: not measured on the CPU (hours per kimg); run on a GPU")
            elif res_t:
                bench.training(preset, resolutions=res_t, **dict(batch_cap=2, iters=1) if cpu_big else
                               dict(iters=1 if quick else 3))
        if "memory" in sections and preset in TRAIN_PRESETS:
            res_m = keep([cfg.resolution]) or [cfg.resolution]
            if device.type == "cpu" and preset == "ffhq1024":
                bench.note("memory ffhq1024: not measured on the CPU (hours per step); run on a GPU")
            else:
                bench.step_memory(preset, res_m[:1] if quick else res_m)
        if "metrics" in sections:
            if device.type == "cpu" and preset != "cpu":
                bench.note(f"metric throughput for {preset}: not measured on the CPU (time budget)")
            else:
                bench.metrics(preset, cfg, num=4 if quick else 8)
    return bench


def append_results(path: Path, env: dict, bench: Bench, verdicts: list[str]) -> None:
    """Append a dated section; earlier sections (other machines, GPUs) stay."""
    head = "# Benchmarks\n\nMeasured by `bench.py` (see its docstring). Every section is one run.\n"
    old = path.read_text() if path.is_file() else head
    section = [f"\n## {env['date']}: {env['device']} ({env['gpu'] if env['gpu'] != 'none' else 'no GPU'})\n",
               f"- machine: {env['machine']}", f"- GPU: {env['gpu']}", f"- versions: {env['versions']}",
               f"- command: `{env['command']}`", f"- load average at start (1, 5, 15 min): {env['load']}",
               f"- load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", ""]
    section += [f"- peak MiB: {MEMORY_LEGEND[env['device'].split(':')[0]]}", ""]
    section += ["#### Targets\n"] + [f"- {v}" for v in verdicts] + ["", bench.text(markdown=True), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(old.rstrip("\n") + "\n" + "\n".join(section))


def parse_args(argv=None):
    p = ArgumentParser(
        "bench.py", "Measure StyleGAN inference, training and metric throughput, memory and FLOP rate.",
        "examples:\n  python bench.py                     # all presets on the best device\n"
               "  python bench.py --preset cpu --quick\n  python bench.py --preset ffhq1024 --device cuda\n")
    p.add_argument("--preset", default="all", choices=["all", "cpu", "ffhq256", "ffhq1024"],
                   help="network preset to measure (default: all)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--quick", action="store_true", help="fewer sizes and repetitions")
    p.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS, metavar="SECTION",
                   help=f"what to measure (default: all of {' '.join(SECTIONS)})")
    p.add_argument("--resolution", nargs="+", type=int_at_least(4), metavar="RES",
                   help="measure only at these resolutions (e.g. 256 1024; default: each section's own)")
    p.add_argument("--out", default="docs/benchmarks.md", help="results file to append to ('' to skip)")
    p.add_argument("--threads", type=int_at_least(0), default=0, help="torch CPU threads (default: all cores)")
    g = p.add_argument_group("the memory of whole training runs (instead of the sections)")
    g.add_argument("--train-memory", nargs="+", metavar="FOLDER",
                   help="peak memory per process and time to the first step of train.py on each folder")
    g.add_argument("--procs", nargs="+", type=int_at_least(1), default=[1, 2],
                   help="--train-memory: process counts (torchrun above 1; default 1 2)")
    g.add_argument("--runs", type=int_at_least(1), default=2,
                   help="--train-memory: runs of each (the first may build the data cache; default 2)")
    g.add_argument("--train-args", default="", metavar="ARGS",
                   help="--train-memory: more train.py options, in quotes (e.g. '--preset ffhq256')")
    g.add_argument("--probe-train", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    g.add_argument("--probe-step", nargs=5, help=argparse.SUPPRESS)  # PRESET RES BATCH_GPU DEVICE OUT: one step  # OUT TRAIN_ARGS...: a run
    return p.parse_args(argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.probe_train:  # one training run of --train-memory, in a process of its own
        return probe_training(args.probe_train[0], args.probe_train[1:])
    if args.probe_step:  # one row of the memory table, in a process of its own
        preset, res, batch_gpu, device, out = args.probe_step
        if args.threads:
            torch.set_num_threads(args.threads)
        return step_memory(preset, int(res), int(batch_gpu) or None, torch.device(device), out)
    if args.train_memory:
        rows = train_memory(args.train_memory, args.procs, args.runs, extra=shlex.split(args.train_args))
        print(render(rows, list(rows[0])))
        return rows
    device = pick_device(args.device)
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {args.device}: bench.py measures cpu or cuda")
    odd = [r for r in args.resolution or [] if r & (r - 1)]
    if odd:
        raise UsageError(f"--resolution takes powers of two (the networks' resolutions), not {odd[0]}")
    if args.threads:
        torch.set_num_threads(args.threads)
    elif device.type == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    print("GPU:", torch.cuda.get_device_name(device) if device.type == "cuda" else
          "no GPU available here" if not torch.cuda.is_available() else "not used (--device cpu)")
    env = environment(device, argv)
    for k, v in env.items():
        print(f"{k:>9}: {v}")
    presets = ["cpu", "ffhq256", "ffhq1024"] if args.preset == "all" else [args.preset]
    t0 = time.time()
    bench = run(presets, device, args.quick, sections=args.sections, only_res=args.resolution)
    verdicts = targets(bench)
    print(bench.text())
    print(f"\npeak MiB: {MEMORY_LEGEND[device.type]}")
    print("\n== Targets\n" + "\n".join(verdicts))
    print(f"\ntotal {time.time() - t0:.0f} s")
    if args.out:
        append_results(Path(args.out), env, bench, verdicts)
        print(f"appended to {args.out}")
    return bench


if __name__ == "__main__":
    run_cli(main)
