"""ablation.py: the verdict logic on made-up numbers, and a real --quick run that resumes without retraining."""

import csv
import json
import math
import os
import shutil
import subprocess
import sys
import time

import pytest
from PIL import Image

import ablation
import train
from common import UsageError
from conftest import ROOT


# ----------------------------------------------------------------------------------------------------------------
# Verdicts on synthetic numbers


def test_verdict_one_seed_has_no_spread():
    v = ablation.verdict([1.0], [2.0])
    assert v["holds"] is True and v["beyond_spread"] is None and "one seed" in v["text"]
    v = ablation.verdict([3.0], [2.0])
    assert v["holds"] is False and v["text"].startswith("NOT reproduced")


def test_verdict_against_the_seed_spread():
    # means 1 and 2; stds 0.1 each: the gap 1 exceeds sqrt(0.01 + 0.01) = 0.14
    v = ablation.verdict([0.9, 1.0, 1.1], [1.9, 2.0, 2.1])
    assert v["holds"] and v["beyond_spread"] is True and "beyond" in v["text"]
    # means 1 and 1.2; stds 1: in the paper's order but inside the spread
    v = ablation.verdict([0.0, 1.0, 2.0], [0.2, 1.2, 2.2])
    assert v["holds"] and v["beyond_spread"] is False and "within" in v["text"]
    # reversed and beyond the spread
    v = ablation.verdict([5.0, 5.1], [1.0, 1.1])
    assert v["holds"] is False and v["beyond_spread"] is True


def test_verdict_of_equal_values_is_a_tie():
    v = ablation.verdict([2.0, 3.0], [2.0, 3.0])
    assert v == {"holds": False, "beyond_spread": False, "text": "equal (no difference)"}


def test_verdict_missing_or_nonfinite():
    assert ablation.verdict([], [1.0])["holds"] is None
    assert ablation.verdict([math.nan], [1.0])["text"] == "not measured"
    assert ablation.mean_std([2.0, None, math.inf, 4.0]) == (3.0, math.sqrt(2.0))


def _rec(variant, seed, **values):
    return {"variant": variant, "seed": seed, **values}


def test_orderings_read_each_row_in_its_own_space():
    # trad and map0 are read in Z, everything else in W: put the opposite answer in the other space to catch a mix-up
    runs = {
        "trad": [_rec("trad", 0, ls_z=10.0, ls_w=1.0, ppl_zfull=400.0, ppl_zend=400.0)],
        "map0": [_rec("map0", 0, ls_z=9.0, ls_w=0.5, ppl_zfull=300.0, ppl_zend=300.0)],
        "D": [_rec("D", s, ppl_wfull=450.0 + s, ppl_wend=380.0 + s, ppl_zfull=1.0, ls_w=3.6) for s in range(3)],
        "E": [_rec("E", s, ppl_wfull=200.0 + s, ppl_wend=160.0 + s, ppl_zfull=900.0, ls_w=3.5) for s in range(3)],
        "F": [_rec("F", s, ppl_wfull=150.0 + 100 * s, ppl_wend=150.0 + s, ls_w=3.8, ls_z=99.0) for s in range(3)],
    }
    by = {(o["metric"], o["a"], o["b"]): o for o in ablation.orderings(runs)}
    assert by[("sep", "F", "trad")]["holds"] and by[("sep", "F", "trad")]["beyond_spread"] is None  # 3.8 < 10
    assert by[("sep", "F", "map0")]["ours"] == pytest.approx((3.8, 9.0))
    assert by[("ppl_full", "E", "D")]["holds"] and by[("ppl_full", "E", "D")]["beyond_spread"] is True
    # E 201 +- 1 vs F 250 +- 100: the paper's order, within the spread
    assert by[("ppl_full", "E", "F")]["holds"] and by[("ppl_full", "E", "F")]["beyond_spread"] is False
    # E end 161 vs F end 151: the paper says E < F, ours says otherwise
    assert by[("ppl_end", "E", "F")]["holds"] is False
    assert by[("ppl_full", "F", "trad")]["holds"] and by[("ppl_end", "F", "map0")]["holds"]
    assert len(by) == len(ablation.ORDERINGS)


def _v(holds, beyond):
    return {"holds": holds, "beyond_spread": beyond}


def test_conclusion_weighs_trained_against_untrained():
    c = ablation.conclusion
    assert c(_v(True, True), _v(False, True)) == "holds (beyond the seed spread; not at initialisation)"
    assert c(_v(True, True), _v(False, False)).startswith("holds (beyond")
    assert c(_v(True, True), _v(True, True)) == "holds, but already at initialisation"
    assert c(_v(True, True), _v(True, False)).startswith("holds (at initialisation the same order")
    assert c(_v(True, False), _v(False, True)) == "unresolved: within the seed spread"
    assert c(_v(True, None), _v(True, None)) == "unresolved: one seed, no spread"
    assert c(_v(False, True), _v(True, True)) == "does not hold (beyond the seed spread)"
    assert c(_v(False, False), _v(True, True)) == "does not hold"
    assert c(_v(None, None), _v(True, True)) == "not measured"


def test_orderings_at_initialisation_read_the_control():
    runs = {"E": [_rec("E", s, ppl_wfull=1.0 + s, untrained={"ppl_wfull": 9.0 + s}) for s in range(2)],
            "D": [_rec("D", s, ppl_wfull=5.0 + s, untrained={"ppl_wfull": 2.0 + s}) for s in range(2)],
            "F": [_rec("F", 0, ppl_wfull=3.0)]}  # a record without a control: not measured, never a crash
    trained = {(o["metric"], o["a"], o["b"]): o for o in ablation.orderings(runs)}
    untrained = {(o["metric"], o["a"], o["b"]): o for o in ablation.orderings(runs, "untrained")}
    assert trained[("ppl_full", "E", "D")]["holds"] is True and trained[("ppl_full", "E", "D")]["ours"] == (1.5, 5.5)
    assert untrained[("ppl_full", "E", "D")]["holds"] is False and untrained[("ppl_full", "E", "D")]["ours"] == (9.5, 2.5)
    assert untrained[("ppl_full", "E", "F")]["holds"] is None and trained[("ppl_full", "E", "F")]["holds"] is True


def test_the_control_is_the_network_training_starts_from():
    import torch
    import train
    from accelerate import Accelerator

    settings = ablation.run_settings(ablation.BY_NAME["F"], 3, ablation.SIZES["quick"])
    cfg = ablation.train_config(settings)
    G0, _ = train.initial_networks(cfg)
    G, _, G_ema, _, _ = train.make_networks(cfg, Accelerator(cpu=True))
    for name, t in G0.state_dict().items():
        assert torch.equal(t, G.state_dict()[name]) and torch.equal(t, G_ema.state_dict()[name]), name
    other = train.initial_networks(ablation.train_config(ablation.run_settings(ablation.BY_NAME["F"], 4,
                                                                                 ablation.SIZES["quick"])))[0]
    assert any(not torch.equal(a, b) for a, b in zip(other.parameters(), G0.parameters()))  # another seed


def test_d_e_and_f_are_one_network_at_initialisation():
    # Noise strengths start at zero (official init) and style mixing acts only in training: before the first step,
    # D (no noise), E (noise) and F (noise + mixing) make the same images, which is why their orderings tie there.
    import torch
    import train

    size = ablation.SIZES["quick"]
    z = torch.randn(4, size["network"]["z_dim"], generator=torch.Generator().manual_seed(0))
    images = {}
    for name in ("D", "E", "mix50", "F"):
        G0 = train.initial_networks(ablation.train_config(ablation.run_settings(ablation.BY_NAME[name], 2, size)))[0]
        with torch.no_grad():
            images[name] = G0.eval()(z, noise_mode="random")
    assert torch.equal(images["D"], images["E"]) and torch.equal(images["E"], images["F"])
    assert torch.equal(images["mix50"], images["F"])
    # ablation.INIT_NEUTRAL groups exactly these: they share one measured control per seed
    groups = {}
    for v in ablation.VARIANTS:
        groups.setdefault(ablation.init_args(v), []).append(v.name)
    assert sorted(groups.values()) == [["D", "E", "mix50", "F"], ["map0"], ["map1"], ["map2"], ["trad"]]
    G_map0 = train.initial_networks(ablation.train_config(ablation.run_settings(ablation.BY_NAME["map0"], 2, size)))[0]
    with torch.no_grad():
        assert not torch.allclose(G_map0.eval()(z), images["F"])  # another architecture: other images


def test_table_rows_mean_and_std_over_seeds():
    runs = {"E": [_rec("E", 0, fid=10.0, ppl_wfull=1.0, ppl_wend=2.0, ls_z=5.0, ls_w=3.0, train_seconds=10,
                       metric_seconds={"fid": 1.0}),
                  _rec("E", 1, fid=12.0, ppl_wfull=3.0, ppl_wend=2.0, ls_z=5.0, ls_w=5.0, train_seconds=20,
                       metric_seconds={"fid": 3.0})]}
    (row,) = ablation.table_rows(runs, [ablation.BY_NAME["E"]])
    assert row["seeds"] == 2 and row["ours_fid"] == 11.0 and row["ours_ppl_full"] == 2.0
    assert row["ours_ppl_full_std"] == pytest.approx(math.sqrt(2)) and row["ours_ppl_end_std"] == 0.0
    assert row["ours_sep"] == 4.0 and row["ls_z"] == 5.0 and row["paper_sep"] == 3.54
    assert math.isnan(row["ppl_zfull"]) and row["train_seconds"] == 15 and row["metric_seconds"] == 2


def test_variants_cover_the_papers_rows_once():
    names = [v.name for v in ablation.VARIANTS]
    assert len(set(names)) == len(names) == 8
    args = {v.name: v.train_args for v in ablation.VARIANTS}
    assert len(set(args.values())) == 8  # no two variants train the same configuration
    assert "traditional" in args["trad"] and all(v.space == "w" for v in ablation.VARIANTS if v.name not in
                                                  ("trad", "map0"))


def test_bad_arguments():
    with pytest.raises(UsageError, match="unknown variant"):
        ablation.parse_args(["--variants", "F,nope"])
    with pytest.raises(UsageError, match="--seeds must be at least 1"):
        ablation.parse_args(["--seeds", "0"])
    args = ablation.parse_args(["--variants", "F,trad"])
    assert [v.name for v in args.variants] == ["trad", "F"]  # the table's order


# ----------------------------------------------------------------------------------------------------------------
# The --quick run, twice


def _run(outdir, env):
    return subprocess.run([sys.executable, str(ROOT / "ablation.py"), "--quick", "--outdir", str(outdir)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


def test_quick_run_writes_results_and_resumes(tmp_path):
    outdir = tmp_path / "abl"
    env = {**os.environ, "STYLEGAN_CACHE": str(tmp_path / "cache"), "HF_DATASETS_OFFLINE": "1",
           "HF_HUB_OFFLINE": "1"}
    start = time.time()
    first = _run(outdir, env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "8 run(s) done now, 0 finished earlier" in first.stdout

    with open(outdir / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["variant"] for r in rows] == [v.name for v in ablation.VARIANTS]
    for r in rows:
        assert r["seeds"] == "1"
        for k in ("ours_fid", "ours_ppl_full", "ours_ppl_end", "ours_sep", "ls_z", "ls_w"):
            assert math.isfinite(float(r[k])) and float(r[k]) >= 0, (r["variant"], k, r[k])
    md = (outdir / "results.md").read_text()
    assert md.count("\n| trad |") == 3 and "## What reproduces" in md and "--quick" in md
    assert sum(line.startswith("| ") and ("reproduced" in line) for line in md.splitlines()) == len(ablation.ORDERINGS)
    # The untrained control: every record holds the same metrics at initialisation, and they differ from training's.
    for p in outdir.glob("*-seed0/ablation.json"):
        rec = json.loads(p.read_text())
        control = json.loads((p.parent / "untrained.json").read_text())
        measured = {k for k in rec if k.startswith(("fid", "ppl_", "ls_"))}
        assert {k for k in control if k.startswith(("fid", "ppl_", "ls_"))} == measured, p
        assert all(math.isfinite(control[k]) for k in measured), control
        assert control["fid"] != rec["fid"] and control["settings"] == ablation.control_settings(rec["settings"])
    for r in rows:
        assert math.isfinite(float(r["untrained_fid"])) and math.isfinite(float(r["untrained_sep"]))
    assert md.count("| ours, untrained |") == 1 and "Does not hold" in md and "FID floor" in md
    with Image.open(outdir / "ablation.png") as im:
        assert im.size[0] > 400 and im.size[1] > 300
    for name in ("results.md", "results.csv", "ablation.png"):  # --quick writes beside its runs, never into docs/
        assert not (ROOT / "docs" / name).exists() or (ROOT / "docs" / name).stat().st_mtime < start

    # Second run: F lost its metrics (as if interrupted after training). Nothing is trained again; only F is measured.
    networks = {p: p.stat().st_mtime_ns for p in [*outdir.glob("*-seed0/network/model.safetensors"),
                                                  *outdir.glob("*-seed0/train.json")]}
    assert len(networks) == 16
    kept = json.loads((outdir / "E-seed0" / "ablation.json").read_text())
    (outdir / "F-seed0" / "ablation.json").unlink()
    second = _run(outdir, env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("skip ") == 7 and "done  F " in second.stdout
    assert "1 run(s) done now, 7 finished earlier" in second.stdout
    assert {p: p.stat().st_mtime_ns for p in networks} == networks  # nothing was trained again
    assert json.loads((outdir / "E-seed0" / "ablation.json").read_text()) == kept
    assert (outdir / "F-seed0" / "ablation.json").is_file()

    # Adding a seed to one variant keeps every other variant in the table.
    (outdir / "E-seed1").mkdir()
    (outdir / "E-seed1" / "ablation.json").write_text(json.dumps({**kept, "seed": 1, "ls_w": kept["ls_w"] + 1.0,
                                                                 "settings": ablation.run_settings(
                                                                     ablation.BY_NAME["E"], 1, ablation.SIZES["quick"])}))
    third = subprocess.run([sys.executable, str(ROOT / "ablation.py"), "--quick", "--outdir", str(outdir), "--variants",
                            "E", "--seeds", "2"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert third.returncode == 0, third.stderr[-3000:]
    with open(outdir / "results.csv") as f:
        rows = {r["variant"]: r for r in csv.DictReader(f)}
    assert len(rows) == 8 and rows["E"]["seeds"] == "2" and rows["F"]["seeds"] == "1"
    assert rows["E"]["untrained_seeds"] == "2"  # E-seed1's control was measured, though its training was made up

    # Controls alone: two more seeds of map1 at initialisation, nothing trained.
    fourth = subprocess.run([sys.executable, str(ROOT / "ablation.py"), "--quick", "--outdir", str(outdir), "--variants",
                             "map1", "--seeds", "3", "--untrained-only"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=600)
    assert fourth.returncode == 0, fourth.stderr[-3000:]
    assert "0 run(s) done now" in fourth.stdout and "2 untrained control(s) measured now" in fourth.stdout
    assert (outdir / "map1-seed2" / "untrained.json").is_file() and not (outdir / "map1-seed2" / "network").exists()
    with open(outdir / "results.csv") as f:
        rows = {r["variant"]: r for r in csv.DictReader(f)}
    assert rows["map1"]["seeds"] == "1" and rows["map1"]["untrained_seeds"] == "3"
    assert float(rows["map1"]["untrained_ppl_full_std"]) > 0 and math.isfinite(float(rows["map1"]["ours_sep"]))
    assert float(rows["E"]["ours_sep"]) == pytest.approx(kept["ls_w"] + 0.5)
    assert float(rows["E"]["ours_sep_std"]) == pytest.approx(math.sqrt(0.5))


def test_finished_run_with_other_settings_is_refused(tmp_path):
    folder = tmp_path / "E-seed0"
    folder.mkdir()
    (folder / "ablation.json").write_text(json.dumps({"settings": {"train_args": ["--kimg", "1"]}, "seed": 0}))
    size = ablation.SIZES["quick"]
    with pytest.raises(UsageError, match="other settings"):
        ablation.run_variant(ablation.BY_NAME["E"], 0, size, tmp_path, shared=None, log=lambda s: None)
    assert ablation.collect(tmp_path, [ablation.BY_NAME["E"]], size) == {"E": []}


# ----------------------------------------------------------------------------------------------------------------
# Training on one machine, measuring on another; controls shared across training lengths


def _fake_measure(G, variant, settings, shared):
    """Stands in for the metrics (minutes of LPIPS and classifier training): values that tell runs apart."""
    fid = float(sum(p.double().abs().sum() for p in G.parameters()))
    return ({"fid": fid, f"ppl_{variant.space}full": 1.0, f"ppl_{variant.space}end": 1.0, "ls_z": 2.0, "ls_w": 2.0,
             "ls_one_class": 0}, {"fid": 0.0})


def test_study_size_overrides_kimg_and_batch():
    size, name = ablation.study_size(True)
    assert name == "quick" and size == ablation.SIZES["quick"]
    size, name = ablation.study_size(False, kimg=200, batch=64)
    assert name == "default, --kimg 200, --batch 64"
    args, default = size["train"], ablation.SIZES["default"]["train"]
    assert args[args.index("--kimg") + 1] == "200" and args[args.index("--batch") + 1] == "64"
    # a longer run ticks every 20th and checkpoints every 10th of its images; every other option is the size's
    assert args[args.index("--tick-kimg") + 1] == "10" and args[args.index("--snap-kimg") + 1] == "20"
    scaled = ("--kimg", "--batch", "--tick-kimg", "--snap-kimg")
    assert ([a for i, a in enumerate(args) if a not in scaled and args[i - 1] not in scaled] ==
            [a for i, a in enumerate(default) if a not in scaled and default[i - 1] not in scaled])
    assert default[default.index("--kimg") + 1] == "10"  # the preset itself is left alone
    short = ablation.study_size(False, kimg=5)[0]["train"]  # a shorter run keeps the size's tick and checkpoints
    assert short[short.index("--snap-kimg") + 1] == default[default.index("--snap-kimg") + 1]
    cfg = ablation.train_config(ablation.run_settings(ablation.BY_NAME["F"], 0, size))
    assert cfg.kimg == 200 and set(cfg.batch.values()) == {64}
    assert ablation.study_size(True, batch=8)[1] == "quick, --batch 8"


def test_study_size_overrides_lr():
    size, name = ablation.study_size(False, kimg=200, batch=16, lr=0.01)
    assert name == "default, --kimg 200, --batch 16, --lr 0.01"
    args = size["train"]
    assert args.count("--lr") == 1 and args[args.index("--lr") + 1] == "0.01"
    cfg = ablation.train_config(ablation.run_settings(ablation.BY_NAME["E"], 0, size))
    assert all(cfg.lr_at(r) == 0.01 for r in train.RESOLUTIONS)  # --lr: the rate at every resolution
    # another lr is another run, but the same untrained control (lr is schedule-only)
    same = ablation.run_settings(ablation.BY_NAME["E"], 0, ablation.study_size(False, kimg=200, batch=16)[0])
    assert ablation.run_settings(ablation.BY_NAME["E"], 0, size) != same
    assert ablation.control_settings(ablation.run_settings(ablation.BY_NAME["E"], 0, size)) == \
        ablation.control_settings(same)
    assert ablation.parse_args(["--lr", "0.01", "--train-only"]).lr == 0.01


def test_train_only_then_measure_without_training(tmp_path, monkeypatch):
    import train

    monkeypatch.setenv("STYLEGAN_CACHE", str(tmp_path / "cache"))
    outdir = tmp_path / "abl"
    command = ["--quick", "--outdir", str(outdir), "--variants", "map0"]
    ablation.main([*command, "--train-only"])
    folder = outdir / "map0-seed0"
    assert (folder / "train.json").is_file() and (folder / "network" / "model.safetensors").is_file()
    assert not [*outdir.glob("*/ablation.json"), *outdir.glob("*/untrained.json")]  # no measurement, no control
    assert not (outdir / "results.md").exists() and not (outdir / "results.csv").exists()
    trained = (folder / "train.json").read_text()
    assert not ablation.train_variant(ablation.BY_NAME["map0"], 0, ablation.study_size(True)[0], outdir)

    def no_training(*a, **k):
        raise AssertionError("trained again")

    monkeypatch.setattr(train, "train", no_training)
    monkeypatch.setattr(ablation, "measure", _fake_measure)
    monkeypatch.setattr(ablation.Shared, "classifier", lambda self, res: (None, {"holdout_accuracy": {"a": 1.0}}))
    ablation.main(command)
    assert (folder / "train.json").read_text() == trained
    rec = json.loads((folder / "ablation.json").read_text())
    assert rec["train"] == {k: v for k, v in json.loads(trained).items() if k != "settings"}
    assert (folder / "untrained.json").is_file() and (outdir / "results.md").is_file()
    # Another size in the same folder is refused, never trained on top of this one.
    with pytest.raises(UsageError, match="other settings"):
        ablation.train_variant(ablation.BY_NAME["map0"], 0, ablation.study_size(True, kimg=0.128)[0], outdir)


def test_jobs_train_runs_in_parallel_processes_and_a_failure_spares_the_others(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLEGAN_CACHE", str(tmp_path / "cache"))
    size = ablation.study_size(True)[0]
    blocked = tmp_path / "map0-seed0"  # a folder of another size: its run must fail, the other must still train
    blocked.mkdir()
    (blocked / "ablation.json").write_text(json.dumps({"settings": {"train_args": ["--kimg", "1"]}, "seed": 0}))
    variants = [ablation.BY_NAME["map0"], ablation.BY_NAME["trad"]]
    lines = []
    with pytest.raises(UsageError, match="other settings"):
        ablation.train_all(variants, 1, size, tmp_path, jobs=2, log=lines.append)
    assert any(line.startswith("map0-seed0 failed") for line in lines)
    trained = tmp_path / "trad-seed0"
    assert (trained / "network" / "model.safetensors").is_file()
    assert json.loads((trained / "train.json").read_text())["settings"] == ablation.run_settings(variants[1], 0, size)
    assert "kimg" in (trained / "train.log").read_text()  # the worker's progress bar went to its own log
    shutil.rmtree(blocked)
    shutil.rmtree(trained / "checkpoints")  # trained earlier: train.json decides, nothing is trained again
    assert ablation.train_all(variants[1:], 1, size, tmp_path, jobs=2) == ([], ["trad-seed0"])
    with pytest.raises(UsageError, match="--jobs trains in parallel and needs --train-only"):
        ablation.parse_args(["--jobs", "2"])


def test_records_from_before_the_lr_was_pinned_count_as_the_study_lr(tmp_path):
    """The study pins --lr (the cpu preset's moved from 0.005 to 0.01); records written before carry no --lr and
    were trained at 0.005: they stay this size's records, and one at another lr is refused."""
    size = ablation.study_size(False, kimg=256, batch=128)[0]
    v = ablation.BY_NAME["E"]
    settings = ablation.run_settings(v, 0, size)
    args = settings["train_args"]
    assert args[args.index("--lr") + 1] == ablation.STUDY_LR == "0.005"
    i = args.index("--lr")
    old = {**settings, "train_args": args[:i] + args[i + 2:]}  # as the GPU study of 2026-11-23 wrote them
    folder = tmp_path / "E-seed0"
    folder.mkdir()
    (folder / "train.json").write_text(json.dumps({"seconds": 1.0, "settings": old}))
    (folder / "ablation.json").write_text(json.dumps({"variant": "E", "seed": 0, "fid": 70.0, "settings": old}))
    assert not ablation.train_variant(v, 0, size, tmp_path)  # trained already: nothing trains again
    assert [r["fid"] for r in ablation.collect(tmp_path, [v], size)["E"]] == [70.0]
    other = {**settings, "train_args": args[:i] + ["--lr", "0.01"] + args[i + 2:]}
    (folder / "ablation.json").write_text(json.dumps({"variant": "E", "seed": 0, "fid": 70.0, "settings": other}))
    assert ablation.collect(tmp_path, [v], size) == {"E": []}
    with pytest.raises(UsageError, match="other settings"):
        ablation.train_variant(v, 0, size, tmp_path)


def test_schedule_only_options_leave_the_initial_network_alone():
    import torch
    import train

    settings = ablation.run_settings(ablation.BY_NAME["F"], 1, ablation.SIZES["quick"])
    G0 = train.initial_networks(ablation.train_config(settings))[0]
    cfg0 = ablation.train_config(settings)
    values = {"--lr": "0.01", "--workers": "2", "--batch": "8"}
    for flag in ablation.SCHEDULE_ONLY:
        args = list(settings["train_args"])
        if flag in args:
            args[args.index(flag) + 1] = values.get(flag, "0.5")
        else:
            args += [flag, values.get(flag, "0.5")]
        other = {**settings, "train_args": args}
        cfg = ablation.train_config(other)
        assert cfg != cfg0 and (cfg.network, cfg.seed) == (cfg0.network, cfg0.seed), flag
        assert ablation.control_settings(other) == ablation.control_settings(settings), flag
    G = train.initial_networks(cfg)[0]  # the last one: initial_networks reads cfg.network and cfg.seed only
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), G0.state_dict().values()))


def test_a_control_serves_every_training_length(tmp_path, monkeypatch):
    monkeypatch.setattr(ablation, "measure", _fake_measure)
    short, long = ablation.study_size(True)[0], ablation.study_size(True, kimg=0.128, batch=8)[0]
    F = ablation.BY_NAME["F"]
    rec, ran = ablation.run_control(F, 0, short, tmp_path, shared=ablation.Shared(short, "cpu"), log=lambda s: None)
    assert ran and "--kimg" not in rec["settings"]["train_args"]
    assert ablation.run_control(F, 0, long, tmp_path, shared=None, log=lambda s: None) == (rec, False)
    assert ablation.collect(tmp_path, [F], long)["F"][0]["untrained"] == rec
    # A record written with the full run settings (schedule included) is accepted under another schedule too.
    (tmp_path / "F-seed0" / "untrained.json").write_text(json.dumps({**rec, "settings": ablation.run_settings(
        F, 0, short)}))
    assert ablation.run_control(F, 0, long, tmp_path, shared=None, log=lambda s: None)[1] is False
    assert len(ablation.collect(tmp_path, [F], long)["F"]) == 1
    # Another network is another control: the mapping depth (map2's folder), the seed.
    for name, seed in (("map2", 0), ("F", 1)):
        folder = tmp_path / f"{name}-seed{seed}"
        folder.mkdir()
        (folder / "untrained.json").write_text((tmp_path / "F-seed0" / "untrained.json").read_text())
        with pytest.raises(UsageError, match="other settings"):
            ablation.run_control(ablation.BY_NAME[name], seed, long, tmp_path, shared=None, log=lambda s: None)
    assert ablation.collect(tmp_path, [ablation.BY_NAME["map2"]], long) == {"map2": []}


def test_variants_that_share_a_control_are_one_network(tmp_path, monkeypatch):
    # D, E and F are one network at initialisation (above): E's and F's controls take D's values, measured once.
    calls = []
    monkeypatch.setattr(ablation, "measure", lambda G, v, st, sh: (calls.append(v.name), _fake_measure(G, v, st, sh))[1])
    size = ablation.study_size(True)[0]
    sh = ablation.Shared(size, "cpu")
    D, E, F, trad = (ablation.BY_NAME[n] for n in ("D", "E", "F", "trad"))
    rec_d, ran = ablation.run_control(D, 0, size, tmp_path, shared=sh, log=lambda s: None)
    assert ran and calls == ["D"]
    for v in (E, F):
        rec, ran = ablation.run_control(v, 0, size, tmp_path, shared=sh, log=lambda s: None)
        assert ran and rec["measured_as"] == "D-seed0" and rec["variant"] == v.name
        assert {k: rec[k] for k in ("fid", "ppl_wfull", "ls_z")} == {k: rec_d[k] for k in ("fid", "ppl_wfull", "ls_z")}
        assert ablation.collect(tmp_path, [v], size)[v.name][0]["untrained"] == rec  # kept as the variant's own
    assert calls == ["D"]  # measured once
    ablation.run_control(D, 1, size, tmp_path, shared=sh, log=lambda s: None)  # another seed: another network
    ablation.run_control(trad, 0, size, tmp_path, shared=sh, log=lambda s: None)  # another architecture
    assert calls == ["D", "D", "trad"]
    # A copy is never the source of another copy, and a variant with no measured sibling is measured itself.
    import shutil
    shutil.rmtree(tmp_path / "D-seed0")
    ablation.run_control(ablation.BY_NAME["mix50"], 0, size, tmp_path, shared=sh, log=lambda s: None)
    assert calls == ["D", "D", "trad", "mix50"]
