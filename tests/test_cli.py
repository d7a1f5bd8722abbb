"""Every script's command line: one error style (one line, exit 2), and every numeric flag range-checked."""

import argparse
import subprocess
import sys

import pytest

import ablation
import bench
import common
import data
import demo
import faces
import generate
import metrics
import model
import project
import train
from conftest import ROOT

SCRIPTS = {"train.py": train.main, "generate.py": generate.main, "metrics.py": metrics.main, "demo.py": demo.main,
           "bench.py": bench.main, "ablation.py": ablation.main, "model.py": model.main,
           "project.py": project.main, "faces.py": faces.main, "data.py": data.main}

# Flags whose valid range includes 0 or negative numbers (everything else must refuse them).
ACCEPT_ZERO = {"--stable-kimg", "--gamma", "--w-avg-beta", "--style-mixing", "--freeze-d", "--mapping-layers", "--seed", "--workers", "--threads", "--zoom", "--port",
               "--trunc", "--trunc-cutoff"}  # cutoff 0: no layer truncated
ACCEPT_NEGATIVE = {"--trunc"}  # psi < 0 extrapolates away from the average face (paper Figure 8)


class Parsed(Exception):
    """Raised instead of running the script once its arguments parsed."""


@pytest.fixture
def parse_only(monkeypatch):
    def parse_args(self, args=None, namespace=None):
        raise Parsed(self, argparse.ArgumentParser.parse_args(self, args, namespace))

    monkeypatch.setattr(common.ArgumentParser, "parse_args", parse_args)


def numeric_flags(main) -> list[str]:
    with pytest.raises(Parsed) as e:
        main([])
    parser = e.value.args[0]
    assert isinstance(parser, common.ArgumentParser)  # the project's one-line error style
    flags = []
    for action in parser._actions:
        assert action.type not in (int, float), f"{action.option_strings} is not range-checked"
        if action.type is not None and action.option_strings:
            flags.append(action.option_strings[0])
    return flags


def outcome(main, argv) -> str:
    try:
        main(argv)
    except Parsed:
        return "accepted"
    except common.UsageError as e:
        assert "\n" not in str(e) and "--help" in str(e), str(e)
        return "refused"
    raise AssertionError(f"{argv} neither parsed nor refused")


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_numeric_flag_refuses_nan_inf_and_out_of_range(script, parse_only):
    main = SCRIPTS[script]
    flags = numeric_flags(main)
    for flag in flags:
        for value in ("nan", "inf", "-inf", "x"):
            assert outcome(main, [flag, value]) == "refused", (script, flag, value)
        assert outcome(main, [flag, "0"]) == ("accepted" if flag in ACCEPT_ZERO else "refused"), (script, flag)
        assert outcome(main, [flag, "-1"]) == ("accepted" if flag in ACCEPT_NEGATIVE else "refused"), (script, flag)
        assert outcome(main, [flag, "1"]) == "accepted" or flag in {"--resolution", "--start-res", "--num", "--metrics-num",
                                                                    "--samples"}, (script, flag)


def test_the_scripts_have_numeric_flags(parse_only):
    assert {"--batch", "--lr", "--kimg", "--gamma", "--seed"} <= set(numeric_flags(train.main))
    assert {"--batch", "--trunc", "--frames"} <= set(numeric_flags(generate.main))


@pytest.mark.parametrize("args, message", [
    (["--preset", "bogus"], "--preset: invalid choice: 'bogus'"),
    (["--batch", "0"], "--batch must be at least 1, not 0"),
    (["--lr", "nan"], "--lr must be a finite number, not nan"),
    (["--kimg", "-5"], "--kimg must be above 0, not -5"),
])
def test_train_usage_mistakes_are_one_line(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "train.py", "--outdir", str(tmp_path), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith(f"error: {message}") and "(see python train.py --help)" in proc.stderr
    assert not any(tmp_path.iterdir())  # nothing was started


def test_demo_bad_port_is_one_line():
    proc = subprocess.run([sys.executable, "demo.py", "--port", "70000"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == \
        "error: --port must be from 0 to 65535, not 70000 (see python demo.py --help)"


def test_faces_bad_resolution_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "faces.py", "--grid", str(tmp_path / "grid.png"), "--res", "8"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == \
        "error: synthetic faces render at 16 to 256 pixels, got 8: pick a resolution in that range"
    assert not any(tmp_path.iterdir())
