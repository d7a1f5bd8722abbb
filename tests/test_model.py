"""The networks' promises: parameter counts, shapes, fade-in, truncation, mixing, noise, save/load."""

import dataclasses
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT, TINY, make_tiny_generator
from model import (PRESETS, Discriminator, EqualConv2d, Generator, NetworkConfig, NetworkError, UsageError,
                   count_params, load_network, save_network, seed_to_z, slerp, style_ranges)

# A 1024^2 network, narrow enough to run every resolution on a CPU in a second.
NARROW1024 = NetworkConfig(resolution=1024, z_dim=16, w_dim=16, mapping_layers=2, mapping_width=16, channel_base=16384,
                           channel_max=16)


def test_ffhq1024_parameter_count_matches_official():
    n = count_params(Generator(PRESETS["ffhq1024"]))
    assert abs(n - 26_219_627) / 26_219_627 < 1e-3, n


def test_traditional1024_parameter_count_close_to_paper():
    # Paper: 23.1 M for the traditional generator. No mapping network, no styles, a dense 4x4 input layer.
    n = count_params(Generator(PRESETS["traditional1024"]))
    assert abs(n - 23.1e6) / 23.1e6 < 5e-3, n


def test_model_cli_prints_summary():
    out = subprocess.run([sys.executable, "model.py", "--preset", "cpu"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    g = Generator(PRESETS["cpu"])
    assert f"generator parameters: {count_params(g):,}" in out
    assert "discriminator parameters:" in out and "G.synthesis.b32" in out


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_output_shapes_every_resolution_and_alpha(alpha):
    torch.manual_seed(0)
    G, D = Generator(NARROW1024), Discriminator(NARROW1024)
    z = torch.randn(2, 16)
    for res in NARROW1024.resolutions:
        with torch.no_grad():
            img = G(z, res=res, alpha=alpha)
            assert img.shape == (2, 3, res, res)
            assert torch.isfinite(img).all()
            assert D(img, res=res, alpha=alpha).shape == (2,)


def test_alpha_one_equals_grown_network_and_alpha_zero_equals_previous():
    G, D = make_tiny_generator(), Discriminator(TINY)
    z = torch.randn(4, TINY.z_dim)
    with torch.no_grad():
        full = G(z, res=16, noise_mode="const")
        assert torch.equal(G(z, res=16, alpha=1.0, noise_mode="const"), full)
        # alpha = 0: exactly the 8x8 network's output, nearest-upsampled (the new block contributes nothing).
        low = G(z, res=8, noise_mode="const")
        assert torch.allclose(G(z, res=16, alpha=0.0, noise_mode="const"), F.interpolate(low, scale_factor=2), atol=1e-6)
        x = torch.randn(4, 3, 16, 16)
        assert torch.equal(D(x, res=16, alpha=1.0), D(x))
        assert torch.allclose(D(x, res=16, alpha=0.0), D(F.avg_pool2d(x, 2), res=8), atol=1e-5)


def test_fused_resampling_equals_separate_ops():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 8, 8)
    for kw in (dict(up=True), dict(down=True)):
        plain = EqualConv2d(5, 7, 3, **kw)
        fused = EqualConv2d(5, 7, 3, fused=True, **kw)
        fused.load_state_dict(plain.state_dict())
        with torch.no_grad():
            assert torch.allclose(plain(x), fused(x), atol=1e-5), kw


def test_truncation_psi_one_changes_nothing_psi_zero_gives_average():
    G = make_tiny_generator()
    z = seed_to_z([1, 2, 3], TINY.z_dim)
    with torch.no_grad():
        assert torch.equal(G(z, psi=1.0, noise_mode="const"), G(z, noise_mode="const"))
        avg = G.w_avg.view(1, 1, -1).repeat(3, G.num_ws, 1)
        assert torch.allclose(G(z, psi=0.0, noise_mode="const"), G.synthesis(avg, noise_mode="const"), atol=1e-6)
        # cutoff: layers below it are truncated, the rest keep w.
        ws = G.map(z, psi=0.0, cutoff=2)
        w = G.mapping(z)
        assert torch.allclose(ws[:, :2], G.w_avg.expand(3, 2, -1))
        assert torch.equal(ws[:, 2:], w.unsqueeze(1).expand(-1, G.num_ws - 2, -1))
        ws_half = G.map(z, psi=0.5)
        assert torch.allclose(ws_half, (G.w_avg + 0.5 * (w - G.w_avg)).unsqueeze(1).expand_as(ws_half), atol=1e-6)


def test_style_mixing():
    G = make_tiny_generator()
    za, zb = seed_to_z([10, 11], TINY.z_dim), seed_to_z([20, 21], TINY.z_dim)
    with torch.no_grad():
        plain = G(za, noise_mode="const")
        assert torch.equal(G(za, mix_z=za, mix_layer=3, noise_mode="const"), plain)
        wa, wb = G.mapping(za), G.mapping(zb)
        ws = torch.cat([wa.unsqueeze(1).expand(-1, 3, -1), wb.unsqueeze(1).expand(-1, G.num_ws - 3, -1)], 1)
        assert torch.allclose(G(za, mix_z=zb, mix_layer=3, noise_mode="const"), G.synthesis(ws, noise_mode="const"))
        # a crossover per sample
        per = G(za, mix_z=zb, mix_layer=torch.tensor([0, G.num_ws]), noise_mode="const")
        assert torch.allclose(per[0], G(zb, noise_mode="const")[0], atol=1e-6)
        assert torch.allclose(per[1], plain[1], atol=1e-6)


def test_style_ranges_follow_paper_at_1024():
    r = style_ranges(1024)
    assert r["coarse"][:2] == (0, 4) and r["middle"][:2] == (4, 8) and r["fine"][:2] == (8, 18)
    for res in (16, 32, 64, 256):
        spans = [style_ranges(res)[k][:2] for k in ("coarse", "middle", "fine")]
        assert spans[0][0] == 0 and spans[-1][1] == 2 * res.bit_length() - 4
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


def test_noise_modes():
    G = make_tiny_generator()
    z = seed_to_z(range(8), TINY.z_dim)
    with torch.no_grad():
        a, b = G(z, noise_mode="const"), G(z, noise_mode="const")
        assert torch.equal(a, b)
        one = torch.cat([G(z[i:i + 1], noise_mode="const") for i in range(8)])
        assert torch.allclose(one, a, atol=1e-5)
        r1, r2 = G(z, noise_mode="random"), G(z, noise_mode="random")
        assert not torch.allclose(r1, r2)
        n1, n2 = G(z, noise_mode="none"), G(z, noise_mode="none")
        assert torch.equal(n1, n2) and not torch.allclose(n1, a)
        seeded = G.synthesis.make_noise(8, seed=5)
        ws = G.map(z)
        assert torch.equal(G.synthesis(ws, noise=seeded), G.synthesis(ws, noise=G.synthesis.make_noise(8, seed=5)))


def test_same_seed_same_z_any_batch():
    assert torch.equal(seed_to_z([7], 32)[0], seed_to_z([3, 7, 9], 32)[1])


def test_seed_to_styles_contract():
    G = make_tiny_generator()
    seeds = [4, 1, 4, 9]
    with torch.no_grad():
        w = G.mapping(seed_to_z(seeds, TINY.z_dim))
    assert torch.equal(G.w_from_seeds(seeds), w)
    assert torch.allclose(G.w_from_seeds(seeds, batch=3), w, atol=1e-6)  # batching: float rounding at most
    assert torch.equal(G.ws_from_seeds(seeds, psi=1.0), w.unsqueeze(1).expand(-1, G.num_ws, -1))
    assert torch.equal(G.ws_from_seeds(seeds, psi=0.5, cutoff=2), G.truncate(G.broadcast(w), 0.5, 2))
    # Each image's noise comes from its own seed, whatever its neighbours in the batch.
    noise = G.noise_from_seeds(seeds)
    alone = G.noise_from_seeds([9])
    own = G.synthesis.make_noise(1, seed=4)
    for layer, single, first in zip(noise, alone, own):
        assert torch.equal(layer[3:4], single) and torch.equal(layer[0], layer[2]) and torch.equal(layer[:1], first)


def test_truncation_defaults_and_checks():
    G = make_tiny_generator()
    assert G.truncation() == (1.0, G.num_ws)  # our networks: no truncation by default
    official = Generator(dataclasses.replace(TINY, default_psi=0.7, default_cutoff=4))
    assert official.truncation() == (0.7, 4) and official.truncation(0.5) == (0.5, 4)
    assert official.truncation(cutoff=0) == (0.7, 0)
    ws = torch.randn(2, G.num_ws, TINY.w_dim)
    assert torch.equal(G.truncate(ws, 0.0, 0), ws)  # cutoff 0 truncates no layer
    for psi in (2.5, -3, float("nan"), float("inf"), "0.5", True):
        with pytest.raises(UsageError, match="truncation psi must be between -2.0 and 2.0"):
            G.truncation(psi)
    for cutoff in (-1, G.num_ws + 1, 1.5, "all"):
        with pytest.raises(UsageError, match=f"cutoff must be a layer count from 0 to {G.num_ws}"):
            G.truncation(1.0, cutoff)


def test_slerp_constant_angular_speed():
    torch.manual_seed(0)
    a, b = torch.randn(5, 16, dtype=torch.float64), torch.randn(5, 16, dtype=torch.float64)
    total = torch.acos((F.normalize(a, dim=1) * F.normalize(b, dim=1)).sum(1))
    for t in (0.0, 0.3, 1.0):
        for shape in ((5,), (5, 1)):  # t per row, either shape
            e = slerp(a, b, torch.full(shape, t, dtype=torch.float64))
            assert torch.allclose(e.norm(dim=1), torch.ones(5, dtype=torch.float64))
            angle = torch.acos((e * F.normalize(a, dim=1)).sum(1).clamp(-1, 1))
            assert torch.allclose(angle, t * total, atol=1e-6)
    assert torch.allclose(slerp(a, b, torch.ones(5, dtype=torch.float64)), F.normalize(b, dim=1))
    same = slerp(a, a, torch.full((5,), 0.4, dtype=torch.float64))  # equal ends: no 0/0
    assert torch.allclose(same, F.normalize(a, dim=1))


def test_traditional_generator_uses_only_its_input_layer():
    cfg = NetworkConfig(architecture="traditional", resolution=16, z_dim=32, w_dim=32, mapping_layers=0,
                        channel_base=256, channel_max=32, use_noise=False)
    torch.manual_seed(0)
    G = Generator(cfg).eval()
    z = torch.randn(2, 32)
    with torch.no_grad():
        ws = G.map(z)
        ws2 = ws.clone()
        ws2[:, 1:] = torch.randn_like(ws2[:, 1:])
        assert torch.equal(G.synthesis(ws), G.synthesis(ws2))
        assert G(z).shape == (2, 3, 16, 16)


def test_save_load_round_trip(tmp_path):
    G = make_tiny_generator(seed=3)
    save_network(G, tmp_path / "net", extra={"kimg": 12.5})
    H = load_network(tmp_path / "net")
    assert H.meta["kimg"] == 12.5
    z = seed_to_z([0, 1], TINY.z_dim)
    with torch.no_grad():
        assert torch.equal(G(z, noise_mode="const"), H(z, noise_mode="const"))
    assert torch.equal(load_network(tmp_path / "net" / "model.safetensors").w_avg, G.w_avg)
    umask = os.umask(0o022)
    try:  # readable like any new file, not owner-only as the temporary file it was written through
        save_network(G, tmp_path / "net2")
        assert {f.stat().st_mode & 0o777 for f in (tmp_path / "net2").iterdir()} == {0o644}
    finally:
        os.umask(umask)
    # loading leaves the global RNG alone (a resumed training run depends on it)
    state = torch.get_rng_state()
    load_network(tmp_path / "net")
    assert torch.equal(torch.get_rng_state(), state)


def test_invalid_network_files_give_one_line_errors(tmp_path):
    with pytest.raises(NetworkError, match="no network at"):
        load_network(tmp_path / "missing")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"this is not a network")
    with pytest.raises(NetworkError, match="not a valid safetensors"):
        load_network(bad)
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(NetworkError, match="no StyleGAN network config"):
        load_network(tmp_path / "other.safetensors")
    for err in (NetworkError,):
        try:
            load_network(bad)
        except err as e:
            assert "\n" not in str(e)
