"""NVIDIA's official StyleGAN networks (`karras2019stylegan-*.pkl`): read without TensorFlow, convert to our format.

An official pickle is a tuple (G, D, Gs) of `dnnlib.tflib.network.Network` objects: G the training generator, D the
discriminator, Gs the moving average of G that the paper's images come from. Each unpickles through `__setstate__`
with a plain dict: `static_kwargs` (the build function's arguments), `components` (G's `mapping` and `synthesis`,
Networks themselves), `build_module_src` (the official source code, which the official loader executes) and
`variables`, a list of (name, numpy array).

Unpickling can run any code, so `_RestrictedUnpickler` resolves only the few names such a file needs: the Network
class (mapped to `_NetworkState`, a plain holder of that dict), EasyDict, numpy's array and scalar reconstruction
and OrderedDict. Anything else is refused before it runs, and `build_module_src` is never executed. The
configuration comes from `static_kwargs` and the variables' shapes (never the file name), and every variable is
mapped by name to our state dicts:

    G_mapping/Dense{i}/weight [in, out]           mapping.layers.{i}.weight (transposed)
    G_mapping/LabelConcat/weight [labels, w]      mapping.embed (conditional networks: label_size > 0)
    G_synthesis/{r}x{r}/Conv0_up/weight [3,3,i,o] synthesis.blocks.b{r}.conv0.weight (o, i, 3, 3)
    G_synthesis/{r}x{r}/Conv0_up/StyleMod/...     synthesis.blocks.b{r}.epi0.adain.affine...
    G_synthesis/noise{i}                          the fixed noise of style layer i (noise_mode='const')
    G_synthesis/ToRGB_lod{l}                      synthesis.torgb.b{R / 2**l}
    dlatent_avg                                   w_avg
    D: FromRGB_lod{l}, {r}x{r}/Conv0, Conv1_down, 4x4/Conv, Dense0, Dense1 -> fromrgb, blocks, conv, fc, out
       (a conditional D's Dense1 has one output per label)

    python official.py karras2019stylegan-ffhq-1024x1024.pkl --out networks/ffhq1024   # convert once
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import pickle
import re
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from common import CONFIG_NAME, WEIGHTS_NAME, ArgumentParser, NetworkError, UsageError, atomic_write, run_cli
from model import (FORMAT_VERSION, Discriminator, Generator, NetworkConfig, load_network, read_network_meta,
                   save_network)

G_NAME, D_NAME = "G.safetensors", "D.safetensors"  # beside model.safetensors (Gs) in a converted folder


# ----------------------------------------------------------------------------------------------------------------
# Reading the pickle


class _NetworkState:
    """Stands in for dnnlib.tflib.network.Network: keeps the pickled state dict and runs nothing."""

    def __setstate__(self, state):
        self.state = state


class _EasyDict(dict):
    """Stands in for dnnlib.util.EasyDict (a dict with attribute access): a plain dict is all we need."""


def _numpy_core(name: str):
    try:
        return getattr(np._core.multiarray, name)  # numpy >= 2
    except AttributeError:
        return getattr(np.core.multiarray, name)


# Everything an official pickle references, and nothing else. NVIDIA's 2019 files were written with numpy 1, whose
# arrays name `numpy.core.multiarray`; numpy 2 writes `numpy._core.multiarray`.
_ALLOWED = {
    ("dnnlib.tflib.network", "Network"): _NetworkState,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib", "EasyDict"): _EasyDict,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("collections", "OrderedDict"): dict,
    **{(core, name): _numpy_core(name) for core in ("numpy.core.multiarray", "numpy._core.multiarray")
       for name in ("_reconstruct", "scalar")},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        hint = ""
        if module.split(".")[0] in ("torch_utils", "torch", "legacy"):
            hint = " (a PyTorch pickle, e.g. StyleGAN2-ADA's, which is not supported)"
        raise pickle.UnpicklingError(f"it references {module}.{name}{hint}, which an official StyleGAN pickle never "
                                     "does; refusing to load it (unpickling can run code)")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("it uses persistent ids, which an official StyleGAN pickle never does")


def read_pkl(path: str | Path) -> tuple[dict, dict, dict]:
    """The (G, D, Gs) networks of an official pickle, each as its state dict, with nothing executed."""
    path = Path(path)
    if not path.is_file():
        raise NetworkError(f"no file at {path}: download the official .pkl first (see the README)")
    data = path.read_bytes()
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as e:
        msg = str(e)
        if msg.startswith("it "):
            raise NetworkError(f"{path}: {msg}") from None
        raise NetworkError(f"{path} is not a readable pickle ({msg}); download it again") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError) as e:
        kind = "truncated" if isinstance(e, EOFError) else "damaged"
        raise NetworkError(f"{path} is {kind} or not a pickle ({type(e).__name__}); download it again") from None
    if not (isinstance(obj, tuple) and len(obj) == 3 and all(isinstance(n, _NetworkState) for n in obj)):
        raise NetworkError(f"{path} is a pickle but not an official StyleGAN network file (expected a tuple "
                           "(G, D, Gs) of dnnlib networks, as in karras2019stylegan-*.pkl)")
    return tuple(_check_state(path, n.state) for n in obj)


def _check_state(path: Path, state) -> dict:
    if not isinstance(state, dict) or not {"version", "static_kwargs", "variables"} <= set(state):
        raise NetworkError(f"{path} holds a dnnlib network without the fields of an official pickle; download it again")
    if state["version"] == 4 or state.get("build_func_name") == "G_main" or any(
            "mod_weight" in str(v[0]) for v in state["variables"]):
        raise NetworkError(f"{path} is a StyleGAN2 pickle, which is not supported: only StyleGAN (2019) networks "
                           "such as karras2019stylegan-ffhq-1024x1024.pkl load here")
    if state["version"] not in (2, 3):
        raise NetworkError(f"{path} holds a dnnlib network of version {state['version']}, which is not supported")
    for c in state.get("components", {}).values():
        if not isinstance(c, _NetworkState):
            raise NetworkError(f"{path} holds a network component that is not a dnnlib network; download it again")
        _check_state(path, c.state)
    return state


def _variables(path: Path, state: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """A network's variables and its components', by local name (as Network.vars names them)."""
    out = {}
    for item in state["variables"]:
        name, value = item
        value = np.asarray(value)
        if not isinstance(name, str) or value.dtype.kind != "f":
            raise NetworkError(f"{path}: variable {prefix}{name} is not a float array; download the file again")
        out[prefix + name] = value.astype(np.float32, copy=False)
    for comp in state.get("components", {}).values():
        out.update(_variables(path, comp.state, prefix + comp.state["name"] + "/"))
    return out


# ----------------------------------------------------------------------------------------------------------------
# The configuration


def _kwargs(state: dict) -> dict:
    kw = dict(state["static_kwargs"])
    for comp in state.get("components", {}).values():  # G_style passes its kwargs on to both components
        kw = {**dict(comp.state["static_kwargs"]), **kw}
    return kw


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _unsupported(path: Path, what: str) -> NetworkError:
    return NetworkError(f"{path}: {what} is not supported (only the paper's style-based and traditional networks "
                        "convert)")


def infer_config(path: Path, g_state: dict, d_state: dict) -> NetworkConfig:
    """Our NetworkConfig for an official (G or Gs, D) pair, from their static_kwargs and variable shapes."""
    kw, dkw = _kwargs(g_state), dict(d_state["static_kwargs"])
    if g_state.get("build_func_name") != "G_style" or d_state.get("build_func_name") != "D_basic":
        raise _unsupported(path, f"a ({g_state.get('build_func_name')}, {d_state.get('build_func_name')}) network")
    v = _variables(path, g_state)
    # Options our networks fix to the official defaults.
    for key, default in (("nonlinearity", "lrelu"), ("mapping_nonlinearity", "lrelu"), ("use_wscale", True),
                         ("normalize_latents", True), ("fmap_decay", 1.0), ("blur_filter", [1, 2, 1])):
        if _plain(kw.get(key, default)) != default:
            raise _unsupported(path, f"{key}={kw[key]!r}")
    for key, default in (("nonlinearity", "lrelu"), ("use_wscale", True), ("fmap_decay", 1.0),
                         ("blur_filter", [1, 2, 1]), ("mbstd_num_features", 1)):
        if _plain(dkw.get(key, default)) != default:
            raise _unsupported(path, f"a discriminator with {key}={dkw[key]!r}")
    switches = tuple(bool(kw.get(k, d)) for k, d in (("use_styles", True), ("const_input_layer", True),
                                                     ("use_pixel_norm", False), ("use_instance_norm", True)))
    archs = {(True, True, False, True): "style", (False, False, True, False): "traditional"}
    if switches not in archs:
        raise _unsupported(path, "the mix of use_styles, const_input_layer, use_pixel_norm and use_instance_norm "
                           f"{switches}")
    needed = ["dlatent_avg", "G_synthesis/ToRGB_lod0/bias"]
    if not all(k in v for k in needed):
        raise NetworkError(f"{path}: the generator lacks {[k for k in needed if k not in v][0]}; it is not a "
                           "complete official network")
    torgb = sorted(int(m.group(1)) for k in v if (m := re.fullmatch(r"G_synthesis/ToRGB_lod(\d+)/bias", k)))
    if not torgb or torgb != list(range(len(torgb))):
        raise NetworkError(f"{path}: the generator has no complete set of ToRGB layers; download the file again")
    resolution = 2 ** (len(torgb) + 1)
    if kw.get("resolution", 1024) != resolution or dkw.get("resolution", 32) != resolution:
        raise NetworkError(f"{path}: static_kwargs say resolution {kw.get('resolution')} (D "
                           f"{dkw.get('resolution')}) but the generator has {len(torgb)} ToRGB layers")
    dense = sorted(int(m.group(1)) for k in v if (m := re.fullmatch(r"G_mapping/Dense(\d+)/weight", k)))
    if dense != list(range(len(dense))):
        raise NetworkError(f"{path}: the mapping network's layers are not Dense0..Dense{len(dense) - 1}; it is not "
                           "a complete official network")
    w_dim = v["dlatent_avg"].shape[0]
    label_size = v["G_mapping/LabelConcat/weight"].shape[0] if "G_mapping/LabelConcat/weight" in v else 0
    if int(kw.get("label_size", 0)) != label_size or int(dkw.get("label_size", 0)) != label_size:
        raise NetworkError(f"{path}: static_kwargs say label_size {kw.get('label_size', 0)} (D "
                           f"{dkw.get('label_size', 0)}) but the mapping network embeds {label_size} labels")
    # a conditional mapping's first layer takes z and the w_dim-wide label embedding
    z_dim = v["G_mapping/Dense0/weight"].shape[0] - (w_dim if label_size else 0) if dense else w_dim
    fmap = {k: (kw.get(k, d), dkw.get(k, d)) for k, d in (("fmap_base", 8192), ("fmap_max", 512))}
    if any(g != d for g, d in fmap.values()) or kw.get("num_channels", 3) != dkw.get("num_channels", 1):
        raise _unsupported(path, "a discriminator whose widths or channels differ from the generator's")
    mbstd = dkw.get("mbstd_group_size", 4)
    if mbstd < 2:
        raise _unsupported(path, f"a discriminator with mbstd_group_size={mbstd}")
    psi, cutoff = kw.get("truncation_psi", 0.7), kw.get("truncation_cutoff", 8)
    truncates = psi is not None and cutoff is not None and psi != 1 and cutoff > 0
    try:
        return NetworkConfig(
            architecture=archs[switches],
            resolution=resolution,
            img_channels=v["G_synthesis/ToRGB_lod0/bias"].shape[0],
            z_dim=z_dim,
            w_dim=w_dim,
            mapping_layers=len(dense),
            mapping_width=v["G_mapping/Dense0/bias"].shape[0] if len(dense) > 1 else kw.get("mapping_fmaps", 512),
            mapping_lr_mul=float(kw.get("mapping_lrmul", 0.01)),
            channel_base=2 * int(fmap["fmap_base"][0]),  # official nf(stage) = fmap_base / 2**stage at 2**(stage+1)
            channel_max=int(fmap["fmap_max"][0]),
            use_noise="G_synthesis/noise0" in v,
            mbstd_group=int(mbstd),
            default_psi=float(psi) if truncates else 1.0,  # G_style's defaults: psi 0.7 on the first 8 layers
            default_cutoff=int(cutoff) if truncates else None,
            label_size=label_size,
        ).validate()
    except ValueError as e:
        raise NetworkError(f"{path}: its configuration does not fit our networks ({e})") from None


def _fused(kw: dict, res: int) -> bool:
    """Whether the official generator ran the up-sampling convolution of block `res` fused: 'auto' means from
    128x128 up. (Our fused_min_res only picks the faster of two equal paths, so it keeps its default.)"""
    fused = kw.get("fused_scale", "auto")
    return res >= 128 if fused == "auto" else bool(fused)


# ----------------------------------------------------------------------------------------------------------------
# Mapping the variables


def _dense(a: np.ndarray) -> np.ndarray:
    return a.T  # [in, out] -> (out, in)


def _conv(a: np.ndarray) -> np.ndarray:
    return a.transpose(3, 2, 0, 1)  # [k, k, in, out] -> (out, in, k, k)


def _conv_up_fused(a: np.ndarray) -> np.ndarray:
    # The official fused up-sampling is conv2d_transpose with the kernel as stored, which equals nearest up-sampling
    # then a convolution with the spatially flipped kernel: our layers compute the latter.
    return _conv(a)[:, :, ::-1, ::-1]


def _same(a: np.ndarray) -> np.ndarray:
    return a


def generator_names(cfg: NetworkConfig, kw: dict) -> dict[str, tuple[str, object]]:
    """{our state-dict key: (official variable name, transform)} for a generator."""
    names = {"w_avg": ("dlatent_avg", _same)}
    for i in range(cfg.mapping_layers):
        names[f"mapping.layers.{i}.weight"] = (f"G_mapping/Dense{i}/weight", _dense)
        names[f"mapping.layers.{i}.bias"] = (f"G_mapping/Dense{i}/bias", _same)
    if cfg.label_size:
        names["mapping.embed"] = ("G_mapping/LabelConcat/weight", _same)  # [labels, w_dim], used as labels @ weight
    style = cfg.architecture == "style"
    for r in cfg.resolutions:
        ours, theirs = f"synthesis.blocks.b{r}", f"G_synthesis/{r}x{r}"
        if r == 4:
            layer0 = f"{theirs}/Const" if style else f"{theirs}/Dense"
            names[f"{ours}.conv0.const" if style else f"{ours}.conv0.dense.weight"] = (
                f"{layer0}/const" if style else f"{layer0}/weight", _same if style else _dense)
            layer1 = f"{theirs}/Conv"
        else:
            layer0, layer1 = f"{theirs}/Conv0_up", f"{theirs}/Conv1"
            names[f"{ours}.conv0.weight"] = (f"{layer0}/weight", _conv_up_fused if _fused(kw, r) else _conv)
        names[f"{ours}.conv1.weight"] = (f"{layer1}/weight", _conv)
        first = 2 * int(math.log2(r)) - 4
        for j, layer in enumerate((layer0, layer1)):
            epi = f"{ours}.epi{j}"
            names[f"{epi}.bias"] = (f"{layer}/bias", _same)
            if cfg.use_noise:
                names[f"{epi}.noise.weight"] = (f"{layer}/Noise/weight", _same)
                names[f"{epi}.noise_const"] = (f"G_synthesis/noise{first + j}", _same)
            if style:
                names[f"{epi}.adain.affine.weight"] = (f"{layer}/StyleMod/weight", _dense)
                names[f"{epi}.adain.affine.bias"] = (f"{layer}/StyleMod/bias", _same)
        lod = cfg.log2_res - int(math.log2(r))
        names[f"synthesis.torgb.b{r}.conv.weight"] = (f"G_synthesis/ToRGB_lod{lod}/weight", _conv)
        names[f"synthesis.torgb.b{r}.conv.bias"] = (f"G_synthesis/ToRGB_lod{lod}/bias", _same)
    return names


def discriminator_names(cfg: NetworkConfig) -> dict[str, tuple[str, object]]:
    """{our state-dict key: (official variable name, transform)} for a discriminator. The official fused
    down-sampling is a strided convolution with the kernel as stored, which our layers compute either way."""
    names = {}
    for r in cfg.resolutions:
        lod = cfg.log2_res - int(math.log2(r))
        names[f"fromrgb.b{r}.weight"] = (f"FromRGB_lod{lod}/weight", _conv)
        names[f"fromrgb.b{r}.bias"] = (f"FromRGB_lod{lod}/bias", _same)
        if r > 4:
            for ours, theirs in (("conv0", "Conv0"), ("conv1", "Conv1_down")):
                names[f"blocks.b{r}.{ours}.weight"] = (f"{r}x{r}/{theirs}/weight", _conv)
                names[f"blocks.b{r}.{ours}.bias"] = (f"{r}x{r}/{theirs}/bias", _same)
    for ours, theirs, f in (("conv", "4x4/Conv", _conv), ("fc", "4x4/Dense0", _dense), ("out", "4x4/Dense1", _dense)):
        names[f"{ours}.weight"] = (f"{theirs}/weight", f)
        names[f"{ours}.bias"] = (f"{theirs}/bias", _same)
    return names


def _state_dict(path: Path, what: str, variables: dict, names: dict) -> dict:
    """Our state dict from the official variables, every one of which must be used (the `lod`s must be 0)."""
    lods = [k for k in variables if k == "lod" or k.endswith("/lod")]
    for k in lods:
        if float(variables[k]) != 0:
            raise NetworkError(f"{path}: {what} was saved in the middle of progressive growing ({k} = "
                               f"{float(variables[k]):g}); convert a finished network")
    used = {theirs for theirs, _ in names.values()}
    extra = sorted(set(variables) - used - set(lods))
    missing = sorted(used - set(variables))
    if extra or missing:
        raise NetworkError(f"{path}: {what} has {len(missing)} missing and {len(extra)} unexpected variables (e.g. "
                           f"{(missing + extra)[0]}); it does not fit the configuration read from the file")
    return {ours: torch.from_numpy(np.ascontiguousarray(transform(variables[theirs])))
            for ours, (theirs, transform) in names.items()}


def build(cls, cfg: NetworkConfig, state: dict, path: Path, what: str):
    """cls(cfg) holding `state`; a one-line error if a tensor's shape does not fit the configuration."""
    with torch.random.fork_rng(devices=[]):  # the random init is overwritten: leave the caller's RNG untouched
        net = cls(cfg)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        detail = str(e).splitlines()[-1].strip()
        raise NetworkError(f"{path}: {what} does not fit the configuration read from the file ({detail})") from None
    return net


def read_official(path: str | Path) -> tuple[NetworkConfig, dict, dict, dict]:
    """(config, G state dict, D state dict, Gs state dict) of an official pickle, in our layout."""
    path = Path(path)
    g, d, gs = read_pkl(path)
    cfg = infer_config(path, gs, d)
    if infer_config(path, g, d) != cfg:
        raise NetworkError(f"{path}: its G and Gs have different configurations; download the file again")
    gnames = generator_names(cfg, _kwargs(gs))
    return (cfg, _state_dict(path, "G", _variables(path, g), gnames),
            _state_dict(path, "D", _variables(path, d), discriminator_names(cfg)),
            _state_dict(path, "Gs", _variables(path, gs), gnames))


def _meta(cfg: NetworkConfig, path: Path, data_hash: str) -> dict:
    return {"format": "stylegan-pytorch", "format_version": FORMAT_VERSION, "network": cfg.to_dict(),
            "official": {"file": path.name, "sha256": data_hash}}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()


def pkl_meta(path: str | Path) -> dict:
    """The metadata load_network would give the pickle's Gs (its config under 'network')."""
    path = Path(path)
    g, d, gs = read_pkl(path)
    return _meta(infer_config(path, gs, d), path, _sha256(path))


def load_pkl(path: str | Path, device: str | torch.device = "cpu") -> Generator:
    """The pickle's Gs (the moving-average generator the paper's images come from) as our Generator, eval mode."""
    path = Path(path)
    cfg, _, _, gs = read_official(path)
    G = build(Generator, cfg, gs, path, "Gs")
    G.meta = _meta(cfg, path, _sha256(path))
    return G.eval().requires_grad_(False).to(device)


def convert_pkl(pkl_path: str | Path, out_folder: str | Path) -> Path:
    """Write the official pickle as our network folder: model.safetensors + config.json (Gs, so load_network reads
    it unchanged), plus G.safetensors and D.safetensors (the training G and D, for fine-tuning), all with the same
    metadata. Byte-identical for the same input; each file written atomically."""
    path, out = Path(pkl_path), Path(out_folder)
    cfg, g, d, gs = read_official(path)
    meta = _meta(cfg, path, _sha256(path))
    Gs = build(Generator, cfg, gs, path, "Gs")
    build(Discriminator, cfg, d, path, "D")  # checks D's shapes
    if any(g[k].shape != v.shape for k, v in gs.items()):
        raise NetworkError(f"{path}: its G and Gs have different shapes; download the file again")
    header = {"config": json.dumps(meta)}
    for name, state in ((G_NAME, g), (D_NAME, d)):
        atomic_write(out / name, lambda p, s=state: save_file(s, p, metadata=header))
    save_network(Gs, out, extra={"official": meta["official"]})
    return out


def load_converted(folder: str | Path, device: str | torch.device = "cpu") -> tuple[Generator, Discriminator,
                                                                                    Generator]:
    """(G, D, Gs) of a folder written by convert_pkl, in train mode for fine-tuning (Gs in eval mode)."""
    folder = Path(folder)
    Gs = load_network(folder, device)
    for name in (G_NAME, D_NAME):
        if not (folder / name).is_file():
            raise NetworkError(f"{folder} has no {name}: convert the official pickle with `python official.py "
                               "FILE.pkl --out FOLDER`")
    if read_network_meta(folder / G_NAME)["network"] != Gs.cfg.to_dict():
        raise NetworkError(f"{folder}: {G_NAME} and {WEIGHTS_NAME} have different configs; convert again")
    with torch.random.fork_rng(devices=[]):
        G, D = Generator(Gs.cfg), Discriminator(Gs.cfg)
    G.load_state_dict(load_file(str(folder / G_NAME)))
    D.load_state_dict(load_file(str(folder / D_NAME)))
    return G.to(device), D.to(device), Gs


# ----------------------------------------------------------------------------------------------------------------
# Command line


def main(argv=None) -> Path:
    parser = ArgumentParser("official.py", "Convert one of NVIDIA's official StyleGAN .pkl networks to our format.",
                            "example:\n  python official.py karras2019stylegan-ffhq-1024x1024.pkl --out networks/ffhq1024\n"
                            "  python demo.py --network networks/ffhq1024   # then load it fast, without the pickle")
    parser.add_argument("pkl", metavar="FILE.pkl", help="an official StyleGAN pickle (karras2019stylegan-*.pkl)")
    parser.add_argument("--out", metavar="FOLDER", required=True,
                        help=f"where to write {WEIGHTS_NAME} + {CONFIG_NAME} (Gs), {G_NAME} and {D_NAME}")
    parser.add_argument("--force", action="store_true", help="write into a non-empty --out")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.force:
        raise UsageError(f"--out {out} exists and is not empty: pick a new folder, or pass --force to overwrite "
                         "the network files in it")
    convert_pkl(args.pkl, out)
    print(f"wrote {out}: {WEIGHTS_NAME} + {CONFIG_NAME} (Gs), {G_NAME} and {D_NAME}")
    return out


if __name__ == "__main__":
    run_cli(main)
