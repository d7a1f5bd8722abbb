"""Differentiable augmentation for training on small data sets: DiffAugment (Zhao et al. 2020, "Differentiable
Augmentation for Data-Efficient GAN Training", Sec. 3 and App. A).

The discriminator sees every image, real or generated, through the same random transformation T, in its D step and
in the generator's step alike: D learns on T(x) and T(G(z)), and the generator's gradient flows back through T. D can
no longer memorise a few hundred real images, and since T is applied to the fakes too, the generator is not pushed
to produce augmented-looking images. Three transformations, each drawn per image:

    color        brightness + U(-0.5, 0.5), saturation x U(0, 2), contrast x U(0.5, 1.5)
    translation  shift by up to 1/8 of the image size in x and y, zero padding
    cutout       zero a square of half the image size at a random position

Images are in [-1, 1] (zero is mid-grey). Randomness comes from torch's global generator on the images' device,
the one Accelerate saves in every checkpoint, so a resumed run draws the same transformations.

    x = diff_augment(x, "color,translation,cutout")

We implement DiffAugment and not ADA (Karras et al. 2020): DiffAugment has no state (ADA adapts its probability p
to an overfitting heuristic during training, which a resume would have to restore), takes three short functions
rather than ADA's 18-transform pipeline with its own up/down-sampling filters, and the DiffAugment paper reports
it on StyleGAN2 with 100 to a few thousand images, the regime this option is for.
"""

from __future__ import annotations

import torch

POLICIES = ("color", "translation", "cutout")


def parse_policy(text: str) -> list[str]:
    """'color,translation,cutout' -> the list of transformations, checked (ValueError names the bad one)."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    for t in names:
        if t not in POLICIES:
            raise ValueError(f"unknown augmentation {t!r}: choose from {', '.join(POLICIES)}")
    if not names:
        raise ValueError(f"empty augmentation policy: choose from {', '.join(POLICIES)}")
    return names


def _uniform(n: int, lo: float, hi: float, like: torch.Tensor) -> torch.Tensor:
    """(N, 1, 1, 1) per-image draws from U(lo, hi)."""
    return torch.rand(n, 1, 1, 1, device=like.device, dtype=like.dtype) * (hi - lo) + lo


def color(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    x = x + _uniform(n, -0.5, 0.5, x)  # brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * _uniform(n, 0.0, 2.0, x) + mean  # saturation: scale each pixel's spread around its grey
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(n, 0.5, 1.5, x) + mean  # contrast: scale the spread around the image mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by whole pixels, up to `ratio` of its size each way; what comes in from outside is zero."""
    n, c, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sy, sy + 1, (n, 1, 1), device=x.device)
    tx = torch.randint(-sx, sx + 1, (n, 1, 1), device=x.device)
    src_y = torch.arange(h, device=x.device).view(1, h, 1) - ty  # (N, H, 1): the row each output row reads
    src_x = torch.arange(w, device=x.device).view(1, 1, w) - tx  # (N, 1, W)
    inside = ((src_y >= 0) & (src_y < h) & (src_x >= 0) & (src_x < w)).unsqueeze(1)  # (N, 1, H, W)
    index = (src_y.clamp(0, h - 1) * w + src_x.clamp(0, w - 1)).view(n, 1, h * w).expand(n, c, h * w)
    out = x.reshape(n, c, h * w).gather(2, index).view(n, c, h, w)
    return out * inside.to(x.dtype)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of `ratio` times the image size per image, centred anywhere (clipped at the borders)."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device) - ch // 2  # the centre may be any row
    left = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device) - cw // 2
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    hole = (ys >= top) & (ys < top + ch) & (xs >= left) & (xs < left + cw)  # (N, H, W)
    return x * (~hole).unsqueeze(1).to(x.dtype)


_TRANSFORMS = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(x: torch.Tensor, policy: str | list[str]) -> torch.Tensor:
    """Apply the transformations of `policy` in order ("color,translation,cutout"), each drawn per image."""
    for name in parse_policy(policy) if isinstance(policy, str) else policy:
        x = _TRANSFORMS[name](x)
    return x
