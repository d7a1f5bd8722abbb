"""How the project is put together: every module imports, every name imported from a project module exists there,
the project's own imports sit at the top of each file and form layers without a circle, and every training option
has one home (a TrainConfig field that the command line and the presets are built from).

    python tests/test_structure.py      # the table of the closing notes: lines, longest function, imports
"""

import argparse
import ast
import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MODULES = sorted(p.stem for p in ROOT.glob("*.py"))
SOURCES = sorted(ROOT.glob("*.py")) + sorted((ROOT / "tests").glob("*.py"))


def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def project_imports(path: Path, modules=MODULES, parsed: ast.Module | None = None):
    """(node, module, names) of every import of a project module in the file (parsed: its tree, if at hand)."""
    for node in ast.walk(parsed or tree(path)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] in modules:
            yield node, node.module.split(".")[0], [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in modules:
                    yield node, a.name.split(".")[0], []


def in_function_imports(path: Path, modules=MODULES) -> list[int]:
    """Line numbers of imports of project modules that are not at the file's top level."""
    parsed = tree(path)
    top = {id(n) for n in parsed.body}
    return [node.lineno for node, _, _ in project_imports(path, modules, parsed) if id(node) not in top]


@pytest.mark.parametrize("module", MODULES)
def test_every_module_imports(module):
    assert importlib.import_module(module).__name__ == module


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_imported_name_exists(path):
    for node, module, names in project_imports(path):
        mod = importlib.import_module(module)
        for name in names:
            assert hasattr(mod, name), f"{path.name}:{node.lineno} imports {name} from {module}, which has none"


@pytest.mark.parametrize("path", sorted(ROOT.glob("*.py")), ids=lambda p: p.name)
def test_project_imports_sit_at_the_top_and_are_public(path):
    assert in_function_imports(path) == [], f"{path.name}: imports of project modules inside functions"
    for node, module, names in project_imports(path):
        private = [n for n in names if n.startswith("_") and n != "__version__"]
        assert not private, f"{path.name}:{node.lineno} imports private {private} from {module}"
    calls = [n for n in ast.walk(tree(path)) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "__import__"]
    assert not calls, f"{path.name}: __import__"
    text = path.read_text()
    assert "__name__ ==" not in text.replace('if __name__ == "__main__":', ""), f"{path.name} matches a type by name"


def test_no_import_circle():
    edges = {m: {mod for _, mod, _ in project_imports(ROOT / f"{m}.py")} - {m} for m in MODULES}
    state = {}

    def visit(m, path):
        if state.get(m) == "open":
            raise AssertionError(f"import circle: {' -> '.join(path + [m])}")
        if state.get(m) != "done":
            state[m] = "open"
            for n in sorted(edges[m]):
                visit(n, path + [m])
            state[m] = "done"

    for m in MODULES:
        visit(m, [])
    assert not edges["common"] and edges["ops"] <= {"common"}  # the bottom layer
    assert "official" not in edges["model"] and "model" in edges["official"]  # the loader calls no layer above it


def test_readme_layout_lists_every_file_in_layers():
    import re

    text = (ROOT / "README.md").read_text()
    table = text[text.index("## Layout"):text.index("## ", text.index("## Layout") + 3)]
    order = re.findall(r"^\| `(\w+)\.py` \|", table, re.M)
    assert sorted(order) == MODULES
    for i, m in enumerate(order):
        below = {mod for _, mod, _ in project_imports(ROOT / f"{m}.py")} - set(order[:i + 1])
        assert not below, f"{m}.py imports {below}, listed after it in the README's layout"


# ----------------------------------------------------------------------------------------------------------------
# One home per training option


def test_every_train_config_field_is_set_from_the_command_line():
    import train

    values = {  # a value for each option, unlike its default and every preset's
        "preset": "ffhq256", "data": "my/images", "kimg": 7.0, "start_res": 16, "fade_kimg": 3.0, "stable_kimg": 2.0,
        "batch": 6, "lr": 0.02, "base_lr": 0.03, "loss": "wgangp", "gamma": 4.0, "r1_interval": 3,
        "r1_scaling": "plain", "style_mixing": 0.3, "ema_kimg": 5.0, "ema_rampup": 0.2, "w_avg_beta": 0.9,
        "mirror": False, "mixed_precision": "fp16", "seed": 11, "tick_kimg": 1.0, "snap_kimg": 9.0,
        "keep_checkpoints": 5, "workers": 1, "max_images": 77, "pad": True, "cache_dir": "/tmp/c", "stream": True,
        "cpu": True, "channels_last": False, "init": "some/run", "diffaugment": "color", "freeze_d": 1,
        "compile": True, "tracker": "none", "metrics": "fid2k,ppl_wend", "metrics_num": 16, "batch_gpu": 4,
        "cond": True,
    }
    options = [f for f in train.fields(train.TrainConfig) if "help" in f.metadata]
    assert {f.name for f in options} == set(values)  # a new field needs a value here, and so a test
    assert {f.name for f in train.fields(train.TrainConfig)} - set(values) == {"network"}  # set by NETWORK_OPTIONS
    argv = []
    for name, v in values.items():
        flag = "--" + name.replace("_", "-")
        argv += ([flag] if v is True else [f"--no-{name.replace('_', '-')}"] if v is False else [flag, str(v)])
    args = train.parse_args(argv)
    given = {f.name: getattr(args, f.name) for f in options}
    assert given == {k: v for k, v in values.items()}, "parsed"
    cfg = train.make_config(argparse.Namespace(**{**vars(args), "init": ""}))  # the init's source is load_init's
    for name, v in values.items():
        expect = "" if name == "init" else train.every_resolution(v) if name in ("batch", "lr") else v
        assert getattr(cfg, name) == expect, name


def test_every_network_option_is_set_from_the_command_line():
    import train

    cfg = train.make_config(train.parse_args(["--resolution", "64", "--mapping-layers", "2", "--channel-base", "512",
                                              "--channel-max", "64", "--architecture", "traditional", "--noise"]))
    assert set(train.NETWORK_OPTIONS) == {"resolution", "mapping_layers", "channel_base", "channel_max",
                                          "architecture", "use_noise"}
    assert {k: cfg.network[k] for k in train.NETWORK_OPTIONS} == dict(
        resolution=64, mapping_layers=2, channel_base=512, channel_max=64, architecture="traditional", use_noise=True)


def test_presets_are_field_values_applied_in_one_place():
    import train

    names = {f.name for f in train.fields(train.TrainConfig)}
    preset_field = next(f for f in train.fields(train.TrainConfig) if f.name == "preset")
    assert sorted(preset_field.metadata["choices"]) == sorted(train.TRAIN_PRESETS)
    for name, values in train.TRAIN_PRESETS.items():
        assert set(values) <= names, (name, set(values) - names)
        cfg = train.preset_config(name)
        assert all(getattr(cfg, k) == v for k, v in values.items()) and cfg.preset == name
        assert train.make_config(train.parse_args(["--preset", name])).kimg == cfg.kimg


# ----------------------------------------------------------------------------------------------------------------
# The table (python tests/test_structure.py)


def measure(root: Path) -> list[tuple]:
    """Per file of `root` (a checkout): lines, its longest function, imports inside functions (all, project's)."""
    modules, rows = [p.stem for p in root.glob("*.py")], []
    for path in sorted(root.glob("*.py")):
        t = ast.parse(path.read_text())
        funcs = [(n.end_lineno - n.lineno + 1, n.name) for n in ast.walk(t)
                 if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        top = {id(n) for n in t.body}
        inner = sum(isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in top for n in ast.walk(t))
        rows.append((path.name, len(path.read_text().splitlines()), *max(funcs, default=(0, "-")), inner,
                     len(in_function_imports(path, modules))))
    return rows


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT
    print(f"{'file':<16}{'lines':>6}  {'longest function (lines)':<36}{'imports in functions (project)':>30}")
    for name, lines, longest, fname, inner, project in measure(root):
        print(f"{name:<16}{lines:>6}  {f'{fname} ({longest})':<36}{f'{inner} ({project})':>30}")
