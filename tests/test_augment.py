"""DiffAugment: each transformation does what the paper says, is differentiable, and is reproducible from the seed."""

import pytest
import torch

import augment


def test_translation_is_a_whole_pixel_shift_with_zero_padding():
    torch.manual_seed(0)
    x = torch.rand(64, 3, 16, 16) + 1  # no zeros in the input, so zeros in the output are padding
    out = augment.translation(x)
    shifts = set()
    for img, res in zip(x, out):
        found = []
        for dy in range(-2, 3):  # 1/8 of 16 pixels = 2 each way
            for dx in range(-2, 3):
                shifted = torch.zeros_like(img)
                shifted[:, max(dy, 0):16 + min(dy, 0), max(dx, 0):16 + min(dx, 0)] = \
                    img[:, max(-dy, 0):16 + min(-dy, 0), max(-dx, 0):16 + min(-dx, 0)]
                if torch.equal(shifted, res):
                    found.append((dy, dx))
        assert len(found) == 1
        shifts.add(found[0])
    assert len(shifts) > 10  # drawn per image, over the whole range


def test_cutout_zeroes_one_half_size_square_and_nothing_else():
    torch.manual_seed(1)
    x = torch.rand(64, 3, 16, 16) + 1
    out = augment.cutout(x)
    inside = 0
    for img, res in zip(x, out):
        hole = (res == 0).all(0)
        assert torch.equal(res[:, ~hole], img[:, ~hole])  # everything outside the hole untouched
        rows, cols = hole.any(1).nonzero().flatten(), hole.any(0).nonzero().flatten()
        assert hole.sum() == len(rows) * len(cols)  # a rectangle
        assert 1 <= len(rows) <= 8 and 1 <= len(cols) <= 8  # half the image size, clipped at the border
        inside += len(rows) == len(cols) == 8
    assert inside > 10


def test_color_on_grey_images_is_brightness_only_and_in_range():
    torch.manual_seed(2)
    grey = torch.rand(256, 1, 1, 1).expand(256, 3, 8, 8).contiguous() * 2 - 1  # flat grey: no spread to scale
    out = augment.color(grey)
    shift = out - grey
    assert torch.allclose(shift, shift[:, :1, :1, :1].expand_as(shift), atol=1e-6)
    assert shift.min() >= -0.5 and shift.max() <= 0.5 and shift.std() > 0.2  # U(-0.5, 0.5)
    x = torch.rand(256, 3, 8, 8) * 2 - 1
    out = augment.color(x)
    # contrast and saturation scale spreads by at most 1.5 and 2: the image mean moves only by the brightness
    assert (out.mean(dim=(1, 2, 3)) - x.mean(dim=(1, 2, 3))).abs().max() <= 0.5 + 1e-5


def test_diff_augment_is_differentiable_and_reproducible():
    x = torch.randn(8, 3, 16, 16, requires_grad=True)
    torch.manual_seed(3)
    a = augment.diff_augment(x, "color,translation,cutout")
    (grad,) = torch.autograd.grad(a.square().sum(), x)
    assert grad.abs().sum() > 0 and torch.isfinite(grad).all()
    torch.manual_seed(3)
    b = augment.diff_augment(x, ["color", "translation", "cutout"])
    assert torch.equal(a, b)
    assert not torch.equal(a, augment.diff_augment(x, "color,translation,cutout"))


def test_bad_policy_names_the_choices():
    with pytest.raises(ValueError, match="unknown augmentation 'flip'.*color, translation, cutout"):
        augment.parse_policy("color,flip")
    with pytest.raises(ValueError, match="empty"):
        augment.parse_policy(" , ")
