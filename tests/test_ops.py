"""ops.py: convolutions and blur whose derivatives of every order are ordinary kernels. Each operation against
finite differences (gradcheck, gradgradcheck in float64); the structure of a full-size D step with R1, traced on the
meta device; a training step's gradients against the native path's."""

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import bench
import ops
import train
from conftest import TINY
from model import PRESETS, NetworkConfig

D64 = dict(dtype=torch.float64)

# (name, function, input shapes): every convolution the networks run, and the blur
OPERATIONS = [
    ("3x3 with bias", lambda x, w, b: ops.conv2d(x, w, b, padding=1), [(2, 3, 6, 6), (4, 3, 3, 3), (4,)]),
    ("1x1 (toRGB, fromRGB)", lambda x, w, b: ops.conv2d(x, w, b), [(2, 3, 5, 5), (4, 3, 1, 1), (4,)]),
    ("fused 4x4 stride-2 down", lambda x, w, b: ops.conv2d(x, w, b, stride=2, padding=1),
     [(2, 3, 8, 8), (4, 3, 4, 4), (4,)]),
    ("4x4 stride-2 down, odd size", lambda x, w: ops.conv2d(x, w, stride=2, padding=1), [(1, 2, 7, 5), (3, 2, 4, 4)]),
    ("fused transposed 4x4 up", lambda x, w, b: ops.conv_transpose2d(x, w, b, stride=2, padding=1),
     [(2, 3, 4, 4), (3, 4, 4, 4), (4,)]),
    ("[1, 2, 1] blur", ops.blur, [(2, 3, 5, 6)]),
]


@pytest.mark.parametrize("name,fn,shapes", OPERATIONS, ids=[o[0] for o in OPERATIONS])
def test_first_and_second_derivatives_match_finite_differences(name, fn, shapes):
    torch.manual_seed(0)
    inputs = [torch.randn(*s, **D64, requires_grad=True) for s in shapes]
    assert gradcheck(fn, inputs)
    assert gradgradcheck(fn, inputs)


def test_weight_gradient_function_and_its_derivatives():
    """The weight-gradient Function on its own: first and second derivatives in (output gradient, input)."""
    torch.manual_seed(0)
    for spec, x_shape, g_shape, w_shape in ((ops.ConvSpec(1, 1), (2, 3, 5, 5), (2, 4, 5, 5), (4, 3, 3, 3)),
                                            (ops.ConvSpec(2, 1), (2, 3, 8, 8), (2, 4, 4, 4), (4, 3, 4, 4)),
                                            (ops.ConvSpec(2, 1, transposed=True), (2, 3, 4, 4), (2, 4, 8, 8),
                                             (3, 4, 4, 4))):
        w = torch.randn(*w_shape, **D64)
        fn = lambda g, x: ops._ConvWeightGrad.apply(g, x, w, spec)
        inputs = [torch.randn(*g_shape, **D64, requires_grad=True), torch.randn(*x_shape, **D64, requires_grad=True)]
        expected = torch.autograd.grad(spec.run(inputs[1], w.requires_grad_()), w, inputs[0])[0]
        w.requires_grad_(False)
        assert torch.allclose(fn(*inputs), expected)
        assert gradcheck(fn, inputs) and gradgradcheck(fn, inputs)


def test_blur_is_its_own_adjoint_and_has_nothing_to_train():
    from model import Blur

    torch.manual_seed(0)
    x, y = torch.randn(2, 3, 6, 5, **D64), torch.randn(2, 3, 6, 5, **D64)
    assert torch.allclose((ops.blur(x) * y).sum(), (x * ops.blur(y)).sum())  # <Bx, y> = <x, By>
    assert list(Blur().parameters()) == [] and list(Blur().buffers()) == []
    with ops.implementation("native"):
        native = ops.blur(x)
    assert torch.equal(ops.blur(x), native)
    with pytest.raises(ValueError, match="custom"):
        with ops.implementation("fast"):
            pass


# ----------------------------------------------------------------------------------------------------------------
# Structure: a D step with R1 at ffhq256 shapes, batch 32, on the meta device


def test_r1_step_runs_only_kernels_of_the_layers_own_size():
    native = bench.conv_census(PRESETS["ffhq256"], 256, 32, "native")["final backward"]
    custom = bench.conv_census(PRESETS["ffhq256"], 256, 32, "custom")
    # The census sees the pathology where it is: PyTorch's double backward of the same step.
    assert native["oversized kernels"] > 1900 and native["single-channel"] > 1900
    final = custom["final backward"]
    assert final["oversized kernels"] == 0 and final["single-channel"] == 0
    assert final["convolutions"] < native["convolutions"] / 20
    # R1's first pass: input gradients only (one adjoint convolution per D convolution), no weight gradient
    assert custom["first pass"]["weight gradients"] == 0 and custom["first pass"]["convolutions"] == 20


def test_first_r1_pass_skips_weight_gradients_only_inside_the_context():
    from model import Discriminator

    torch.manual_seed(0)
    D = Discriminator(TINY)
    real = torch.randn(2, 3, 16, 16, requires_grad=True)
    logits = D(real)
    seen = []
    original = ops._ConvWeightGrad.apply
    ops._ConvWeightGrad.apply = lambda *a: seen.append(1) or original(*a)
    try:
        torch.autograd.grad(logits.sum(), real, create_graph=True, retain_graph=True)
        plain = len(seen)
        train.r1_penalty(logits, real)
    finally:
        ops._ConvWeightGrad.apply = original
    assert plain > 0 and len(seen) == plain  # the custom Function would compute them; r1_penalty does not


# ----------------------------------------------------------------------------------------------------------------
# A training step: the same gradients as the native path


def step_gradients(impl: str, cfg: NetworkConfig, res: int, alpha: float, compile: bool = False,
                   r1: bool = True) -> dict:
    """G's and D's gradients after one TrainStep (style mixing on, R1 or not) with the given convolutions."""
    tcfg = bench.bench_config(cfg, "cpu", r1_interval=1 if r1 else 2, gamma=1.0, style_mixing=1.0,
                              mixed_precision="no", channels_last=False, compile=compile)
    torch.manual_seed(5)
    real = torch.randint(0, 256, (4, 3, res, res), dtype=torch.uint8)
    with bench.accelerator(torch.device("cpu")) as accel, ops.implementation(impl):
        G, D, G_ema, opt_G, opt_D = train.make_networks(tcfg, accel)
        # Noise strengths as a trained network has them: at their initial zeros the 4x4 layer's activations are
        # constant, its instance norm divides 0 by sqrt(1e-8), and rounding decides its gradient.
        with torch.no_grad():
            for name, p in accel.unwrap_model(G).named_parameters():
                if name.endswith("noise.weight"):
                    p.copy_(torch.linspace(-0.5, 0.5, p.numel()))
        step = train.TrainStep(tcfg, accel, G, D, G_ema, opt_G, opt_D)
        losses = step(real, train.Phase(res, alpha, 4, 0.0, None), 0 if r1 else 1, 0)  # lr 0: weights stay
        assert (losses[1] > 0) == r1  # R1 applied or not
        return {f"{net}.{k}": p.grad.clone() for net, m in (("G", step.G_raw), ("D", step.D_raw))
                for k, p in m.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("fused,alpha", [(False, 1.0), (True, 1.0), (True, 0.4)],
                         ids=["unfused", "fused", "fused during a fade-in"])
def test_training_step_gradients_equal_the_native_path(fused, alpha):
    cfg = NetworkConfig(**{**TINY.to_dict(), "fused_min_res": 8 if fused else 128})
    assert_same_gradients(step_gradients("custom", cfg, 16, alpha), step_gradients("native", cfg, 16, alpha))


def assert_same_gradients(custom: dict, native: dict) -> None:
    assert custom.keys() == native.keys() and any(k.startswith("D.") for k in custom)
    for net in ("G.", "D."):
        keys = [k for k in native if k.startswith(net)]
        flat = lambda grads: torch.cat([grads[k].flatten() for k in keys])
        norm = flat(native).norm()
        assert (flat(custom) - flat(native)).norm() / norm < 1e-5, net
        # each tensor to 1e-5 of its network's gradient: a few gradients nearly cancel (a bias just before an
        # instance norm, the 4x4 block's in particular), and their own relative error is float rounding
        for k in keys:
            assert (custom[k] - native[k]).norm() / norm < 1e-5, k


def test_compiled_step_gradients_equal_the_eager_step():
    """train.py --compile: D's step without R1 and G's step compiled give the eager step's gradients."""
    cfg = NetworkConfig(**{**TINY.to_dict(), "fused_min_res": 16})
    eager = step_gradients("custom", cfg, 16, 1.0, r1=False)
    compiled = step_gradients("custom", cfg, 16, 1.0, compile=True, r1=False)
    assert_same_gradients(compiled, eager)


def test_bf16_autocast_follows_the_native_casts():
    """Under autocast the custom path casts as a native convolution does: bf16 outputs, fp32 weight gradients."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    results = {}
    for impl in ops.IMPLEMENTATIONS:
        with ops.implementation(impl):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = ops.blur(ops.conv2d(x, w, padding=1))
                (gx,) = torch.autograd.grad(y.float().square().sum(), x, create_graph=True)
            (gw,) = torch.autograd.grad(gx.float().square().sum(), w)
        assert y.dtype == torch.bfloat16 and gw.dtype == torch.float32
        results[impl] = gw
    assert torch.allclose(results["custom"], results["native"], rtol=0.05, atol=0.05 * results["native"].abs().max())
