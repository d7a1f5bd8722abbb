"""Convolutions and the [1, 2, 1] blur, with derivatives of every order computed by ordinary kernels.

R1 differentiates D's input gradient once more. PyTorch's generic double backward of a convolution gets the weight
term of that second derivative from a forward convolution whose kernel is the whole gradient map (batch and channels
swapped: a 3x3 output from two 256x256 maps), and for a grouped convolution, the blur, it loops over the groups one
channel at a time. Both are slow on every backend (docs/performance.md). Here:

- `conv2d` / `conv_transpose2d` are one autograd Function. Its input gradient is the adjoint convolution (the same
  Function, transposed); its weight gradient is the backend's weight-gradient kernel (`aten.convolution_backward`
  asked for the weight only), itself a Function whose two derivatives are again forward and input-gradient
  convolutions of the layer's own shapes. So every derivative order runs kernels of the layer's own size.
- `blur` is a Function whose derivative is itself (the filter is symmetric and zero-padded to the same size, so the
  blur is its own adjoint). The fixed filter never gets a gradient, and no derivative loops over channels.
- `no_weight_gradients()` lets R1's first pass skip the weight gradients it would throw away: a custom Function
  cannot see which of its gradients `torch.autograd.grad(..., inputs=real)` will use.

`implementation("native")` switches back to torch.nn.functional for every layer, for the tests and bench.py that
compare the two; the results are the same function to float rounding.

The elementwise work between the convolutions is written in few passes over the activations (`noise_bias_lrelu`,
`instance_norm_affine`, `upsample2x`): the same functions as their textbook forms, to float rounding, at 1.5-10
times their speed on a CPU (docs/performance.md).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

IMPLEMENTATIONS = ("custom", "native")
_state = {"impl": "custom", "weight_gradients": True}


@contextlib.contextmanager
def implementation(name: str):
    """Run the layers inside with the 'custom' Functions (the default) or with torch.nn.functional ('native')."""
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, not {name!r}")
    old = _state["impl"]
    _state["impl"] = name
    try:
        yield
    finally:
        _state["impl"] = old


@contextlib.contextmanager
def no_weight_gradients():
    """Backward passes inside compute input gradients only: for R1's first pass, whose weight gradients are unused."""
    old = _state["weight_gradients"]
    _state["weight_gradients"] = False
    try:
        yield
    finally:
        _state["weight_gradients"] = old


def _custom(*tensors: torch.Tensor | None) -> bool:
    """The custom Functions only where a graph is being built: inference runs the same kernels without the wrapper."""
    return (_state["impl"] == "custom" and torch.is_grad_enabled()
            and any(t is not None and t.requires_grad for t in tensors))


def _autocast(*tensors: torch.Tensor | None) -> tuple:
    """Cast to the autocast dtype outside the Function, as autocast casts a native convolution's inputs (the casts'
    own gradients bring fp32 weights their fp32 gradient); inside, every tensor then has one dtype."""
    device = next(t for t in tensors if t is not None).device.type
    if not (torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device)):
        return tensors
    dtype = torch.get_autocast_dtype(device)
    return tuple(None if t is None or not t.is_floating_point() else t.to(dtype) for t in tensors)


# ----------------------------------------------------------------------------------------------------------------
# Convolution


@dataclass(frozen=True)
class ConvSpec:
    """A 2-D convolution's hyper-parameters (dilation 1): enough to name it and its adjoint."""
    stride: int = 1
    padding: int = 0
    transposed: bool = False
    output_padding: tuple[int, int] = (0, 0)  # a transposed convolution's extra rows and columns at the end
    groups: int = 1

    def adjoint(self, x: torch.Tensor, grad: torch.Tensor, w: torch.Tensor) -> "ConvSpec":
        """The convolution that maps a gradient of this one's output (shaped like `grad`) to a gradient of its input
        (shaped like `x`), with the same weight `w`: transposed for an ordinary one and ordinary for a transposed
        one. A strided ordinary convolution drops trailing rows; the transposed adjoint's output padding gives them
        back."""
        if self.transposed:
            return replace(self, transposed=False, output_padding=(0, 0))
        extra = tuple(x.shape[d] - ((grad.shape[d] - 1) * self.stride - 2 * self.padding + w.shape[d])
                      for d in (2, 3))
        return replace(self, transposed=True, output_padding=extra)

    def run(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        return torch.convolution(x, w, b, [self.stride] * 2, [self.padding] * 2, [1, 1], self.transposed,
                                 list(self.output_padding), self.groups)

    def weight_grad(self, grad: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """dL/dw from the output gradient and the input: the backend's weight-gradient kernel alone."""
        return torch.ops.aten.convolution_backward(
            grad, x, w, None, [self.stride] * 2, [self.padding] * 2, [1, 1], self.transposed,
            list(self.output_padding), self.groups, [False, True, False])[1]


class _Conv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, spec: ConvSpec):
        ctx.save_for_backward(x, w)
        ctx.spec, ctx.has_bias = spec, b is not None
        return spec.run(x, w, b)

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        spec = ctx.spec
        need_x, need_b = ctx.needs_input_grad[0], ctx.has_bias and ctx.needs_input_grad[2]
        need_w = ctx.needs_input_grad[1] and _state["weight_gradients"]
        if not torch.is_grad_enabled():  # a first-order backward: the backend's one call, as the native path makes
            gx, gw, gb = torch.ops.aten.convolution_backward(
                grad, x, w, [w.shape[0]] if need_b else None, [spec.stride] * 2, [spec.padding] * 2, [1, 1],
                spec.transposed, list(spec.output_padding), spec.groups, [need_x, need_w, need_b])
            return gx, gw, gb, None
        gx = gw = gb = None  # a graph of the gradient (create_graph): built of these Functions again
        if need_x:
            gx = _Conv.apply(grad, w, None, spec.adjoint(x, grad, w))
        if need_w:
            gw = _ConvWeightGrad.apply(grad, x, w.detach(), spec)
        if need_b:
            gb = grad.sum(dim=(0, 2, 3))
        return gx, gw, gb, None


class _ConvWeightGrad(torch.autograd.Function):
    """gw(grad, x) = dL/dw of `spec`. It is bilinear: <gg, gw(grad, x)> = <grad, conv(x, gg)> = <adjoint(grad, gg), x>,
    so its derivatives are a forward convolution with kernel gg (for grad) and the adjoint with kernel gg (for x)."""

    @staticmethod
    def forward(ctx, grad, x, w, spec: ConvSpec):
        ctx.save_for_backward(grad, x)
        ctx.spec = spec
        return spec.weight_grad(grad, x, w)

    @staticmethod
    def backward(ctx, gg):
        grad, x = ctx.saved_tensors
        spec = ctx.spec
        d_grad = d_x = None
        if ctx.needs_input_grad[0]:
            d_grad = _Conv.apply(x, gg, None, spec)
        if ctx.needs_input_grad[1]:
            d_x = _Conv.apply(grad, gg, None, spec.adjoint(x, grad, gg))
        return d_grad, d_x, None, None


def conv2d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None, stride: int = 1,
           padding: int = 0) -> torch.Tensor:
    """F.conv2d (square stride and padding, no dilation or groups) with derivatives of every order in normal kernels."""
    if not _custom(x, w, b):
        return F.conv2d(x, w, b, stride=stride, padding=padding)
    x, w, b = _autocast(x, w, b)
    return _Conv.apply(x, w, b, ConvSpec(stride, padding))


def conv_transpose2d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None, stride: int = 1,
                     padding: int = 0) -> torch.Tensor:
    """F.conv_transpose2d (weight (Cin, Cout, k, k)), with derivatives of every order in normal kernels."""
    if not _custom(x, w, b):
        return F.conv_transpose2d(x, w, b, stride=stride, padding=padding)
    x, w, b = _autocast(x, w, b)
    return _Conv.apply(x, w, b, ConvSpec(stride, padding, transposed=True))


# ----------------------------------------------------------------------------------------------------------------
# Blur


def _blur_kernel(channels: int, like: torch.Tensor) -> torch.Tensor:
    """The [1, 2, 1] x [1, 2, 1] / 16 filter, once per channel (C, 1, 3, 3): its taps are exact in every dtype."""
    k = torch.tensor([1.0, 2.0, 1.0], dtype=like.dtype, device=like.device)
    return (k[:, None] * k[None, :] / 16).expand(channels, 1, 3, 3)


def _blur(x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, _blur_kernel(x.shape[1], x), padding=1, groups=x.shape[1])


class _Blur(torch.autograd.Function):
    """The blur is linear and its own adjoint, so its gradient of any order is the blur of the incoming gradient."""

    @staticmethod
    def forward(ctx, x):
        return _blur(x)

    @staticmethod
    def backward(ctx, grad):
        return _Blur.apply(grad) if torch.is_grad_enabled() else _blur(grad)


def blur(x: torch.Tensor) -> torch.Tensor:
    """[1, 2, 1] low-pass filter per channel, zero-padded to the same size (the paper's bilinear resampling)."""
    if not _custom(x):
        return _blur(x)
    (x,) = _autocast(x)
    return _Blur.apply(x)


# ----------------------------------------------------------------------------------------------------------------
# Elementwise work in few passes


def _nchw(x: torch.Tensor) -> bool:
    return x.is_contiguous()


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour 2x up-sampling. In NCHW as one broadcast copy (F.interpolate's NCHW kernel is 10 times
    slower on a CPU); channels_last keeps F.interpolate, fast in that layout."""
    if not _nchw(x):
        return F.interpolate(x, scale_factor=2, mode="nearest")
    n, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(n, c, h, 2, w, 2).reshape(n, c, 2 * h, 2 * w)


def noise_bias_lrelu(x: torch.Tensor, noise: torch.Tensor | None, strength: torch.Tensor, bias: torch.Tensor,
                     slope: float = 0.2) -> torch.Tensor:
    """leaky_relu(x + noise * strength + bias): per-pixel noise (N, 1, H, W) scaled per channel (C,), a bias per
    channel (C,). One new tensor, then in place (autograd allows it: neither op needs its input for the gradient)."""
    x = x + bias.view(1, -1, 1, 1)
    if noise is not None:
        x = x.addcmul_(noise, strength.view(1, -1, 1, 1))
    return F.leaky_relu_(x, slope)


def instance_norm_affine(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, eps: float = 1e-8
                         ) -> torch.Tensor:
    """(x - mean) / sqrt(var + eps) * scale + shift, with mean and (biased) var per sample and channel of x
    (N, C, H, W) and scale, shift (N, C): AdaIN, with its scale and shift applied in one pass. The variance is that
    of the centred values: torch's fused normalisation kernels take it from the mean of squares in float32
    (group_norm in channels_last: 0.14 off where the mean is 500 standard deviations) or read channels_last slowly
    (var_mean), and at a constant layer (a fresh network's 4x4 input) their gradients decide projections
    differently (tests/test_project.py)."""
    n, c = x.shape[:2]
    centred = x - x.mean(dim=(2, 3), keepdim=True)
    k = scale.view(n, c, 1, 1).to(x.dtype) * torch.rsqrt(centred.square().mean(dim=(2, 3), keepdim=True) + eps)
    return torch.addcmul(shift.view(n, c, 1, 1).to(x.dtype), centred, k)
