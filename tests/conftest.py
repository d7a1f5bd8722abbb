import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
torch.set_num_threads(min(2, os.cpu_count() or 1))

from model import Generator, NetworkConfig, save_network  # noqa: E402

# A network small enough that every test using it runs in milliseconds, with every feature switched on.
TINY = NetworkConfig(resolution=16, z_dim=32, w_dim=32, mapping_layers=2, mapping_width=32, channel_base=256,
                     channel_max=32)


def write_random_pngs(folder: Path, count: int, height: int, width: int) -> Path:
    """A folder of `count` random RGB PNGs (non-square sizes exercise the loader's crop/pad): a user's image folder."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    for i in range(count):
        Image.fromarray(rng.randint(0, 255, (height, width, 3), np.uint8)).save(folder / f"{i}.png")
    return folder


def make_tiny_generator(seed: int = 0, cfg: NetworkConfig = TINY) -> Generator:
    torch.manual_seed(seed)
    G = Generator(cfg)
    with torch.no_grad():  # give noise strengths and w_avg non-trivial values, as a trained network has
        for name, p in G.named_parameters():
            if name.endswith("noise.weight"):
                p.normal_(0, 0.5)
        G.w_avg.normal_()
    return G.eval()


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Every test (and the scripts it starts) caches data sets in a temporary folder, never in ~/.cache."""
    old = os.environ.get("STYLEGAN_CACHE")
    os.environ["STYLEGAN_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        del os.environ["STYLEGAN_CACHE"]
    else:
        os.environ["STYLEGAN_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_network(tmp_path_factory) -> Path:
    """A saved random tiny network folder (config.json + model.safetensors), laid out as train.py writes it."""
    folder = tmp_path_factory.mktemp("runs") / "00000-tiny" / "network"
    save_network(make_tiny_generator(), folder)
    return folder


@pytest.fixture(scope="session")
def trained_network(tmp_path_factory, private_cache) -> Path:
    """A small network trained on the synthetic faces by train.py's command line (16x16, grown from 8x8, 1,500
    images, seconds on a CPU), with the directions.npz that `metrics.py --metrics ls` writes beside it: every mode of
    every script runs on it (tests/test_modes.py)."""
    import metrics
    import train

    out = tmp_path_factory.mktemp("trained")
    train.main(["--resolution", "16", "--channel-base", "256", "--channel-max", "32", "--kimg", "1.5",
                "--stable-kimg", "0.25", "--fade-kimg", "0.25", "--data", "synthetic:2000", "--workers", "0",
                "--tick-kimg", "0.5", "--snap-kimg", "1.5", "--outdir", str(out), "--name", "small"])
    network = out / "00000-small" / "network"
    metrics.main(["--network", str(network), "--metrics", "ls", "--num", "200"])
    assert (network / "directions.npz").is_file()
    return network
