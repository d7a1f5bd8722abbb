"""The paper's disentanglement study (Tables 1, 3 and 4) in miniature, on the synthetic faces.

    python ablation.py                          # every variant and its control (about 85 minutes on a 2-core CPU)
    python ablation.py --seeds 3 --variants D,E,F,mix50   # more seeds where the paper's differences are small
    python ablation.py --quick                  # a minutes-long smoke run (what the tests run)
    python ablation.py --kimg 200 --batch 64 --train-only   # train only (a GPU machine); the same command
                                                            # without --train-only measures, on any machine

Each variant is trained with train.py and measured with metrics.py (FID, PPL full/end in Z and W, separability in Z
and W); nothing here trains or measures by itself. Every variant and seed gets its own folder under --outdir; a
folder holding `ablation.json` is finished and is never run again, and an interrupted training run continues from
its last checkpoint, so re-running the same command continues where it stopped. The tables aggregate every finished
seed found on disk, so adding seeds later needs no retraining of the others.

Beside each trained run, the same variant and seed is measured at initialisation (the untrained control, kept in
untrained.json): an ordering that already holds before training owes nothing to it. The control does not depend on
the training schedule (--kimg, --batch), so one measured for one training length serves every other.

Outputs: results.md (tables beside the paper's numbers, and which of the paper's orderings the miniature reproduces),
results.csv and ablation.png, in --docs (default docs/; --quick writes them into its --outdir instead).
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import functools
import json
import math
import multiprocessing
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import metrics
import train
from checkpoint import latest_checkpoint, load_network
from common import ArgumentParser, UsageError, int_at_least, pick_device, positive_float, run_cli
from data import make_dataset


@dataclass(frozen=True)
class Variant:
    name: str
    label: str  # the paper's row
    train_args: tuple  # train.py options on top of the size's
    space: str  # the latent space the paper reports for this row: "z" or "w"
    paper: dict  # the paper's FFHQ numbers: fid, ppl_full, ppl_end, sep (None where it lists none)


def _paper(fid, full, end, sep):
    return {"fid": fid, "ppl_full": full, "ppl_end": end, "sep": sep}


# Paper Table 4 (mapping depth) and Table 3 (noise, mixing); FID of D and E from Table 1 (FFHQ). Configs that two
# tables share are one variant: "style-based 8 W" of Table 4 and "+ mixing 90%" of Table 3 are both config F.
VARIANTS = [
    Variant("trad", "traditional generator, Z (Table 3/4)",
            ("--architecture", "traditional", "--mapping-layers", "0", "--no-noise", "--style-mixing", "0"),
            "z", _paper(5.25, 412.0, 415.3, 10.78)),
    Variant("map0", "style-based, mapping 0, Z (Table 4)", ("--mapping-layers", "0"), "z",
            _paper(5.06, 283.5, 285.5, 9.88)),
    Variant("map1", "style-based, mapping 1, W (Table 4)", ("--mapping-layers", "1"), "w",
            _paper(4.60, 219.9, 209.4, 6.81)),
    Variant("map2", "style-based, mapping 2, W (Table 4)", ("--mapping-layers", "2"), "w",
            _paper(4.43, 217.8, 199.9, 6.25)),
    Variant("D", "config D: style-based, no noise, no mixing, W (Table 3)",
            ("--mapping-layers", "8", "--no-noise", "--style-mixing", "0"), "w", _paper(4.88, 446.2, 376.6, 3.61)),
    Variant("E", "config E: + noise inputs, W (Table 3)", ("--mapping-layers", "8", "--style-mixing", "0"), "w",
            _paper(4.42, 200.5, 160.6, 3.54)),
    Variant("mix50", "+ mixing 50%, W (Table 3)", ("--mapping-layers", "8", "--style-mixing", "0.5"), "w",
            _paper(None, 231.5, 182.1, 3.51)),
    Variant("F", "config F: + mixing 90% = mapping 8, W (Tables 3, 4)", ("--mapping-layers", "8", "--style-mixing",
                                                                         "0.9"), "w", _paper(4.40, 234.0, 195.9, 3.79)),
]
BY_NAME = {v.name: v for v in VARIANTS}

# The paper's claims as orderings "a is lower than b" (all these metrics: lower is better).
# (claim, metric, a, b); metric "ppl_full"/"ppl_end"/"sep" is read in each variant's own space (the paper's).
ORDERINGS = [
    ("W of the style-based generator is more separable than Z of the traditional one", "sep", "F", "trad"),
    ("style-based W has shorter paths than traditional Z (full)", "ppl_full", "F", "trad"),
    ("style-based W has shorter paths than traditional Z (end)", "ppl_end", "F", "trad"),
    ("a deeper mapping network (8 vs 0) improves separability", "sep", "F", "map0"),
    ("a deeper mapping network (8 vs 0) shortens paths (full)", "ppl_full", "F", "map0"),
    ("a deeper mapping network (8 vs 0) shortens paths (end)", "ppl_end", "F", "map0"),
    ("noise inputs shorten paths (E vs D, full)", "ppl_full", "E", "D"),
    ("noise inputs shorten paths (E vs D, end)", "ppl_end", "E", "D"),
    ("mixing regularization 90% costs a little path length (E vs F, full)", "ppl_full", "E", "F"),
    ("mixing regularization 90% costs a little path length (E vs F, end)", "ppl_end", "E", "F"),
]

# Sizes. default: 16x16 grown from 8x8, a narrow network (z, w 128; 128 channels), sized so that the eight
# variants with one seed take about 55 minutes on 2 idle CPU cores (56 measured); metric sample counts far below the
# paper's (FID 50k, PPL 100k pairs, separability 200k), the same for every variant so that they compare. The cpu
# preset's EMA ramp-up (half-life capped at 5% of the images seen) keeps the EMA generator of such short runs trained.
# The study's learning rate, pinned like its widths so that a change of the cpu preset does not change the study.
# Records whose settings hold no --lr were trained at this rate (stored_settings).
STUDY_LR = "0.005"

SIZES = {
    "default": dict(train=["--resolution", "16", "--start-res", "8", "--stable-kimg", "4", "--fade-kimg", "4",
                           "--kimg", "10", "--batch", "32", "--tick-kimg", "2", "--snap-kimg", "4",
                           "--workers", "1", "--lr", STUDY_LR],
                    # the widths pinned here, so that the experiment stays the same when the cpu preset changes
                    network=dict(z_dim=128, w_dim=128, mapping_width=128, channel_base=2048, channel_max=128),
                    data="synthetic", fid=1000, ppl=1000, ls=5000, classifier={}, pixel_fid=False),
    # quick: the tests' tiny network (z, w 32; 32 channels) for a few hundred images.
    "quick": dict(train=["--resolution", "16", "--start-res", "8", "--stable-kimg", "0.016", "--fade-kimg", "0.016",
                         "--kimg", "0.064", "--batch", "16", "--tick-kimg", "0.064",
                         "--snap-kimg", "0.064", "--workers", "0", "--lr", STUDY_LR],
                  network=dict(z_dim=32, w_dim=32, mapping_width=32, channel_base=256, channel_max=32),
                  data="synthetic:2000", fid=48, ppl=16, ls=200, pixel_fid=True,
                  classifier=dict(num=512, holdout=128, epochs=1)),
}


METRIC_SEED = 0  # one metric seed for every variant: the same latents, so differences come from the networks


def study_size(quick: bool, kimg: float | None = None, batch: int | None = None, lr: float | None = None
               ) -> tuple[dict, str]:
    """The size a command runs at, and its name for results.md: --quick's or the default, with --kimg (a longer or
    shorter training), --batch (a larger minibatch for a GPU) and --lr (another learning rate, e.g. the cpu
    preset's 0.01 for a small-batch CPU study) put in its train.py options. Runs at another size are other runs:
    their settings, and so their folders' records, differ."""
    size_name = "quick" if quick else "default"
    size = SIZES[size_name]
    train_args = list(size["train"])
    for flag, value in (("--kimg", None if kimg is None else f"{kimg:g}"),
                        ("--batch", None if batch is None else str(batch)),
                        ("--lr", None if lr is None else f"{lr:g}")):
        if value is not None:
            train_args[train_args.index(flag) + 1] = value
            size_name += f", {flag} {value}"
    if kimg is not None and kimg > float(size["train"][size["train"].index("--kimg") + 1]):
        # A longer run logs and checkpoints as often per run, not per image: a checkpoint every 4k images of a
        # 300k-image run would spend more time writing than training on a GPU. (Schedule-only: the controls and
        # the trained networks do not depend on it.)
        for flag, every in (("--tick-kimg", kimg / 20), ("--snap-kimg", kimg / 10)):
            train_args[train_args.index(flag) + 1] = f"{every:g}"
    return {**size, "train": train_args}, size_name


# ----------------------------------------------------------------------------------------------------------------
# Verdicts (pure, tested on synthetic numbers)


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN with one value) of the finite values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan


def verdict(lower: list[float], higher: list[float]) -> dict:
    """Does the miniature reproduce the paper's 'lower < higher'? `lower`, `higher`: one value per seed.

    holds: the means are in the paper's order. beyond_spread: the gap exceeds the combined seed spread
    sqrt(std_a^2 + std_b^2) (None when either side has fewer than two seeds, so no spread is known)."""
    (ma, sa), (mb, sb) = mean_std(lower), mean_std(higher)
    if not (math.isfinite(ma) and math.isfinite(mb)):
        return {"holds": None, "beyond_spread": None, "text": "not measured"}
    if ma == mb:  # e.g. D, E and F at initialisation: the same network (noise strengths start at 0, mixing is training)
        return {"holds": False, "beyond_spread": False, "text": "equal (no difference)"}
    holds = ma < mb
    spread = math.hypot(sa, sb) if math.isfinite(sa) and math.isfinite(sb) else None
    beyond = None if spread is None else abs(mb - ma) > spread
    text = "reproduced" if holds else "NOT reproduced"
    if beyond is None:
        text += " (one seed: no spread)"
    elif not beyond:
        text += " (within the seed spread)"
    else:
        text += " (beyond the seed spread)"
    return {"holds": holds, "beyond_spread": beyond, "text": text}


def headline(rec: dict, variant: Variant) -> dict:
    """A run's numbers in the paper's space for this row: fid, ppl_full, ppl_end, sep."""
    s = variant.space
    return {"fid": rec.get("fid"), "ppl_full": rec.get(f"ppl_{s}full"), "ppl_end": rec.get(f"ppl_{s}end"),
            "sep": rec.get(f"ls_{s}")}


STAGES = ("trained", "untrained")
FID_FLOOR = 60.0  # below this FID-2k-like value a network has learned the data well enough for the study to count


def stage_record(rec: dict, stage: str) -> dict:
    """A run's measurements after training ('trained') or at initialisation ('untrained': its control)."""
    return rec if stage == "trained" else rec.get("untrained") or {}


def orderings(runs: dict[str, list[dict]], stage: str = "trained") -> list[dict]:
    """Each of the paper's orderings with our means and its verdict. runs: variant name -> per-seed records; stage:
    'trained' or 'untrained' (the same orderings on the same variants and seeds, at initialisation)."""
    out = []
    for claim, metric, a, b in ORDERINGS:
        va = [headline(stage_record(r, stage), BY_NAME[a])[metric] for r in runs.get(a, [])]
        vb = [headline(stage_record(r, stage), BY_NAME[b])[metric] for r in runs.get(b, [])]
        pa, pb = BY_NAME[a].paper[metric], BY_NAME[b].paper[metric]
        out.append({"claim": claim, "metric": metric, "a": a, "b": b, "paper": (pa, pb), "ours": (mean_std(va)[0],
                    mean_std(vb)[0]), "seeds": (len(va), len(vb)), **verdict(va, vb)})
    return out


def conclusion(trained: dict, untrained: dict) -> str:
    """The verdict table's plain answer for one ordering, from its trained and untrained verdicts.

    holds: in the paper's order after training, beyond the seed spread, and not already so at initialisation.
    holds at initialisation: in order after training beyond the spread, but equally so before any training, so the
    training is not what made it. unresolved: in order but within the spread, or with one seed. does not hold: the
    trained means are in the opposite order."""
    if trained["holds"] is None:
        return "not measured"
    if not trained["holds"]:
        return "does not hold" + (" (beyond the seed spread)" if trained["beyond_spread"] else "")
    if not trained["beyond_spread"]:
        return "unresolved: " + ("one seed, no spread" if trained["beyond_spread"] is None else "within the seed spread")
    if untrained["holds"] and untrained["beyond_spread"] is not False:
        return "holds, but already at initialisation"
    if untrained["holds"]:
        return "holds (at initialisation the same order, but within the seed spread)"
    return "holds (beyond the seed spread; not at initialisation)"


# ----------------------------------------------------------------------------------------------------------------
# Running one variant and seed


def run_settings(variant: Variant, seed: int, size: dict) -> dict:
    return {"train_args": [*size["train"], "--data", size["data"], *variant.train_args, "--seed", str(seed)],
            "num": {"fid": size["fid"], "ppl": size["ppl"], "ls": size["ls"]}, "metric_seed": METRIC_SEED,
            "pixel_fid": size["pixel_fid"],
            "network": size.get("network", {})}


# train.py options that set only the training schedule and data loading, each followed by its value. The untrained
# control is train.initial_networks(cfg), a function of cfg.network and cfg.seed alone, and train.make_config sets
# neither from these options (they set cfg.kimg, cfg.batch, cfg.base_lr/cfg.lr, cfg.tick_kimg, cfg.snap_kimg,
# cfg.workers, cfg.stable_kimg and cfg.fade_kimg): a control measured under one training schedule is the control of
# every other. The metrics' settings and --data (the metrics' data) stay; so does --start-res, which changes no
# network either but which no size varies.
SCHEDULE_ONLY = ("--kimg", "--batch", "--lr", "--tick-kimg", "--snap-kimg", "--workers", "--stable-kimg",
                 "--fade-kimg")


def without_options(args, options: dict[str, int]) -> list:
    """train.py arguments without the given options, each with its number of values (`--kimg=10` is one item)."""
    kept, i = [], 0
    while i < len(args):
        if args[i] in options:
            i += 1 + options[args[i]]
            continue
        if args[i].split("=", 1)[0] not in options:
            kept.append(args[i])
        i += 1
    return kept


def control_settings(settings: dict) -> dict:
    """The settings that decide an untrained control: a run's settings without its schedule-only train options."""
    return {**settings, "train_args": without_options(settings["train_args"], dict.fromkeys(SCHEDULE_ONLY, 1))}


def train_config(settings: dict):
    cfg = train.make_config(train.parse_args(settings["train_args"]))
    cfg.network.update(settings["network"])  # the size's z_dim, w_dim and widths: not all are train.py options
    return cfg


@functools.cache
def git_commit() -> str | None:
    """The commit of the code that made a record (None outside a git checkout): read once, when the study starts
    (main calls it first), so that commits made while a long study runs are not credited with its records."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=10)
    except OSError:
        return None
    return out.stdout.strip() or None


def measure(G, variant: Variant, settings: dict, shared: "Shared") -> tuple[dict, dict]:
    """FID, PPL (full and end, in the space the paper reports for the row) and separability in Z and W of one
    generator; returns (measurements, seconds per metric)."""
    res, num, times, rec = G.cfg.resolution, settings["num"], {}, {}
    t0 = time.time()
    rec["fid"] = metrics.fid(G, shared.dataset(res), num=num["fid"], seed=METRIC_SEED, device=shared.device,
                             features=metrics.pixel_features if settings["pixel_fid"] else None)
    times["fid"] = time.time() - t0
    # PPL in the space the paper reports for the row only: LPIPS is the slowest part after FID on a CPU.
    for sampling in ("full", "end"):
        t0 = time.time()
        rec[f"ppl_{variant.space}{sampling}"] = metrics.ppl(G, variant.space, sampling, num=num["ppl"],
                                                            seed=METRIC_SEED, distance=shared.lpips(),
                                                            device=shared.device)
        times[f"ppl_{variant.space}{sampling}"] = time.time() - t0
    t0 = time.time()
    classifier, _ = shared.classifier(res)
    times["classifier"] = time.time() - t0  # ~0 after the first variant
    t0 = time.time()
    ls = metrics.separability(G, classifier, num=num["ls"], seed=METRIC_SEED, device=shared.device)
    rec["ls_z"], rec["ls_w"] = ls["z"], ls["w"]
    # Attributes whose kept labels are all of one class score H = 0, as the official metric has it: a network whose
    # images the classifier cannot tell apart (an untrained one) looks perfectly separable in them. Counted, to say so.
    rec["ls_one_class"] = int(np.isnan(np.asarray(ls["directions"], np.float64)).any(axis=1).sum())
    times["ls"] = time.time() - t0
    return rec, times


class Shared:
    """The expensive things every variant reuses, made on first use: LPIPS, the attribute classifier, the data."""

    def __init__(self, size: dict, device):
        self.size, self.device, self._lpips, self._classifier, self._datasets = size, device, None, {}, {}

    def lpips(self):
        if self._lpips is None:
            self._lpips = metrics.lpips_vgg(self.device)
        return self._lpips

    def classifier(self, resolution: int):
        if resolution not in self._classifier:  # metrics caches it on disk too: trained once for all runs
            self._classifier[resolution] = metrics.attribute_classifier(self.size["data"], resolution, self.device,
                                                                        **self.size["classifier"])
        return self._classifier[resolution]

    def dataset(self, resolution: int):
        if resolution not in self._datasets:
            self._datasets[resolution] = make_dataset(self.size["data"], resolution=resolution)
        return self._datasets[resolution]


def _write_json(path: Path, obj: dict):
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def stored_settings(settings: dict) -> dict:
    """A record's settings as they would be written now: records from before STUDY_LR was pinned lack --lr, and
    were trained at the preset's lr of that time, which is STUDY_LR."""
    args = settings["train_args"]
    if "--lr" in args or "--data" not in args:
        return settings
    i = args.index("--data")
    return {**settings, "train_args": [*args[:i], "--lr", STUDY_LR, *args[i:]]}


def _finished(path: Path, settings: dict, folder: Path, key=lambda s: s) -> dict | None:
    """The record at `path` if it exists; an error if it was made with other settings. key: what of the settings
    must agree (control_settings for an untrained control), applied to both the stored and the given ones."""
    if not path.is_file():
        return None
    rec = json.loads(path.read_text())
    if key(stored_settings(rec["settings"])) != key(settings):
        raise _other_settings(folder)
    return rec


def _other_settings(folder: Path) -> UsageError:
    return UsageError(f"{folder} was run with other settings; use another --outdir (or delete the folder)")


# train.py options that leave the generator at initialisation unchanged, each with how many values it takes: the noise
# strengths start at zero (as in the official code), so a network with noise inputs draws the same images as one
# without; style mixing acts only in training. Variants that differ in these alone (D, E, mix50, F) are one network
# at initialisation (test_d_e_and_f_are_one_network_at_initialisation checks it), measured once per seed.
INIT_NEUTRAL = {"--no-noise": 0, "--style-mixing": 1}


def init_args(variant: Variant) -> tuple:
    """A variant's train.py options without those that do not change its untrained generator (INIT_NEUTRAL)."""
    return tuple(without_options(variant.train_args, INIT_NEUTRAL))


def _shared_control(variant: Variant, seed: int, size: dict, outdir: Path) -> dict | None:
    """The control of another variant that is the same network at initialisation (INIT_NEUTRAL), measured with the
    same settings, as this variant's record (its "measured_as" names the source); None when there is none yet."""
    for other in VARIANTS:
        if other is variant or init_args(other) != init_args(variant) or other.space != variant.space:
            continue
        folder = outdir / f"{other.name}-seed{seed}"
        rec = _finished(folder / "untrained.json", run_settings(other, seed, size), folder, key=control_settings)
        if rec is not None and "measured_as" not in rec:
            return {**rec, "variant": variant.name, "measured_as": f"{other.name}-seed{seed}", "metric_seconds": {},
                    "settings": control_settings(run_settings(variant, seed, size)),
                    "date": datetime.datetime.now().isoformat(timespec="seconds")}
    return None


def run_control(variant: Variant, seed: int, size: dict, outdir: Path, shared: Shared, log=print) -> tuple[dict, bool]:
    """The untrained control of one variant and seed: the generator its training run starts from
    (train.initial_networks), measured as the trained one is. An ordering that already holds here owes nothing to
    training. Kept in <folder>/untrained.json with its control_settings, so that runs of another training length
    (--kimg, --batch) share it; returns (its record, whether anything ran)."""
    folder = outdir / f"{variant.name}-seed{seed}"
    done = folder / "untrained.json"
    settings = run_settings(variant, seed, size)
    rec = _finished(done, settings, folder, key=control_settings)
    if rec is not None:
        return rec, False
    rec = _shared_control(variant, seed, size, outdir)
    if rec is not None:  # the same network as a control measured already: its values, not a second measurement
        folder.mkdir(parents=True, exist_ok=True)
        _write_json(done, rec)
        log(f"done  {variant.name:<6} seed {seed} untrained: the same network as {rec['measured_as']}, its values")
        return rec, True
    G0 = train.initial_networks(train_config(settings))[0].eval().requires_grad_(False).to(shared.device)
    values, times = measure(G0, variant, settings, shared)
    rec = {"variant": variant.name, "seed": seed, **values, "metric_seconds": {k: round(v, 1) for k, v in times.items()},
           "settings": control_settings(settings), "date": datetime.datetime.now().isoformat(timespec="seconds"),
           "commit": git_commit()}
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(done, rec)
    log(f"done  {variant.name:<6} seed {seed} untrained: " + "  ".join(f"{k} {v:.0f}s" for k, v in times.items()))
    return rec, True


def train_variant(variant: Variant, seed: int, size: dict, outdir: Path, log=print) -> bool:
    """Train (or continue) one variant and seed into <outdir>/<variant>-seed<seed>/, ending with its train.json;
    returns whether it trained (False: train.json was there). Measuring is run_variant's, on any machine later."""
    folder = outdir / f"{variant.name}-seed{seed}"
    settings = run_settings(variant, seed, size)
    _finished(folder / "ablation.json", settings, folder)  # a folder of another size is refused, never trained on
    train_json = folder / "train.json"
    if train_json.is_file():
        if stored_settings(json.loads(train_json.read_text()).get("settings", settings)) != settings:  # older: none
            raise _other_settings(folder)
        return False
    cfg = train_config(settings)
    resume = latest_checkpoint(folder) if folder.is_dir() else None
    t0 = time.time()
    summary = train.train(cfg, folder, resume=resume, log_fn=lambda s: None)
    _write_json(train_json, {"seconds": round(time.time() - t0, 1), "resumed": resume is not None,
                             "kimg": summary["cur_nimg"] / 1000, "sec_per_kimg": summary["sec_per_kimg"],
                             "settings": settings})
    log(f"train {variant.name:<6} seed {seed}: {time.time() - t0:6.0f}s  -> {folder}")
    return True


def _train_job(name: str, seed: int, size: dict, outdir: Path, threads: int) -> bool:
    """train_variant in a worker process of train_all: its progress bar and messages go to train.log in its folder,
    so that parallel runs do not write over each other's lines."""
    torch.set_num_threads(threads)
    folder = outdir / f"{name}-seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "train.log", "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        return train_variant(BY_NAME[name], seed, size, outdir, log=lambda s: None)


def train_all(variants: list[Variant], seeds: int, size: dict, outdir: Path, jobs: int = 1, log=print
              ) -> tuple[list[str], list[str]]:
    """Train every variant and seed (seed by seed, as the study runs them); returns the runs trained now and those
    trained earlier. jobs > 1 trains that many runs at once in separate processes: a small network leaves most of a
    GPU idle (it is bound by kernel launches, docs/performance.md), so several runs share one GPU for nearly the time
    of one. On a CPU the cores are split between them. A run that fails does not stop the others; the first error is
    raised once every run has ended, and the finished ones keep their train.json."""
    runs = [(v, seed) for seed in range(seeds) for v in variants]
    done, earlier = [], []
    if jobs <= 1:
        for v, seed in runs:
            (done if train_variant(v, seed, size, outdir, log) else earlier).append(f"{v.name}-seed{seed}")
        return done, earlier
    threads = max(1, (os.cpu_count() or 1) // jobs)
    errors = []
    # spawn, not fork: a forked child inherits the parent's torch and CUDA state, which CUDA does not allow
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_train_job, v.name, seed, size, outdir, threads): f"{v.name}-seed{seed}"
                   for v, seed in runs}
        log(f"training {len(runs)} run(s), {jobs} at a time; each run's progress is in <run>/train.log under {outdir}/")
        for fut in tqdm(as_completed(futures), total=len(futures), unit="run", desc="runs", dynamic_ncols=True):
            name = futures[fut]
            try:
                (done if fut.result() else earlier).append(name)
            except Exception as e:  # noqa: BLE001 - reported below, after the other runs have finished
                errors.append(e)
                log(f"{name} failed: {e}")
    if errors:
        raise errors[0]
    order = {f"{v.name}-seed{seed}": i for i, (v, seed) in enumerate(runs)}
    return sorted(done, key=order.get), sorted(earlier, key=order.get)


def run_variant(variant: Variant, seed: int, size: dict, outdir: Path, shared: Shared, log=print) -> tuple[dict, bool]:
    """Train (or continue) and measure one variant and seed; returns (its record, whether anything ran)."""
    folder = outdir / f"{variant.name}-seed{seed}"
    done = folder / "ablation.json"
    settings = run_settings(variant, seed, size)
    rec = _finished(done, settings, folder)
    if rec is not None:
        log(f"skip  {variant.name:<6} seed {seed}: finished earlier ({done})")
        return rec, False

    train_variant(variant, seed, size, outdir, log)
    train_info = {k: v for k, v in json.loads((folder / "train.json").read_text()).items() if k != "settings"}

    G = load_network(folder / "network", shared.device)
    values, times = measure(G, variant, settings, shared)
    info = shared.classifier(G.cfg.resolution)[1]
    rec = {"variant": variant.name, "seed": seed, **values, "train_seconds": train_info["seconds"],
           "metric_seconds": {k: round(v, 1) for k, v in times.items()}, "train": train_info, "settings": settings,
           "classifier_holdout_accuracy": float(np.mean(list(info["holdout_accuracy"].values()))),
           "date": datetime.datetime.now().isoformat(timespec="seconds"), "commit": git_commit()}
    _write_json(done, rec)
    log(f"done  {variant.name:<6} seed {seed}: train {train_info['seconds']:6.0f}s  " +
        "  ".join(f"{k} {v:.0f}s" for k, v in times.items()))
    return rec, True


def collect(outdir: Path, variants: list[Variant], size: dict) -> dict[str, list[dict]]:
    """Every seed of each variant under outdir run at this size (seeds beyond --seeds included): the trained record
    where training finished, with its untrained control under "untrained" where that was measured (at any training
    schedule: see control_settings). A seed with a control only (--untrained-only) has no trained values."""
    runs = {}
    for v in variants:
        recs = []
        for folder in sorted(outdir.glob(f"{v.name}-seed*")):
            found = {}
            for name in ("ablation", "untrained"):
                p = folder / f"{name}.json"
                if p.is_file():
                    r = json.loads(p.read_text())
                    key = control_settings if name == "untrained" else (lambda s: s)
                    if key(stored_settings(r["settings"])) == key(run_settings(v, r["seed"], size)):
                        found[name] = r
            if found:
                rec = dict(found.get("ablation") or {"variant": v.name, "seed": found["untrained"]["seed"]})
                if "untrained" in found:
                    rec["untrained"] = found["untrained"]
                recs.append(rec)
        runs[v.name] = sorted(recs, key=lambda r: r["seed"])
    return runs


# ----------------------------------------------------------------------------------------------------------------
# Outputs: CSV, Markdown, plot

MEASURED = ("fid", "ppl_zfull", "ppl_zend", "ppl_wfull", "ppl_wend", "ls_z", "ls_w")


def _fmt(m: float, s: float = math.nan, digits: int = 2) -> str:
    if m is None or not math.isfinite(m):
        return "–"
    return f"{m:.{digits}f}" + (f" ± {s:.{digits}f}" if s is not None and math.isfinite(s) else "")


def table_rows(runs: dict[str, list[dict]], variants: list[Variant]) -> list[dict]:
    """One row per variant: means and stds over seeds of every measurement and of the headline columns."""
    rows = []
    for v in variants:
        recs = runs.get(v.name, [])
        trained = [r for r in recs if "train_seconds" in r]
        row = {"variant": v.name, "label": v.label, "space": v.space.upper(), "seeds": len(trained),
               "untrained_seeds": sum("untrained" in r for r in recs)}
        for k in MEASURED:
            row[k], row[f"{k}_std"] = mean_std([r.get(k) for r in recs])
        for k in ("fid", "ppl_full", "ppl_end", "sep"):
            row[f"ours_{k}"], row[f"ours_{k}_std"] = mean_std([headline(r, v)[k] for r in recs])
            row[f"untrained_{k}"], row[f"untrained_{k}_std"] = mean_std(
                [headline(stage_record(r, "untrained"), v)[k] for r in recs])
            row[f"paper_{k}"] = v.paper[k]
        row["train_seconds"] = float(np.mean([r["train_seconds"] for r in trained])) if trained else math.nan
        row["metric_seconds"] = (float(np.mean([sum(r["metric_seconds"].values()) for r in trained]))
                                 if trained else math.nan)
        controls = [r["untrained"] for r in recs if "untrained" in r]
        row["ls_one_class"] = mean_std([r.get("ls_one_class") for r in trained])[0]
        row["untrained_ls_one_class"] = mean_std([c.get("ls_one_class") for c in controls])[0]
        row["untrained_metric_seconds"] = (float(np.mean([sum(r["metric_seconds"].values()) for r in controls]))
                                           if controls else math.nan)
        rows.append(row)
    return rows


def write_csv(rows: list[dict], path: Path):
    keys = list(rows[0])
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r[k] is None else r[k]) for k in keys})


def write_markdown(rows, verdicts: dict[str, list[dict]], path: Path, command: str, wall_s: float, size_name: str,
                   size: dict, commits: list[str] = ()):
    """results.md. verdicts: {'trained': orderings(runs), 'untrained': orderings(runs, 'untrained')}."""
    compute_s = (sum(r["seeds"] * (r["train_seconds"] + r["metric_seconds"]) for r in rows if r["seeds"])
                 + sum(r["untrained_seeds"] * r["untrained_metric_seconds"] for r in rows if r["untrained_seeds"]))
    lines = [
        "# The paper's disentanglement study, in miniature",
        "",
        f"Command: `{command}`  ",
        f"Date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} UTC; wall time of this invocation "
        f"{wall_s / 60:.1f} min; the runs' own training and metric time (untrained controls included), summed over "
        f"variants and seeds, {compute_s / 60:.1f} min"
        + (f"; code at commit {', '.join(sorted(set(c for c in commits if c)))}" if any(commits) else "") + ".  ",
        f"Size `{size_name}`: train.py {' '.join(size['train'])} on `{size['data']}`, the cpu preset's layout with "
        + ", ".join(f"{k} {v}" for k, v in size.get("network", {}).items())
        + f". Metrics: FID {size['fid']} images, PPL {size['ppl']} pairs, separability "
        f"{size['ls']} images (paper: 50 k, 100 k, 200 k), metric seed {METRIC_SEED} for every run."
        + (" FID here is on 8x8 pixels, not Inception features (--quick)." if size["pixel_fid"] else ""),
        "",
        "Ours vs the paper (FFHQ 1024). PPL and separability in the space the paper reports for the row; "
        "mean ± std over seeds where there are several. Lower is better everywhere. Absolute values do not compare "
        "(small synthetic faces vs 1024x1024 photographs); orderings do. *Untrained*: the same variant and seed at "
        "initialisation, before any training step, measured the same way (the control).",
        "",
        "| variant | paper's row | space | seeds | FID | PPL full | PPL end | separability | paper FID | "
        "paper PPL full | paper PPL end | paper separability |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['label']} | {r['space']} | {r['seeds']} | "
                     + " | ".join(_fmt(r[f"ours_{k}"], r[f"ours_{k}_std"], 3 if k == "sep" else 1)
                                  for k in ("fid", "ppl_full", "ppl_end", "sep"))
                     + " | " + " | ".join(_fmt(r[f"paper_{k}"], digits=2) for k in ("fid", "ppl_full", "ppl_end", "sep"))
                     + " |")
    lines += ["", "Trained against untrained (the control), same columns:", "",
              "| variant | seeds (trained, untrained) | FID trained | FID untrained | PPL full trained | PPL full untrained | "
              "PPL end trained | PPL end untrained | separability trained | separability untrained | "
              "one-class attributes, trained / untrained |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['seeds']}, {r['untrained_seeds']} | " + " | ".join(
            _fmt(r[f"{stage}_{k}"], r[f"{stage}_{k}_std"], 3 if k == "sep" else 1)
            for k in ("fid", "ppl_full", "ppl_end", "sep") for stage in ("ours", "untrained"))
            + f" | {_fmt(r['ls_one_class'], digits=1)} / {_fmt(r['untrained_ls_one_class'], digits=1)} |")
    lines += ["", "*One-class attributes*: of the attributes the separability metric scores, those whose confident "
              "half of the samples the classifier gives a single label; they count as perfectly separable (H = 0), "
              "as in the official metric. Where the untrained networks have many, their low separability says the "
              "classifier sees no variation in their images, not that their latent space is disentangled."]
    above = [r["variant"] for r in rows if r["seeds"] and not r["ours_fid"] <= FID_FLOOR]
    if not any(r["seeds"] for r in rows):
        floor = "No variant has been trained in this record (untrained controls only, `--untrained-only`)."
    elif above:
        floor = (f"Above it: {', '.join(above)}. These networks have not yet learned the data, so their trained "
                 "verdicts below say how the variants start to learn, not how they end.")
    else:
        floor = "Every trained variant is below it."
    lines += ["", f"**FID floor.** The study asks for trained networks at FID <= {FID_FLOOR:.0f}. {floor}"]
    lines += ["", "Every measurement after training. PPL only in the space the paper reports for the row (LPIPS is "
              "slow on a CPU); separability in both. The traditional generator and mapping 0 have no W of their own "
              "(w = normalized z).", "",
              "| variant | " + " | ".join(MEASURED) + " | train s | metrics s |",
              "|---|" + "---|" * (len(MEASURED) + 2)]
    for r in rows:
        lines.append(f"| {r['variant']} | " + " | ".join(_fmt(r[k], r[f'{k}_std'], 3 if k.startswith('ls') else 1)
                                                       for k in MEASURED)
                     + f" | {_fmt(r['train_seconds'], digits=0)} | {_fmt(r['metric_seconds'], digits=0)} |")
    lines += ["", "## What reproduces", "",
              "Each of the paper's orderings, from our means, after training and at initialisation (seed spread: the "
              "gap against sqrt(std_a^2 + std_b^2)). The answer: *holds* when the trained means are in the paper's "
              "order beyond the seed spread and the untrained ones are not; *already at initialisation* when the "
              "untrained networks show the same order beyond their spread; *unresolved* when the gap is within the "
              "spread; *does not hold* when the trained order is the opposite.", "",
              "| the paper's claim | metric | paper | ours, trained | trained | ours, untrained | untrained | answer |",
              "|---|---|---|---|---|---|---|---|"]
    answers = []
    for v, u in zip(verdicts["trained"], verdicts["untrained"]):
        (pa, pb), (oa, ob), (ua, ub) = v["paper"], v["ours"], u["ours"]
        answers.append((v["claim"], conclusion(v, u)))
        lines.append(f"| {v['claim']} | {v['metric']} | {v['a']} {_fmt(pa)} < {v['b']} {_fmt(pb)} | "
                     f"{v['a']} {_fmt(oa)} vs {v['b']} {_fmt(ob)} | {v['text']} | "
                     f"{v['a']} {_fmt(ua)} vs {v['b']} {_fmt(ub)} | {u['text']} | {answers[-1][1]} |")
    lines.append("")
    for title, test in (("Holds", lambda a: a.startswith("holds (beyond")),
                        ("Holds, but already at initialisation", lambda a: a == "holds, but already at initialisation"),
                        ("Holds, with the same order within the spread at initialisation",
                         lambda a: a.startswith("holds (at initialisation")),
                        ("Unresolved", lambda a: a.startswith("unresolved")),
                        ("Does not hold", lambda a: a.startswith("does not hold"))):
        claims = [c for c, a in answers if test(a)]
        lines.append(f"- {title} ({len(claims)} of {len(answers)})" + (": " + "; ".join(claims) if claims else "")
                     + ".")
    path.write_text("\n".join(lines) + "\n")


def plot(rows: list[dict], path: Path):
    import matplotlib  # here: only the study's last step draws

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [("ours_fid", "paper_fid", "FID"), ("ours_ppl_full", "paper_ppl_full", "PPL full"),
            ("ours_ppl_end", "paper_ppl_end", "PPL end"), ("ours_sep", "paper_sep", "separability")]
    names = [r["variant"] for r in rows]
    x = np.arange(len(rows))
    fig, axes = plt.subplots(2, len(cols), figsize=(4 * len(cols), 6), sharex=True)
    for j, (ours, paper, title) in enumerate(cols):
        for key, dx, style in ((ours, -0.2, dict(color="tab:blue", label="trained")),
                               (ours.replace("ours_", "untrained_"), 0.2,
                                dict(color="white", edgecolor="tab:blue", hatch="//", label="untrained (control)"))):
            mean = np.array([r[key] for r in rows], float)
            std = np.array([r[f"{key}_std"] for r in rows], float)
            axes[0, j].bar(x + dx, np.nan_to_num(mean), width=0.4, capsize=3,
                           yerr=None if np.isnan(std).all() else np.nan_to_num(std), **style)
        axes[0, j].set_title(f"{title}: ours (synthetic faces)" if j == 0 else f"{title}: ours")
        pap = np.array([np.nan if r[paper] is None else r[paper] for r in rows], float)
        axes[1, j].bar(x, np.nan_to_num(pap), color="tab:gray")
        axes[1, j].set_title(f"{title}: paper (FFHQ)")
        axes[1, j].set_xticks(x, names, rotation=45)
    for ax in axes.flat:
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("StyleGAN ablation in miniature: lower is better (error bars: std over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------------
# Command line


def parse_args(argv=None):
    p = ArgumentParser(
        "ablation.py", "Train the paper's generator variants small and measure FID, PPL and separability.",
        "variants: " + ", ".join(f"{v.name} ({v.label})" for v in VARIANTS) + "\n\n"
               "examples:\n"
               "  python ablation.py                                   # all variants, one seed, ~85 min on 2 CPU cores\n"
               "  python ablation.py --seeds 3 --variants D,E,mix50,F  # add seeds where differences are small\n"
               "  python ablation.py --quick --outdir /tmp/abl         # smoke run, outputs in /tmp/abl\n"
               "  python ablation.py --seeds 3 --untrained-only        # the untrained controls alone, no training\n"
               "  python ablation.py --seeds 3 --kimg 200              # longer training (a GPU), other run folders\n"
               "  python ablation.py --seeds 3 --kimg 200 --batch 64 --train-only\n"
               "                                                       # train only (a GPU machine); the same command\n"
               "                                                       # without --train-only then measures anywhere\n"
               "  python ablation.py --variants trad,map0,D,E,F --seeds 3 --kimg 256 --batch 128 --train-only --jobs 15\n"
               "                                                       # all 15 runs at once on one GPU\n")
    p.add_argument("--variants", default=",".join(v.name for v in VARIANTS), help="comma-separated subset")
    p.add_argument("--seeds", type=int_at_least(1), default=1, help="training seeds per variant, 0..K-1 (default 1)")
    p.add_argument("--outdir", default=None, help="run folders (default runs/ablation, --quick runs/ablation-quick)")
    p.add_argument("--docs", default=None, help="where results.md/.csv and ablation.png go (default docs/, "
                                                "--quick: its --outdir)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a minutes-long smoke run")
    p.add_argument("--kimg", type=positive_float, default=None,
                   help="train each variant on this many thousand images instead of the size's (default 10; --quick "
                        "0.064): longer runs learn the data better and are measured as other runs")
    p.add_argument("--batch", type=int_at_least(1), default=None,
                   help="minibatch instead of the size's (default 32; --quick 16): a GPU takes larger ones; runs at "
                        "another batch are other runs")
    p.add_argument("--lr", type=positive_float, default=None,
                   help=f"learning rate instead of the study's ({STUDY_LR}): the cpu preset's 0.01 suits batch 16 on "
                        "a CPU; runs at another lr are other runs")
    p.add_argument("--untrained-only", action="store_true",
                   help="measure only the untrained controls (every variant at initialisation), no training")
    p.add_argument("--train-only", action="store_true",
                   help="only train (train.json in each run folder): no controls, metrics or results. The same "
                        "command without it measures them later, on any machine, without training again")
    p.add_argument("--jobs", type=int_at_least(1), default=1,
                   help="with --train-only: train this many runs at once, in separate processes (default 1). A small "
                        "network leaves a GPU mostly idle, so 5-15 runs can share one")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    args = p.parse_args(argv)
    if args.train_only and args.untrained_only:
        p.error("--train-only and --untrained-only exclude each other: give one")
    if args.jobs > 1 and not args.train_only:
        p.error("--jobs trains in parallel and needs --train-only; measure afterwards with the same command without "
                "--train-only and --jobs")
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    bad = [n for n in names if n not in BY_NAME]
    if bad or not names:
        p.error(f"unknown variant(s) {', '.join(bad) or '(none)'}: choose from {', '.join(BY_NAME)}")
    args.variants = [v for v in VARIANTS if v.name in names]  # the table's order, whatever the command's
    return args


def main(argv=None):
    args = parse_args(argv)
    git_commit()
    size, size_name = study_size(args.quick, args.kimg, args.batch, args.lr)
    outdir = Path(args.outdir or ("runs/ablation-quick" if args.quick else "runs/ablation"))
    docs = Path(args.docs or (outdir if args.quick else "docs"))
    if args.quick:  # keep the smoke run's tiny classifier and FID statistics out of the shared cache
        os.environ.setdefault("STYLEGAN_CACHE", str(outdir / "cache"))
    outdir.mkdir(parents=True, exist_ok=True)
    if args.train_only:  # e.g. on a GPU machine; the same command without --train-only measures these folders later
        start = time.time()
        done, earlier = train_all(args.variants, args.seeds, size, outdir, args.jobs)
        print(f"{len(done)} run(s) trained now, {len(earlier)} trained earlier, at size {size_name}, in {outdir}/: "
              f"{', '.join(done + earlier)} ({(time.time() - start) / 60:.1f} min). Measure them with the same "
              f"command without --train-only")
        return
    docs.mkdir(parents=True, exist_ok=True)
    shared = Shared(size, pick_device(args.device))
    start = time.time()
    trained = controls = 0
    for seed in range(args.seeds):  # seed by seed: a study cut short still has every variant
        for v in args.variants:
            if not args.untrained_only:
                trained += run_variant(v, seed, size, outdir, shared)[1]
            controls += run_control(v, seed, size, outdir, shared)[1]
    # The table shows every variant finished in outdir, not only this command's: adding seeds to a few keeps the rest.
    runs = collect(outdir, VARIANTS, size)
    shown = [v for v in VARIANTS if v in args.variants or runs[v.name]]
    rows = table_rows(runs, shown)
    command = "python ablation.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    write_csv(rows, docs / "results.csv")
    verdicts = {stage: orderings(runs, stage) for stage in STAGES}
    write_markdown(rows, verdicts, docs / "results.md", command.strip(), time.time() - start, size_name, size,
                   [c for recs in runs.values() for r in recs for c in (r.get("commit"), r.get("untrained", {}).get("commit"))])
    plot(rows, docs / "ablation.png")
    finished = sum("train_seconds" in r for recs in runs.values() for r in recs)
    print(f"{trained} run(s) done now, {finished - trained} finished earlier; {controls} untrained control(s) measured "
          f"now; "
          f"results in {docs / 'results.md'}, {docs / 'results.csv'}, {docs / 'ablation.png'} "
          f"({(time.time() - start) / 60:.1f} min)")


if __name__ == "__main__":
    run_cli(main)
