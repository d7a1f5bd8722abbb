"""The paper's disentanglement study (Tables 1, 3 and 4) in miniature, on the synthetic faces.

    python ablation.py                          # every variant, default size (about an hour on a 2-core CPU)
    python ablation.py --seeds 3 --variants D,E,F,mix50   # more seeds where the paper's differences are small
    python ablation.py --quick                  # a minutes-long smoke run (what the tests run)

Each variant is trained with train.py and measured with metrics.py (FID, PPL full/end in Z and W, separability in Z
and W); nothing here trains or measures by itself. Every variant and seed gets its own folder under --outdir; a
folder holding `ablation.json` is finished and is never run again, and an interrupted training run continues from
its last checkpoint, so re-running the same command continues where it stopped. The tables aggregate every finished
seed found on disk, so adding seeds later needs no retraining of the others.

Outputs: results.md (tables beside the paper's numbers, and which of the paper's orderings the miniature reproduces),
results.csv and ablation.png, in --docs (default docs/; --quick writes them into its --outdir instead).
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import ArgumentParser, UsageError, int_at_least, pick_device, run_cli


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
SIZES = {
    "default": dict(train=["--resolution", "16", "--start-res", "8", "--stable-kimg", "4", "--fade-kimg", "4",
                           "--kimg", "10", "--batch", "32", "--tick-kimg", "2", "--snap-kimg", "4",
                           "--workers", "1"],
                    # the widths pinned here, so that the experiment stays the same when the cpu preset changes
                    network=dict(z_dim=128, w_dim=128, mapping_width=128, channel_base=2048, channel_max=128),
                    data="synthetic", fid=1000, ppl=1000, ls=5000, classifier={}, pixel_fid=False),
    # quick: the tests' tiny network (z, w 32; 32 channels) for a few hundred images.
    "quick": dict(train=["--resolution", "16", "--start-res", "8", "--stable-kimg", "0.016", "--fade-kimg", "0.016",
                         "--kimg", "0.064", "--batch", "16", "--tick-kimg", "0.064",
                         "--snap-kimg", "0.064", "--workers", "0"],
                  network=dict(z_dim=32, w_dim=32, mapping_width=32, channel_base=256, channel_max=32),
                  data="synthetic:2000", fid=48, ppl=16, ls=200, pixel_fid=True,
                  classifier=dict(num=512, holdout=128, epochs=1)),
}


def PIXEL_FEATURES(images):
    """--quick's stand-in for Inception in FID: 8x8 average-pooled pixels (192-d). Inception-v3 on a CPU costs
    seconds per image and the 2048-d matrix square root most of a minute: far too slow for a smoke run."""
    import torch.nn.functional as F

    return F.adaptive_avg_pool2d(images.float() / 255, 8).flatten(1)


METRIC_SEED = 0  # one metric seed for every variant: the same latents, so differences come from the networks


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


def orderings(runs: dict[str, list[dict]]) -> list[dict]:
    """Each of the paper's orderings with our means and its verdict. runs: variant name -> per-seed records."""
    out = []
    for claim, metric, a, b in ORDERINGS:
        va = [headline(r, BY_NAME[a])[metric] for r in runs.get(a, [])]
        vb = [headline(r, BY_NAME[b])[metric] for r in runs.get(b, [])]
        pa, pb = BY_NAME[a].paper[metric], BY_NAME[b].paper[metric]
        out.append({"claim": claim, "metric": metric, "a": a, "b": b, "paper": (pa, pb), "ours": (mean_std(va)[0],
                    mean_std(vb)[0]), "seeds": (len(va), len(vb)), **verdict(va, vb)})
    return out


# ----------------------------------------------------------------------------------------------------------------
# Running one variant and seed


def run_settings(variant: Variant, seed: int, size: dict) -> dict:
    return {"train_args": [*size["train"], "--data", size["data"], *variant.train_args, "--seed", str(seed)],
            "num": {"fid": size["fid"], "ppl": size["ppl"], "ls": size["ls"]}, "metric_seed": METRIC_SEED,
            "pixel_fid": size["pixel_fid"],
            "network": size.get("network", {})}


class Shared:
    """The expensive things every variant reuses, made on first use: LPIPS, the attribute classifier, the data."""

    def __init__(self, size: dict, device):
        self.size, self.device, self._lpips, self._classifier, self._datasets = size, device, None, {}, {}

    def lpips(self):
        import metrics

        if self._lpips is None:
            self._lpips = metrics.lpips_vgg(self.device)
        return self._lpips

    def classifier(self, resolution: int):
        import metrics

        if resolution not in self._classifier:  # metrics caches it on disk too: trained once for all runs
            self._classifier[resolution] = metrics.attribute_classifier(self.size["data"], resolution, self.device,
                                                                        **self.size["classifier"])
        return self._classifier[resolution]

    def dataset(self, resolution: int):
        import data

        if resolution not in self._datasets:
            self._datasets[resolution] = data.make_dataset(self.size["data"], resolution=resolution)
        return self._datasets[resolution]


def run_variant(variant: Variant, seed: int, size: dict, outdir: Path, shared: Shared, log=print) -> tuple[dict, bool]:
    """Train (or continue) and measure one variant and seed; returns (its record, whether anything ran)."""
    import metrics
    import train
    from model import load_network

    folder = outdir / f"{variant.name}-seed{seed}"
    done = folder / "ablation.json"
    settings = run_settings(variant, seed, size)
    if done.is_file():
        rec = json.loads(done.read_text())
        if rec["settings"] != settings:
            raise UsageError(f"{folder} was run with other settings; use another --outdir (or delete the folder)")
        log(f"skip  {variant.name:<6} seed {seed}: finished earlier ({done})")
        return rec, False

    train_json = folder / "train.json"
    if not train_json.is_file():
        cfg = train.make_config(train.parse_args(settings["train_args"]))
        cfg.network.update(settings["network"])  # the size pins its widths (train.py has presets, no width flags)
        resume = train.latest_checkpoint(folder) if folder.is_dir() else None
        t0 = time.time()
        summary = train.train(cfg, folder, resume=resume, log_fn=lambda s: None)
        train_json.write_text(json.dumps({"seconds": round(time.time() - t0, 1), "resumed": resume is not None,
                                          "kimg": summary["cur_nimg"] / 1000,
                                          "sec_per_kimg": summary["sec_per_kimg"]}, indent=2) + "\n")
    train_info = json.loads(train_json.read_text())

    G = load_network(folder / "network", shared.device)
    res, num, times, rec = G.cfg.resolution, settings["num"], {}, {}
    t0 = time.time()
    rec["fid"] = metrics.fid(G, shared.dataset(res), num=num["fid"], seed=METRIC_SEED, device=shared.device,
                             features=PIXEL_FEATURES if size["pixel_fid"] else None)
    times["fid"] = time.time() - t0
    # PPL in the space the paper reports for the row only: LPIPS is the slowest part after FID on a CPU.
    for sampling in ("full", "end"):
        t0 = time.time()
        rec[f"ppl_{variant.space}{sampling}"] = metrics.ppl(G, variant.space, sampling, num=num["ppl"],
                                                            seed=METRIC_SEED, distance=shared.lpips(),
                                                            device=shared.device)
        times[f"ppl_{variant.space}{sampling}"] = time.time() - t0
    t0 = time.time()
    classifier, info = shared.classifier(res)
    times["classifier"] = time.time() - t0  # ~0 after the first variant
    t0 = time.time()
    ls = metrics.separability(G, classifier, num=num["ls"], seed=METRIC_SEED, device=shared.device)
    rec["ls_z"], rec["ls_w"] = ls["z"], ls["w"]
    times["ls"] = time.time() - t0

    rec = {"variant": variant.name, "seed": seed, **rec, "train_seconds": train_info["seconds"],
           "metric_seconds": {k: round(v, 1) for k, v in times.items()}, "train": train_info, "settings": settings,
           "classifier_holdout_accuracy": float(np.mean(list(info["holdout_accuracy"].values()))),
           "date": datetime.datetime.now().isoformat(timespec="seconds")}
    tmp = done.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(rec, indent=2) + "\n")
    os.replace(tmp, done)
    log(f"done  {variant.name:<6} seed {seed}: train {train_info['seconds']:6.0f}s  " +
        "  ".join(f"{k} {v:.0f}s" for k, v in times.items()))
    return rec, True


def collect(outdir: Path, variants: list[Variant], size: dict) -> dict[str, list[dict]]:
    """Every finished seed of each variant under outdir run at this size (seeds beyond --seeds included)."""
    runs = {}
    for v in variants:
        recs = []
        for p in sorted(outdir.glob(f"{v.name}-seed*/ablation.json")):
            rec = json.loads(p.read_text())
            if rec["settings"] == run_settings(v, rec["seed"], size):
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
        row = {"variant": v.name, "label": v.label, "space": v.space.upper(), "seeds": len(recs)}
        for k in MEASURED:
            row[k], row[f"{k}_std"] = mean_std([r.get(k) for r in recs])
        for k in ("fid", "ppl_full", "ppl_end", "sep"):
            row[f"ours_{k}"], row[f"ours_{k}_std"] = mean_std([headline(r, v)[k] for r in recs])
            row[f"paper_{k}"] = v.paper[k]
        row["train_seconds"] = float(np.mean([r["train_seconds"] for r in recs])) if recs else math.nan
        row["metric_seconds"] = float(np.mean([sum(r["metric_seconds"].values()) for r in recs])) if recs else math.nan
        rows.append(row)
    return rows


def write_csv(rows: list[dict], path: Path):
    keys = list(rows[0])
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r[k] is None else r[k]) for k in keys})


def write_markdown(rows, verdicts, path: Path, command: str, wall_s: float, size_name: str, size: dict):
    compute_s = sum(r["seeds"] * (r["train_seconds"] + r["metric_seconds"]) for r in rows if r["seeds"])
    lines = [
        "# The paper's disentanglement study, in miniature",
        "",
        f"Command: `{command}`  ",
        f"Date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} UTC; wall time of this invocation "
        f"{wall_s / 60:.1f} min; the runs' own training and metric time, summed over variants and seeds, "
        f"{compute_s / 60:.1f} min.  ",
        f"Size `{size_name}`: train.py {' '.join(size['train'])} on `{size['data']}`, the cpu preset's layout with "
        + ", ".join(f"{k} {v}" for k, v in size.get("network", {}).items())
        + f". Metrics: FID {size['fid']} images, PPL {size['ppl']} pairs, separability "
        f"{size['ls']} images (paper: 50 k, 100 k, 200 k), metric seed {METRIC_SEED} for every run."
        + (" FID here is on 8x8 pixels, not Inception features (--quick)." if size["pixel_fid"] else ""),
        "",
        "Ours vs the paper (FFHQ 1024). PPL and separability in the space the paper reports for the row; "
        "mean ± std over seeds where there are several. Lower is better everywhere. Absolute values do not compare "
        "(16x16 synthetic faces vs 1024x1024 photographs); orderings do.",
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
    lines += ["", "Every measurement. PPL only in the space the paper reports for the row (LPIPS is slow on a CPU); "
              "separability in both. The traditional generator and mapping 0 have no W of their own "
              "(w = normalized z).", "",
              "| variant | " + " | ".join(MEASURED) + " | train s | metrics s |",
              "|---|" + "---|" * (len(MEASURED) + 2)]
    for r in rows:
        lines.append(f"| {r['variant']} | " + " | ".join(_fmt(r[k], r[f'{k}_std'], 3 if k.startswith('ls') else 1)
                                                       for k in MEASURED)
                     + f" | {_fmt(r['train_seconds'], digits=0)} | {_fmt(r['metric_seconds'], digits=0)} |")
    lines += ["", "## What reproduces", "",
              "Each of the paper's orderings, from our means (seed spread: the gap against sqrt(std_a^2 + std_b^2)).",
              "", "| the paper's claim | metric | paper | ours | verdict |", "|---|---|---|---|---|"]
    for v in verdicts:
        (pa, pb), (oa, ob) = v["paper"], v["ours"]
        lines.append(f"| {v['claim']} | {v['metric']} | {v['a']} {_fmt(pa)} < {v['b']} {_fmt(pb)} | "
                     f"{v['a']} {_fmt(oa)} vs {v['b']} {_fmt(ob)} | {v['text']} |")
    held = [v for v in verdicts if v["holds"]]
    failed = [v for v in verdicts if v["holds"] is False]
    lines += ["", f"Reproduced: {len(held)} of {len(verdicts)} orderings"
              + (f" ({sum(1 for v in held if v['beyond_spread'])} beyond the seed spread)." if any(
                  v["beyond_spread"] is not None for v in held) else ".")]
    if failed:
        lines.append("Not reproduced: " + "; ".join(v["claim"] for v in failed) + ".")
    path.write_text("\n".join(lines) + "\n")


def plot(rows: list[dict], path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [("ours_fid", "paper_fid", "FID"), ("ours_ppl_full", "paper_ppl_full", "PPL full"),
            ("ours_ppl_end", "paper_ppl_end", "PPL end"), ("ours_sep", "paper_sep", "separability")]
    names = [r["variant"] for r in rows]
    x = np.arange(len(rows))
    fig, axes = plt.subplots(2, len(cols), figsize=(4 * len(cols), 6), sharex=True)
    for j, (ours, paper, title) in enumerate(cols):
        mean = np.array([r[ours] for r in rows], float)
        std = np.array([r[f"{ours}_std"] for r in rows], float)
        axes[0, j].bar(x, np.nan_to_num(mean), yerr=None if np.isnan(std).all() else np.nan_to_num(std),
                       color="tab:blue", capsize=3)
        axes[0, j].set_title(f"{title}: ours (16x16 synthetic faces)" if j == 0 else f"{title}: ours")
        pap = np.array([np.nan if r[paper] is None else r[paper] for r in rows], float)
        axes[1, j].bar(x, np.nan_to_num(pap), color="tab:gray")
        axes[1, j].set_title(f"{title}: paper (FFHQ)")
        axes[1, j].set_xticks(x, names, rotation=45)
    for ax in axes.flat:
        ax.grid(axis="y", alpha=0.3)
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
               "  python ablation.py                                   # all variants, one seed, ~55 min on 2 CPU cores\n"
               "  python ablation.py --seeds 3 --variants D,E,mix50,F  # add seeds where differences are small\n"
               "  python ablation.py --quick --outdir /tmp/abl         # smoke run, outputs in /tmp/abl\n")
    p.add_argument("--variants", default=",".join(v.name for v in VARIANTS), help="comma-separated subset")
    p.add_argument("--seeds", type=int_at_least(1), default=1, help="training seeds per variant, 0..K-1 (default 1)")
    p.add_argument("--outdir", default=None, help="run folders (default runs/ablation, --quick runs/ablation-quick)")
    p.add_argument("--docs", default=None, help="where results.md/.csv and ablation.png go (default docs/, "
                                                "--quick: its --outdir)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a minutes-long smoke run")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    bad = [n for n in names if n not in BY_NAME]
    if bad or not names:
        p.error(f"unknown variant(s) {', '.join(bad) or '(none)'}: choose from {', '.join(BY_NAME)}")
    args.variants = [v for v in VARIANTS if v.name in names]  # the table's order, whatever the command's
    return args


def main(argv=None):
    args = parse_args(argv)
    size_name = "quick" if args.quick else "default"
    size = SIZES[size_name]
    outdir = Path(args.outdir or ("runs/ablation-quick" if args.quick else "runs/ablation"))
    docs = Path(args.docs or (outdir if args.quick else "docs"))
    if args.quick:  # keep the smoke run's tiny classifier and FID statistics out of the shared cache
        os.environ.setdefault("STYLEGAN_CACHE", str(outdir / "cache"))
    outdir.mkdir(parents=True, exist_ok=True)
    docs.mkdir(parents=True, exist_ok=True)
    shared = Shared(size, pick_device(args.device))
    start = time.time()
    trained = 0
    for v in args.variants:
        for seed in range(args.seeds):
            _, ran = run_variant(v, seed, size, outdir, shared)
            trained += ran
    # The table shows every variant finished in outdir, not only this command's: adding seeds to a few keeps the rest.
    runs = collect(outdir, VARIANTS, size)
    shown = [v for v in VARIANTS if v in args.variants or runs[v.name]]
    rows = table_rows(runs, shown)
    command = "python ablation.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    write_csv(rows, docs / "results.csv")
    write_markdown(rows, orderings(runs), docs / "results.md", command.strip(), time.time() - start, size_name, size)
    plot(rows, docs / "ablation.png")
    print(f"{trained} run(s) done now, {sum(map(len, runs.values())) - trained} finished earlier; "
          f"results in {docs / 'results.md'}, {docs / 'results.csv'}, {docs / 'ablation.png'} "
          f"({(time.time() - start) / 60:.1f} min)")


if __name__ == "__main__":
    run_cli(main)
