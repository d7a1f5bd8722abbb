"""Writes pickles in the layout of NVIDIA's karras2019stylegan-*.pkl files, for the tests of official.py.

The variable names and shapes here are derived from the official build functions (G_style, G_mapping, G_synthesis,
D_basic in NVIDIA's training/networks_stylegan.py) and their static_kwargs, independently of our networks, so a
converted network that loads checks the converter's configuration inference and name mapping.
"""

from __future__ import annotations

import contextlib
import pickle
import sys
import types

import numpy as np

# A harmless stand-in for the official source code that real files embed; tests replace it to prove it never runs.
BUILD_SRC = "# the official build source is omitted from this test fixture\n"

G_STYLE_ARGS = ("truncation_psi", "truncation_cutoff", "truncation_psi_val", "truncation_cutoff_val",
                "dlatent_avg_beta", "style_mixing_prob")  # consumed by G_style, not passed on to its components


class Network:
    """Pickles as dnnlib.tflib.network.Network does: NEWOBJ of the class, then BUILD with the state dict."""

    def __init__(self, state: dict):
        self.state = state

    def __getstate__(self):
        return self.state


Network.__module__ = "dnnlib.tflib.network"


@contextlib.contextmanager
def _official_module_names():
    """Lets pickle find Network under the official module name while a file is written."""
    names = ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network")
    saved = {n: sys.modules.get(n) for n in names}
    for n in names:
        sys.modules[n] = types.ModuleType(n)
    sys.modules["dnnlib.tflib.network"].Network = Network
    try:
        yield
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def _state(name: str, func: str, kwargs: dict, variables: dict, components: dict | None = None,
           build_src: str = BUILD_SRC) -> dict:
    return {"version": 3, "name": name, "static_kwargs": dict(kwargs), "components": components or {},
            "build_module_src": build_src, "build_func_name": func, "variables": list(variables.items())}


def generator_network(name: str, kwargs: dict, variables: dict, build_src: str = BUILD_SRC) -> Network:
    """A G_style Network from its variables as Network.vars names them (own, then 'G_mapping/...', 'G_synthesis/...')."""
    sub = {k: v for k, v in kwargs.items() if k not in G_STYLE_ARGS}
    parts = {p: {k[len(p) + 1:]: v for k, v in variables.items() if k.startswith(p + "/")}
             for p in ("G_mapping", "G_synthesis")}
    own = {k: v for k, v in variables.items() if "/" not in k}
    syn = Network(_state("G_synthesis", "G_synthesis", sub, parts["G_synthesis"], build_src=build_src))
    num_layers = sum(1 for k in parts["G_synthesis"] if k.startswith("ToRGB_lod") and k.endswith("bias")) * 2
    mapping = Network(_state("G_mapping", "G_mapping", {"dlatent_broadcast": num_layers, **sub},
                             parts["G_mapping"], build_src=build_src))
    return Network(_state(name, "G_style", kwargs, own, {"synthesis": syn, "mapping": mapping}, build_src))


def discriminator_network(kwargs: dict, variables: dict, build_src: str = BUILD_SRC) -> Network:
    return Network(_state("D", "D_basic", kwargs, variables, build_src=build_src))


def write_pkl(path, G: Network, D: Network, Gs: Network, protocol: int = 4) -> None:
    """Protocol 4 by default, as the official files (Python 3.6's HIGHEST_PROTOCOL)."""
    with _official_module_names(), open(path, "wb") as f:
        pickle.dump((G, D, Gs), f, protocol=protocol)


def _nf(kw: dict):
    base, mx = kw.get("fmap_base", 8192), kw.get("fmap_max", 512)
    return lambda stage: min(int(base / 2.0**stage), mx)


def generator_shapes(kw: dict) -> dict[str, tuple]:
    """Every variable of G_style (with its components) and its shape, from the official build functions."""
    nf, log2 = _nf(kw), int(np.log2(kw.get("resolution", 1024)))
    lat, dlat = kw.get("latent_size", 512), kw.get("dlatent_size", 512)
    layers, fmaps, labels = kw.get("mapping_layers", 8), kw.get("mapping_fmaps", 512), kw.get("label_size", 0)
    shapes = {"lod": (), "dlatent_avg": (dlat,)}
    if labels:  # the official G_mapping embeds the labels to dlatent_size and concatenates them after z
        shapes["G_mapping/LabelConcat/weight"] = (labels, dlat)
    for i in range(layers):
        cin, cout = (lat + (dlat if labels else 0)) if i == 0 else fmaps, dlat if i == layers - 1 else fmaps
        shapes[f"G_mapping/Dense{i}/weight"], shapes[f"G_mapping/Dense{i}/bias"] = (cin, cout), (cout,)
    s = "G_synthesis/"
    shapes[s + "lod"] = ()
    for i in range(2 * log2 - 2):
        r = 2 ** (i // 2 + 2)
        shapes[f"{s}noise{i}"] = (1, 1, r, r)

    def epilogue(scope, c):
        shapes.update({f"{scope}/Noise/weight": (c,), f"{scope}/bias": (c,), f"{scope}/StyleMod/weight": (dlat, 2 * c),
                       f"{scope}/StyleMod/bias": (2 * c,)})

    shapes[s + "4x4/Const/const"] = (1, nf(1), 4, 4)
    epilogue(s + "4x4/Const", nf(1))
    shapes[s + "4x4/Conv/weight"] = (3, 3, nf(1), nf(1))
    epilogue(s + "4x4/Conv", nf(1))
    for res in range(3, log2 + 1):
        r = 2**res
        shapes[f"{s}{r}x{r}/Conv0_up/weight"] = (3, 3, nf(res - 2), nf(res - 1))
        epilogue(f"{s}{r}x{r}/Conv0_up", nf(res - 1))
        shapes[f"{s}{r}x{r}/Conv1/weight"] = (3, 3, nf(res - 1), nf(res - 1))
        epilogue(f"{s}{r}x{r}/Conv1", nf(res - 1))
    for res in range(2, log2 + 1):
        shapes[f"{s}ToRGB_lod{log2 - res}/weight"] = (1, 1, nf(res - 1), kw.get("num_channels", 3))
        shapes[f"{s}ToRGB_lod{log2 - res}/bias"] = (kw.get("num_channels", 3),)
    return shapes


def discriminator_shapes(kw: dict) -> dict[str, tuple]:
    nf, log2 = _nf(kw), int(np.log2(kw.get("resolution", 32)))
    shapes = {"lod": ()}
    for res in range(log2, 1, -1):
        r = 2**res
        shapes[f"FromRGB_lod{log2 - res}/weight"] = (1, 1, kw.get("num_channels", 1), nf(res - 1))
        shapes[f"FromRGB_lod{log2 - res}/bias"] = (nf(res - 1),)
        if res >= 3:
            shapes.update({f"{r}x{r}/Conv0/weight": (3, 3, nf(res - 1), nf(res - 1)), f"{r}x{r}/Conv0/bias": (nf(res - 1),),
                           f"{r}x{r}/Conv1_down/weight": (3, 3, nf(res - 1), nf(res - 2)),
                           f"{r}x{r}/Conv1_down/bias": (nf(res - 2),)})
    shapes.update({"4x4/Conv/weight": (3, 3, nf(1) + 1, nf(1)), "4x4/Conv/bias": (nf(1),),
                   "4x4/Dense0/weight": (nf(1) * 16, nf(0)), "4x4/Dense0/bias": (nf(0),),
                   "4x4/Dense1/weight": (nf(0), max(kw.get("label_size", 0), 1)),
                   "4x4/Dense1/bias": (max(kw.get("label_size", 0), 1),)})
    return shapes


def random_variables(shapes: dict[str, tuple], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random float32 values (the lods 0, as in a finished network)."""
    return {k: np.float32(0) if k.endswith("lod") else rng.standard_normal(s, dtype=np.float32)
            for k, s in shapes.items()}


def write_random_pkl(path, kw: dict, seed: int = 0, build_src: str = BUILD_SRC, gs_differs: bool = False,
                     protocol: int = 4) -> None:
    """An official-layout pickle of randomly initialised networks configured by static_kwargs `kw`."""
    rng = np.random.default_rng(seed)
    g_shapes, d_shapes = generator_shapes(kw), discriminator_shapes(kw)
    g = random_variables(g_shapes, rng)
    gs = {k: v * np.float32(0.5) for k, v in g.items()} if gs_differs else g
    d = random_variables(d_shapes, rng)
    # the file holds exactly the official variables, each in its official shape (lods are scalars)
    for values, shapes in ((g, g_shapes), (gs, g_shapes), (d, d_shapes)):
        assert values.keys() == shapes.keys()
        assert all(np.shape(values[k]) == (() if k.endswith("lod") else tuple(shapes[k])) for k in shapes)
    write_pkl(path, generator_network("G", kw, g, build_src), discriminator_network(kw, d, build_src),
              generator_network("Gs", kw, gs, build_src), protocol)
