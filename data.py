"""Everything the trainer and the metrics read: synthetic faces, image folders, zips and Hub data sets.

Synthetic faces are the default source, so the whole loop runs without downloading anything. A face is a pure
function of its index: every random choice is a hash of (index, name of the choice), never global RNG state, so
index 7 is the same face and the same labels on any machine, in any batch, at any resolution. The faces vary at
the three scales the paper separates (Sec. 3.1, Fig. 3):
    coarse: head position, pose (roll and yaw), face shape, eyeglasses, hat;
    middle: eyes open/closed, mouth (smile, open), hair style (long, bangs, volume, hairline, parting);
    fine:   skin, hair, eye, shirt and background colours, freckles, hair texture.
Each face carries len(ATTRIBUTES) binary labels, as CelebA does, each drawn independently with probability 1/2.

Real images (a folder searched recursively, a .zip, or a Hub data set) are listed with `datasets`, decoded once,
centre-cropped (or padded) to a square, resized with PIL's LANCZOS filter and written at the target resolution
into one cache file on disk (see "The on-disk cache" below), which every process memory-maps read-only. The trainer
reads that one copy and box-downsamples batches for lower progressive-growing stages, so no per-resolution copies
are needed.

    python data.py --grid faces.png                 # a labelled grid of synthetic faces
    python data.py --bench                          # images/s of synthetic faces, folder loading, cache reads
    python data.py --bench-train ~/a ~/b            # peak memory per process and time to the first step
    python data.py --stats 10000                    # attribute frequencies and largest pairwise correlation
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import itertools
import math
import os
import re
import shutil
import sys
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SYNTHETIC_DEFAULT_SIZE = 50_000  # like FFHQ's 70k: enough that a 25M-image run sees each face ~500 times
SYNTHETIC_RES = (16, 256)
REAL_RES = (4, 1024)
RESIZE_FILTER = Image.LANCZOS  # see _square_resize for why
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")

# Binary attributes, CelebA style. The scale each belongs to (the paper's coarse/middle/fine) is in the comment.
ATTRIBUTES = [
    "eyeglasses",  # coarse: a frame over both eyes, bridge over the nose, arms to the ears
    "wearing_hat",  # coarse: a cap over the top of the head
    "smiling",  # middle: mouth corners up and a wider mouth
    "mouth_open",  # middle: dark opening with teeth
    "eyes_open",  # middle: white eyes with iris and pupil, else closed lids
    "long_hair",  # middle: hair falling past the jaw to the shoulders
    "bangs",  # middle: a fringe over the forehead
    "dark_hair",  # fine: black/dark brown, else blond, ginger, light brown or grey
    "pale_skin",  # fine: light skin tones, else tan to dark brown
    "freckles",  # fine: small brown spots on the cheeks and nose
]


class DataError(Exception):
    """Bad data source or option: a one-line message naming the problem and the fix (scripts exit 2)."""


# ----------------------------------------------------------------------------------------------------------------
# Deterministic randomness: a hash of (index, name), vectorised over the batch.

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    # SplitMix64 finaliser: uint64 arithmetic wraps modulo 2**64 identically on every platform.
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _M64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _M64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _M64
        return x ^ (x >> np.uint64(31))


class _Draws:
    """uniform('name') -> one float in [0, 1) per face, a pure function of (index, 'name').

    Keys are names, not positions in a stream, so adding a new choice never changes the existing ones."""

    def __init__(self, indices: np.ndarray):
        self.indices = indices.astype(np.uint64)

    def uniform(self, name: str, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
        key = np.uint64(zlib.crc32(name.encode()))
        with np.errstate(over="ignore"):
            h = _splitmix64(_splitmix64(self.indices) ^ (key * np.uint64(0xD6E8FEB86659FD93) & _M64))
        u = (h >> np.uint64(11)).astype(np.float64) * 2.0**-53
        return (lo + (hi - lo) * u).astype(np.float32)

    def choice(self, name: str, table: np.ndarray) -> np.ndarray:
        i = np.minimum((self.uniform(name) * len(table)).astype(np.int64), len(table) - 1)
        return table[i]


# ----------------------------------------------------------------------------------------------------------------
# Anti-aliased drawing: signed distances (negative inside) on the pixel grid, a one-pixel linear edge ramp.


def _cover(d, pw):
    """Fraction of a pixel of width pw covered by the shape with signed distance d (box-filtered edge)."""
    return np.clip(0.5 - d / pw, 0.0, 1.0)


def _line(d_center, half, pw, d_ends=None):
    """Coverage of a stroke at distance d_center from its centre line. Strokes thinner than a pixel are drawn one
    pixel wide at proportionally lower opacity, which is what averaging over the pixel would give."""
    h = np.maximum(half, pw / 2)
    d = np.abs(d_center) - h
    if d_ends is not None:
        d = np.maximum(d, d_ends)
    return _cover(d, pw) * np.minimum(1.0, half / h)


def _ellipse(x, y, a, b):
    # Approximate signed distance to an axis-aligned ellipse (exact on the axes, good enough for edge ramps).
    k0 = np.sqrt((x / a) ** 2 + (y / b) ** 2)
    k1 = np.sqrt((x / (a * a)) ** 2 + (y / (b * b)) ** 2) + 1e-6
    return k0 * (k0 - 1.0) / k1


def _box(x, y, a, b, r):
    # Signed distance to a rectangle of half-size (a, b) with corner radius r.
    qx, qy = np.abs(x) - a + r, np.abs(y) - b + r
    return np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2) + np.minimum(np.maximum(qx, qy), 0) - r


def _blend(img, alpha, color):
    """img (N, 3, H, W) <- color over img with per-pixel alpha (N, H, W); color (N, 3) or (N, 3, H, W).

    Channels first, so numpy's inner loops run along image rows rather than over 3 channels (4x faster)."""
    # Blend only inside the box where alpha > 0 and only the faces it touches: most parts cover a small
    # fraction of their region, and parts gated by an attribute are absent from about half the faces.
    nz = alpha > 0
    faces, rows, cols = nz.any((1, 2)), nz.any((0, 2)), nz.any((0, 1))
    if not faces.any():
        return
    r0, r1 = rows.argmax(), len(rows) - rows[::-1].argmax()
    c0, c1 = cols.argmax(), len(cols) - cols[::-1].argmax()
    color = color[:, :, None, None] if color.ndim == 2 else color[:, :, r0:r1, c0:c1]
    alpha = alpha[:, None, r0:r1, c0:c1]
    if faces.all():
        sub = img[:, :, r0:r1, c0:c1]
        sub += alpha * (color - sub)
    else:
        i = np.flatnonzero(faces)
        sub = img[i, :, r0:r1, c0:c1]
        img[i, :, r0:r1, c0:c1] = sub + alpha[i] * (color[i] - sub)


def _col(rgb):
    return np.asarray(rgb, np.float32) / 255.0


# Colour tables (sRGB / 255). Skin runs light to dark; pale_skin picks from the first part of the ramp.
_SKIN_RAMP = _col([[255, 228, 210], [244, 206, 180], [226, 180, 146], [198, 144, 106], [160, 106, 72],
                   [116, 74, 50], [84, 54, 38]])
_DARK_HAIR = _col([[22, 18, 18], [45, 30, 22], [62, 40, 28], [34, 28, 40]])
_LIGHT_HAIR = _col([[226, 196, 120], [200, 160, 90], [182, 86, 40], [150, 110, 70], [196, 196, 200],
                    [236, 218, 160]])
_EYE = _col([[70, 44, 24], [40, 90, 160], [60, 120, 70], [100, 110, 120], [110, 70, 30]])
_FRAME = _col([[15, 15, 18], [70, 40, 20], [120, 20, 30], [20, 40, 100]])


def _ramp(table, t):
    """Piecewise-linear interpolation in a colour table, t in [0, 1] -> (N, 3)."""
    x = t * (len(table) - 1)
    i = np.clip(np.floor(x).astype(np.int64), 0, len(table) - 2)
    f = (x - i)[:, None]
    return table[i] * (1 - f) + table[i + 1] * f


def _hsv(h, s, v):
    """Vectorised HSV -> RGB, all (N,) in [0, 1] -> (N, 3)."""
    i = np.floor(h * 6).astype(np.int64) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = np.stack([np.stack(c, -1) for c in
                      [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]], 1)  # (N, 6, 3)
    return table[np.arange(len(h)), i].astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
# Synthetic faces

N_FRECKLES = 12


def _face_params(indices: np.ndarray, overrides: dict | None = None) -> dict:
    """Every choice that defines faces `indices`, as (N,) float32 arrays (colours (N, 3)); attributes 0/1."""
    r = _Draws(indices)
    p = {name: (r.uniform("attr/" + name) < 0.5).astype(np.float32) for name in ATTRIBUTES}
    for name, value in (overrides or {}).items():
        if name not in ATTRIBUTES:
            raise DataError(f"unknown attribute override {name!r}: choose from {', '.join(ATTRIBUTES)}")
        p[name] = np.full(len(indices), float(bool(value)), np.float32)
    # Coarse: position, scale, pose, face shape.
    p["cx"], p["cy"] = r.uniform("cx", -0.08, 0.08), r.uniform("cy", 0.0, 0.1)
    p["scale"] = r.uniform("scale", 1.0, 1.15)
    p["roll"] = r.uniform("roll", -0.2, 0.2)  # radians, about +-11 degrees
    p["yaw"] = r.uniform("yaw", -1.0, 1.0)  # shifts the features sideways, the nose most (it sticks out most)
    p["face_w"], p["face_h"] = r.uniform("face_w", 0.39, 0.46), r.uniform("face_h", 0.52, 0.58)
    p["chin"] = r.uniform("chin", 0.0, 0.3)  # how much the face narrows towards the chin
    # Middle: features and hair style.
    p["eye_dx"], p["eye_y"] = r.uniform("eye_dx", 0.16, 0.19), r.uniform("eye_y", -0.1, -0.05)
    p["eye_w"], p["eye_h"] = r.uniform("eye_w", 0.085, 0.105), r.uniform("eye_h", 0.055, 0.07)
    p["gaze"] = r.uniform("gaze", -0.02, 0.02)
    p["brow_tilt"] = r.uniform("brow_tilt", -0.04, 0.04)
    p["mouth_y"], p["mouth_w"] = r.uniform("mouth_y", 0.27, 0.32), r.uniform("mouth_w", 0.12, 0.15)
    p["mouth_h"] = r.uniform("mouth_h", 0.09, 0.12)
    p["frown"] = r.uniform("frown", -0.015, 0.01)
    p["hair_vol"] = r.uniform("hair_vol", 0.05, 0.13)
    p["hairline"] = r.uniform("hairline", -0.46, -0.38)
    p["parting"] = r.uniform("parting", -0.2, 0.2)
    p["hair_len"] = r.uniform("hair_len", 0.85, 1.25)
    p["hat_h"] = r.uniform("hat_h", 0.3, 0.42)
    # Fine: colours and texture.
    t = r.uniform("skin")
    p["skin"] = _ramp(_SKIN_RAMP, np.where(p["pale_skin"] > 0, 0.28 * t, 0.42 + 0.58 * t))
    p["hair"] = np.where(p["dark_hair"][:, None] > 0, r.choice("hair_dark", _DARK_HAIR),
                         r.choice("hair_light", _LIGHT_HAIR)) * r.uniform("hair_shade", 0.9, 1.1)[:, None]
    p["eye"] = r.choice("eye", _EYE)
    p["frame"] = r.choice("frame", _FRAME)
    p["bg"] = _hsv(r.uniform("bg_h"), r.uniform("bg_s", 0.1, 0.5), r.uniform("bg_v", 0.45, 0.95))
    p["shirt"] = _hsv(r.uniform("shirt_h"), r.uniform("shirt_s", 0.2, 0.8), r.uniform("shirt_v", 0.25, 0.85))
    p["hat"] = _hsv(r.uniform("hat_h_"), r.uniform("hat_s", 0.4, 0.9), r.uniform("hat_v", 0.3, 0.85))
    p["hair_freq"], p["hair_phase"] = r.uniform("hair_freq", 40, 60), r.uniform("hair_phase", 0, 2 * math.pi)
    p["freckle_x"] = np.stack([r.uniform(f"freckle_x{k}", 0.04, 0.3) for k in range(N_FRECKLES)], 1)
    p["freckle_y"] = np.stack([r.uniform(f"freckle_y{k}", 0.02, 0.17) for k in range(N_FRECKLES)], 1)
    p["freckle_r"] = np.stack([r.uniform(f"freckle_r{k}", 0.018, 0.028) for k in range(N_FRECKLES)], 1)
    return p


def _check_render_resolution(resolution) -> int:
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or \
            not SYNTHETIC_RES[0] <= resolution <= SYNTHETIC_RES[1]:
        raise DataError(f"synthetic faces render at {SYNTHETIC_RES[0]} to {SYNTHETIC_RES[1]} pixels, "
                        f"got {resolution!r}: pick a resolution in that range")
    return int(resolution)


def _render(p: dict, res: int) -> np.ndarray:
    """Render faces with parameters p at res x res -> float32 (N, 3, H, W) in [0, 1].

    Each part is evaluated only inside its bounding box (the union over the batch), so small parts like eyes and
    freckles cost little at 256x256; the large ones (face, hair, shirt) dominate."""
    n = len(p["cx"])
    pw = 2.0 / res  # pixel width in image units; the image spans [-1, 1] in x (right) and y (down)
    g = (np.arange(res, dtype=np.float32) + 0.5) * pw - 1.0
    U, V = g[None, None, :], g[None, :, None]  # (1, 1, W), (1, H, 1)

    def c(name):  # a per-face scalar, broadcastable against (N, H, W) grids
        return p[name][:, None, None]

    # Body coordinates follow the head's position and size but not its roll; head coordinates roll as well.
    s, cx, cy, roll = c("scale"), c("cx"), c("cy"), c("roll")
    cr, sr = np.cos(roll), np.sin(roll)
    bx_full, by_full = (U - cx) / s, (V - cy) / s
    x_full, y_full = cr * bx_full + sr * by_full, -sr * bx_full + cr * by_full
    lpw = pw / s  # a pixel's width in head units

    # Background: a vertical gradient of one colour.
    img = p["bg"][:, :, None, None] * (1.08 - 0.16 * (V[:, None] + 1) / 2)
    img = np.ascontiguousarray(np.broadcast_to(img, (n, 3, res, res)), dtype=np.float32)  # (N, 3, H, W)

    def region(x0, x1, y0, y1, body=False):
        """(x, y, img) restricted to the pixels that a part spanning [x0, x1] x [y0, y1] in head (or body)
        coordinates can touch in any face of the batch; img is a view, so blending into it draws."""
        px = np.array([x0, x1, x0, x1], np.float32)[None]
        py = np.array([y0, y0, y1, y1], np.float32)[None]
        c_, s_ = (1.0, 0.0) if body else (cr[:, :, 0], sr[:, :, 0])
        u = cx[:, :, 0] + s[:, :, 0] * (c_ * px - s_ * py)
        v = cy[:, :, 0] + s[:, :, 0] * (s_ * px + c_ * py)
        lo_c, hi_c = int(np.floor((u.min() + 1) / pw)) - 1, int(np.ceil((u.max() + 1) / pw)) + 1
        lo_r, hi_r = int(np.floor((v.min() + 1) / pw)) - 1, int(np.ceil((v.max() + 1) / pw)) + 1
        rs, cs = slice(max(lo_r, 0), max(min(hi_r, res), 0)), slice(max(lo_c, 0), max(min(hi_c, res), 0))
        if body:
            return bx_full[:, :, cs], by_full[:, rs, :], img[:, :, rs, cs]
        return x_full[:, rs, cs], y_full[:, rs, cs], img[:, :, rs, cs]

    yaw = c("yaw")
    fw, fh, chin, vol = c("face_w"), c("face_h"), c("chin"), c("hair_vol")
    skin, hair = p["skin"], p["hair"]
    black = np.zeros((n, 3), np.float32)

    def hair_tex(x, y):
        # Stripes running down the hair: fine-scale texture with a per-face frequency and phase.
        stripes = 0.93 + 0.07 * np.sin(c("hair_freq") * x + 6 * y + c("hair_phase"))
        return hair[:, :, None, None] * stripes[:, None]

    # Shoulders and shirt.
    bx, by, im = region(-1.2, 1.2, 0.7, 2.0, body=True)
    _blend(im, _cover(_ellipse(bx, by - 1.38, 0.95, 0.62), lpw), p["shirt"])

    # Ears (long hair, drawn next, hides them).
    for side in (-1, 1):
        x, y, im = region(side * 0.47 - 0.12, side * 0.47 + 0.12, -0.16, 0.12)
        ear = _ellipse(x - side * (fw + 0.015 - 0.02 * side * yaw), y + 0.02, 0.06 * (1 - 0.3 * side * yaw), 0.11)
        _blend(im, _cover(ear, lpw), skin * 0.92)

    # Long hair, behind the head: a rounded block from the crown down past the shoulders.
    x, y, im = region(-0.85, 0.85, -0.8, 1.3)
    hair_top = -fh - 0.04 - vol
    long_bottom = c("hair_len")
    back = _box(x, y - (hair_top + long_bottom) / 2, fw + 0.11 + vol, (long_bottom - hair_top) / 2, 0.25)
    _blend(im, _cover(back, lpw) * c("long_hair"), hair_tex(x, y) * 0.85)

    # Neck, shadowed under the jaw.
    bx, by, im = region(-0.25, 0.25, 0.2, 1.3, body=True)
    _blend(im, _cover(_box(bx, by - 0.8, 0.17, 0.45, 0.05), lpw), skin * 0.85)

    # Face: an ellipse that narrows towards the chin (face shape), moved a little against the yaw; lit from the
    # front, so darker towards the edges.
    x, y, im = region(-0.52, 0.52, -0.6, 0.6)
    fx = (x + 0.02 * yaw) * (1 + chin * np.maximum(y, 0) / fh)
    shade = 1.0 - 0.12 * np.minimum((x + 0.3 * yaw) ** 2 / fw**2 + 0.5 * (y / fh) ** 2, 1)
    _blend(im, _cover(_ellipse(fx, y, fw, fh), lpw), skin[:, :, None, None] * shade[:, None])

    # Hair on top: inside a cap bigger than the head, above a hairline that drops to the temples at the sides,
    # with a notch at the parting.
    x, y, im = region(-0.62, 0.62, -0.78, 0.2)
    cap = _ellipse(x, y + 0.06, fw + vol, fh + vol + 0.02)
    hairline = c("hairline") + 0.35 * np.minimum(np.abs(x / fw), 1.2) ** 4 \
        - 0.06 * np.exp(-((x - c("parting")) / 0.05) ** 2)
    _blend(im, _cover(np.maximum(cap, y - hairline), lpw), hair_tex(x, y))

    # Freckles: a dozen brown spots over the cheeks and nose, alternating sides.
    x, y, im = region(-0.42, 0.42, -0.02, 0.22)
    if p["freckles"].any():
        for k in range(N_FRECKLES):
            fxk = p["freckle_x"][:, k, None, None] * (1 if k % 2 else -1) + 0.06 * yaw
            d = np.sqrt((x - fxk) ** 2 + (y - p["freckle_y"][:, k, None, None]) ** 2) \
                - p["freckle_r"][:, k, None, None]
            _blend(im, _cover(d, lpw) * (0.75 * c("freckles")), skin * np.float32([0.62, 0.45, 0.33]))

    # Nose: a shadow under the tip and a faint line down one side, shifted most by the yaw.
    x, y, im = region(-0.2, 0.2, -0.06, 0.2)
    nx = x - 0.1 * yaw
    _blend(im, _cover(_ellipse(nx, y - 0.15, 0.055, 0.026), lpw) * 0.6, skin * 0.7)
    _blend(im, _line(nx - 0.03, 0.012, lpw, np.abs(y - 0.05) - 0.09) * 0.35, skin * 0.75)

    # Eyes and brows.
    ew, eh, open_, closed = c("eye_w"), c("eye_h"), c("eyes_open"), 1 - c("eyes_open")
    for side in (-1, 1):
        x, y, im = region(side * 0.175 - 0.26, side * 0.175 + 0.26, -0.3, 0.05)
        ex, ey = x - (side * c("eye_dx") + 0.07 * yaw), y - c("eye_y")
        # Brow: an arc above the eye, tilted per face.
        bt = ex / (ew * 1.15)
        brow = ey + 0.12 + 0.035 * (1 - bt**2) - side * c("brow_tilt") * bt
        _blend(im, _line(brow, 0.02, lpw, np.abs(ex) - ew * 1.15), hair * 0.75)
        # Open: dark outline, white almond, iris, pupil, highlight.
        _blend(im, _cover(_ellipse(ex, ey, ew + 0.012, eh + 0.012), lpw) * open_, black + 0.12)
        sclera = _cover(_ellipse(ex, ey, ew, eh), lpw) * open_
        _blend(im, sclera, black + 0.96)
        ix, ir = ex - c("gaze"), eh * 0.95
        r_iris = np.sqrt(ix**2 + ey**2)
        _blend(im, sclera * _cover(r_iris - ir, lpw), p["eye"])
        _blend(im, sclera * _cover(r_iris - ir * 0.45, lpw), black)
        _blend(im, sclera * _cover(np.sqrt((ix + 0.02) ** 2 + (ey + 0.02) ** 2) - ir * 0.25, lpw), black + 1)
        # Closed: the lid a little darker than the skin, and a lash line curving down.
        lid = ey - 0.025 * (1 - np.minimum((ex / ew) ** 2, 1))
        _blend(im, _cover(_ellipse(ex, ey + 0.01, ew, eh * 0.8), lpw) * (0.25 * closed), skin * 0.8)
        _blend(im, _line(lid, 0.018, lpw, np.abs(ex) - ew) * closed, black + np.float32([0.2, 0.12, 0.1]))

    # Mouth: a centre line whose corners rise when smiling; an open mouth is a dark opening with teeth.
    x, y, im = region(-0.33, 0.33, 0.12, 0.5)
    smile, mopen = c("smiling"), c("mouth_open")
    mx = x - 0.07 * yaw
    mw = c("mouth_w") * (1 + 0.3 * smile)
    mt = np.clip(mx / mw, -1, 1)
    bend = smile * 0.07 + (1 - smile) * c("frown")
    center = y - c("mouth_y") - bend * (0.5 - mt**2)  # bend > 0: the corners (mt = +-1) above the middle
    slope = np.sqrt(1 + (2 * bend * mx / mw**2) ** 2)  # vertical distance -> distance across the stroke
    ends = np.abs(mx) - mw
    lips = skin * np.float32([0.85, 0.55, 0.55])
    _blend(im, _line(center / slope, 0.022, lpw, ends) * (1 - mopen), lips)
    # Open: below the centre line (a D shape) when smiling, around it (an O shape) when not.
    depth = c("mouth_h") * np.sqrt(1 - mt**2)
    up = (1 - smile) * depth * 0.5
    down = smile * depth + (1 - smile) * depth * 0.5
    opening = np.maximum(np.maximum(-up - center, center - down) / slope, ends)
    _blend(im, _cover(opening - 0.02, lpw) * mopen, lips)
    _blend(im, _cover(opening, lpw) * mopen, black + np.float32([0.3, 0.06, 0.08]))
    teeth = np.maximum(opening, center + up - 0.35 * c("mouth_h"))
    _blend(im, _cover(teeth, lpw) * mopen, black + 0.95)

    # Bangs: a fringe from the hair cap down to just above the brows, with a ragged edge.
    x, y, im = region(-0.56, 0.56, -0.8, -0.1)
    fringe = c("eye_y") - 0.15 + 0.015 * np.sin(x * 45 + c("hair_phase"))
    bang = np.maximum(_ellipse(x, y + 0.04, fw + 0.02, fh + 0.08), y - fringe)
    _blend(im, _cover(bang, lpw) * c("bangs"), hair_tex(x, y) * 0.95)

    # Eyeglasses: two round rims, a bridge and arms to the ears; lightly tinted lenses.
    x, y, im = region(-0.56, 0.56, -0.32, 0.12)
    glasses, rim_r, ex0 = c("eyeglasses"), ew + 0.045, 0.07 * yaw
    gy = y - c("eye_y")
    for side in (-1, 1):
        dist = np.sqrt((x - (side * c("eye_dx") + ex0)) ** 2 + gy**2)
        _blend(im, _cover(dist - rim_r, lpw) * (0.18 * glasses), black + 0.85)
        _blend(im, _line(dist - rim_r, 0.022, lpw) * glasses, p["frame"])
        arm_x0 = side * (c("eye_dx") + rim_r) + ex0
        arm_len = fw + 0.03 - np.abs(arm_x0)
        arm_mid = arm_x0 + side * arm_len / 2
        _blend(im, _line(gy + 0.02, 0.018, lpw, np.abs(x - arm_mid) - arm_len / 2) * glasses, p["frame"])
    bridge = np.abs(x - ex0) - (c("eye_dx") - rim_r)
    _blend(im, _line(gy + 0.015, 0.02, lpw, bridge) * glasses, p["frame"])

    # Hat: a dome with a brim, sitting on the hair above the forehead.
    x, y, im = region(-0.72, 0.72, -1.1, -0.3)
    hat, brim_y = c("wearing_hat"), c("hairline") - 0.02
    dome = np.maximum(_ellipse(x, y - brim_y, fw + vol + 0.02, c("hat_h") + vol), y - brim_y)
    _blend(im, _cover(dome, lpw) * hat, p["hat"])
    brim = _box(x, y - brim_y, fw + vol + 0.08, 0.04, 0.035)
    _blend(im, _cover(brim, lpw) * hat, p["hat"] * 0.75)
    return img


def _as_indices(indices) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.ndim != 1 or (idx.size and (not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0)):
        raise DataError(f"face indices must be a 1-D list of non-negative integers, got {indices!r:.60}")
    return idx.astype(np.int64)


def _render_uint8(indices: np.ndarray, resolution: int, overrides: dict | None = None):
    p = _face_params(indices, overrides)
    img = _render(p, resolution)
    images = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    labels = np.stack([p[name] for name in ATTRIBUTES], 1).astype(np.uint8)
    return images, labels


def render_faces(indices, resolution: int, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic faces for `indices` -> (images uint8 (N, H, W, 3), labels uint8 (N, len(ATTRIBUTES)) of 0/1).

    Each face depends on its index alone (not on the batch it is rendered in). Rendered `batch` faces at a time,
    vectorised with numpy; any resolution from 16 to 256."""
    idx = _as_indices(indices)
    res = _check_render_resolution(resolution)
    images = np.empty((len(idx), res, res, 3), np.uint8)
    labels = np.empty((len(idx), len(ATTRIBUTES)), np.uint8)
    step = max(1, batch * 4096 // (res * res)) if res > 64 else batch  # bound memory at large resolutions
    for i in range(0, len(idx), step):
        images[i:i + step], labels[i:i + step] = _render_uint8(idx[i:i + step], res)
    return images, labels


def render_face(index: int, resolution: int, **overrides) -> tuple[np.ndarray, np.ndarray]:
    """One face -> (image uint8 (H, W, 3), labels uint8 (len(ATTRIBUTES),)). Keyword overrides force attributes,
    e.g. render_face(7, 64, smiling=True); everything else about face 7 stays the same."""
    idx = _as_indices([index])
    images, labels = _render_uint8(idx, _check_render_resolution(resolution), overrides)
    return images[0], labels[0]


# ----------------------------------------------------------------------------------------------------------------
# Data sets


class ImageDataset(torch.utils.data.Dataset):
    """Square uint8 images at one resolution, with optional 0/1 labels.

    Item i -> (image uint8 tensor (3, H, W), labels float32 tensor (len(attribute_names),)). With mirror=True the
    data set is twice as long and items N..2N-1 are the horizontal flips of items 0..N-1, as in the official
    code's --mirror, so flips need no random state in the workers. Images come either from an array (in memory, or
    a read-only memory map of a cache file: raw uint8 pixels, `count` x H x W x 3) or are rendered on the fly
    (synthetic faces). Picklable: a memory map is reopened in each DataLoader worker rather than copied, so every
    process shares the one copy in the page cache."""

    def __init__(self, name: str, resolution: int, count: int, *, attribute_names=(), images=None,
                 images_path: str | None = None, labels=None, synthetic: bool = False, mirror: bool = False,
                 num_skipped: int = 0):
        self.name = name
        self.resolution = resolution
        self.attribute_names = list(attribute_names)
        self.num_skipped = num_skipped
        self.mirror = mirror
        self._count = count
        self._images = images  # (count, H, W, 3) uint8, or None
        self._images_path = images_path  # cache file of raw pixels to memory-map lazily, or None
        self._labels = np.zeros((count, 0), np.float32) if labels is None else np.asarray(labels, np.float32)
        self._synthetic = synthetic

    def __len__(self) -> int:
        return self._count * (2 if self.mirror else 1)

    def __getstate__(self):
        state = self.__dict__.copy()
        if self._images_path is not None:
            state["_images"] = None  # reopen the memory map in the worker instead of pickling its contents
        return state

    def _array(self):
        if self._images is None and self._images_path is not None:
            shape = (self._count, self.resolution, self.resolution, 3)
            self._images = np.memmap(self._images_path, np.uint8, "r", shape=shape)
        return self._images

    def _fetch(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Items idx -> (images uint8 (B, H, W, 3), labels float32 (B, K))."""
        idx = np.asarray(idx, np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"index out of range for a data set of {len(self)} images")
        src, flip = idx % self._count, idx >= self._count
        if self._synthetic and self._array() is None:
            images, _ = render_faces(src, self.resolution)
        else:
            images = np.asarray(self._array()[np.sort(src)] if len(src) > 1 else self._array()[src])
            if len(src) > 1:  # memory maps read fastest in order; put the batch back in its own order
                images = images[np.argsort(np.argsort(src, kind="stable"), kind="stable")]
        if flip.any():  # in place: images is a fresh copy here, and np.where over the batch costs 5x the read
            images[flip] = images[flip, :, ::-1]
        return images, self._labels[src]

    def __getitem__(self, i):
        images, labels = self._fetch(np.array([int(i)]))
        return torch.from_numpy(np.ascontiguousarray(images[0].transpose(2, 0, 1))), torch.from_numpy(labels[0])

    def __getitems__(self, indices):
        # DataLoader calls this with a whole batch: synthetic faces then render vectorised, 3-10x faster.
        images, labels = self._fetch(np.array(indices))
        images = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        labels = torch.from_numpy(labels)
        return [(images[k], labels[k]) for k in range(len(indices))]

    def __repr__(self):
        return (f"ImageDataset({self.name!r}, {len(self)} images at {self.resolution}x{self.resolution}, "
                f"{len(self.attribute_names)} attributes, {self.num_skipped} skipped)")


def _check_resolution(resolution, synthetic: bool) -> int:
    lo, hi = SYNTHETIC_RES if synthetic else REAL_RES
    ok = isinstance(resolution, (int, np.integer)) and not isinstance(resolution, bool) and \
        lo <= resolution <= hi and resolution & (resolution - 1) == 0
    if not ok:
        kind = "synthetic faces" if synthetic else "images"
        raise DataError(f"resolution {resolution!r} is not supported for {kind}: use a power of two from {lo} to {hi}")
    return int(resolution)


def _square_resize(im: Image.Image, res: int, pad: bool) -> np.ndarray:
    """PIL image of any mode and shape -> uint8 (res, res, 3).

    Non-square images are centre-cropped (pad=True: padded with black to a centred square instead). Resizing uses
    PIL's LANCZOS (a=3), whose kernel PIL widens by the reduction factor, so downscaling is properly antialiased;
    it is also the filter of the official dataset_tool.py. The filter matters for FID: box against Lanczos moved
    FFHQ-256 FID from 4.3 to 5.3, so real statistics must be computed through this same function."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")  # transparent pixels over white, not over whatever colour they happen to hold
        canvas = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(canvas, im)
    im = im.convert("RGB")  # grayscale, palette, CMYK, 16-bit ...
    w, h = im.size
    if w != h:
        if pad:
            side = max(w, h)
            canvas = Image.new("RGB", (side, side))
            canvas.paste(im, ((side - w) // 2, (side - h) // 2))
            im = canvas
        else:
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            im = im.crop((left, top, left + side, top + side))
    if im.size != (res, res):
        im = im.resize((res, res), RESIZE_FILTER)
    return np.asarray(im, np.uint8)


def _short_hash(*parts) -> str:
    return hashlib.sha1("\0".join(map(str, parts)).encode()).hexdigest()[:10]


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


# ----------------------------------------------------------------------------------------------------------------
# The on-disk cache: decoded images, written once, memory-mapped read-only by every process.
#
# One entry is two files in the cache folder: NAME.u8, the raw uint8 pixels (count x res x res x 3, no header, so
# it is written straight from the decoder without ever holding the data set in memory), and NAME.meta.npz (count,
# labels, label names, skipped files). The meta file is written last, after the pixels are complete, flushed and
# renamed into place: an entry counts only when its meta file exists and the pixel file has exactly the size the
# meta file gives, so a build killed at any point leaves nothing that a later run trusts. A lock file (NAME.lock)
# makes exactly one process build an entry; the others wait for it and then map the result.

CACHE_ENV = "STYLEGAN_CACHE"


def cache_root() -> Path:
    """$STYLEGAN_CACHE or ~/.cache/stylegan-pytorch: decoded data sets (in data/), FID statistics, classifiers."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "stylegan-pytorch").expanduser()


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


def _read_cache(folder: Path, name: str, res: int) -> dict | None:
    """The meta data of a complete cache entry, or None when it is missing or incomplete."""
    meta_path, pixels = folder / f"{name}.meta.npz", folder / f"{name}.u8"
    try:
        with np.load(meta_path) as f:
            meta = {k: f[k] for k in f.files}
        count = int(meta["count"])
        if pixels.stat().st_size != count * res * res * 3:
            return None
    except (OSError, ValueError, KeyError):  # missing, truncated or foreign: rebuilt, never trusted
        return None
    return meta


@contextlib.contextmanager
def _build_lock(path: Path):
    """Hold an exclusive lock on `path`; another process holding it makes this one wait (and say so). Yields True
    when the lock is real. fcntl.flock exists on Linux and macOS (and works on local disks and modern NFS); where
    it is missing (Windows) every process builds into its own temporary file and the atomic renames keep the
    entry whole, at the cost of duplicated work."""
    try:
        import fcntl
    except ImportError:
        yield False
        return
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"data: waiting for another process to build {path.with_suffix('')}", file=sys.stderr)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _cached(folder: Path, name: str, res: int, count: int, what: str, fill) -> dict:
    """The meta data of cache entry `name`, building it first if needed (one process builds, the others wait).

    fill(out) writes images into `out` (a writable (count, res, res, 3) uint8 memory map) from row 0 on and
    returns (number written, dict of extra arrays for the meta file, at least 'labels')."""
    meta = _read_cache(folder, name, res)
    if meta is not None:
        return meta
    folder.mkdir(parents=True, exist_ok=True)
    pixels, meta_path = folder / f"{name}.u8", folder / f"{name}.meta.npz"
    with _build_lock(folder / f"{name}.lock") as exclusive:
        meta = _read_cache(folder, name, res)  # built by another process while this one waited
        if meta is not None:
            return meta
        need, free = count * res * res * 3, shutil.disk_usage(folder).free
        if need > free:
            raise DataError(f"the data cache needs {_size(need)} for {count} images at {res}x{res} but {folder} has "
                            f"only {_size(free)} free: pass --cache-dir on a larger disk (or set ${CACHE_ENV})")
        print(f"data: caching {what}: {count} images at {res}x{res}, {_size(need)} in {folder}", file=sys.stderr)
        tmp = folder / f"{name}.u8.tmp" if exclusive else folder / f"{name}.u8.tmp{os.getpid()}"
        meta_path.unlink(missing_ok=True)  # an older entry stops counting before its pixels are replaced
        with open(tmp, "wb") as f:  # truncates what a killed build left; sparse until written
            f.truncate(max(need, 1))
        try:
            out = np.memmap(tmp, np.uint8, "r+", shape=(count, res, res, 3))
            written, extra = fill(out)
            out.flush()
            del out
            with open(tmp, "r+b") as f:
                f.truncate(written * res * res * 3)  # rows of skipped files were never used
                os.fsync(f.fileno())
            os.replace(tmp, pixels)
            meta = {"count": np.int64(written), **extra}
            with tempfile.NamedTemporaryFile(dir=folder, suffix=".npz", delete=False) as f:
                np.savez(f, **meta)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(f.name, 0o644)  # readable by whoever can read the pixels, as a temporary file is not
            os.replace(f.name, meta_path)  # last: from here on the entry is complete
        finally:
            if tmp.exists():
                tmp.unlink()
    return meta


# ----------------------------------------------------------------------------------------------------------------
# Sources: a stable id of the contents (computed without decoding anything) and a table of encoded images.


def _source_id(source: str, split: str) -> str:
    """A name for the source's contents, computed without `datasets` and without decoding anything, so a cache hit
    needs neither. A local folder or zip: its path and every file's name, size and modification time (any change
    makes a new entry). A Hub data set: its name and split; the revision is not part of it (finding it would need
    the network), so delete the entry to pick up a new version of the data set."""
    path = Path(source).expanduser()
    if path.is_dir():
        files = []
        for f in sorted(path.rglob("*")):
            if f.is_file():
                st = f.stat()
                files.append(f"{f.relative_to(path)}:{st.st_size}:{st.st_mtime_ns}")
        if not any(f.rsplit(":", 2)[0].lower().endswith(IMAGE_EXTENSIONS) for f in files):
            raise DataError(f"no image files found under {path}: put .png/.jpg images in it (subfolders are searched)")
        return f"folder-{_short_hash(path.resolve(), split, *files)}"
    if path.is_file():
        if not path.name.lower().endswith(".zip"):
            raise DataError(f"{path} is a file but not a .zip: pass a folder of images, a .zip of images, "
                            "'synthetic', or a Hub name like user/name")
        st = path.stat()
        return f"zip-{_short_hash(path.resolve(), split, st.st_size, st.st_mtime_ns)}"
    if re.fullmatch(r"[\w.-]+/[\w.-]+", source) and not source.startswith((".", "/")):
        return f"hub-{source.replace('/', '-')}-{split}"
    raise DataError(f"data source {source!r} does not exist: pass a folder of images, a .zip, 'synthetic', "
                    "'synthetic:N' or a Hub name like user/name")


def _load_table(source: str, split: str, hf_cache: str, stream: bool = False):
    """A `datasets.Dataset` for a folder, a zip or a Hub name (kept in datasets' own cache under hf_cache), or with
    stream=True a Hub data set as a `datasets.IterableDataset` read over the network, never stored whole.

    A folder's table holds paths, not copies of the files; a zip is extracted once into hf_cache; a Hub data set
    is downloaded there in full unless streamed."""
    import datasets

    path = Path(source).expanduser()
    kwargs = dict(split=split, cache_dir=hf_cache)
    if not path.exists():
        try:
            return datasets.load_dataset(source, streaming=stream, **kwargs)
        except Exception as e:
            raise DataError(f"could not load Hub data set {source!r} split {split!r} ({_first_line(e)[:200]}): "
                            "check the name and split, and that you are online") from None
    if stream:
        raise DataError(f"stream=True (--stream) is for Hub data sets; {source} is local: leave it out")
    loader = dict(data_dir=str(path)) if path.is_dir() else dict(data_files={split: str(path)})
    try:
        return datasets.load_dataset("imagefolder", drop_labels=True, **loader, **kwargs)
    except Exception as e:
        raise DataError(f"could not read images from {path} ({_first_line(e)[:200]}): check that it holds "
                        f"images (and a {split!r} split, if it has split folders)") from None


def _prepare_table(table, source, split, image_column, label_columns, max_images):
    """Check the columns and keep the image (left encoded) and label columns, and image files only -> (rows,
    number of rows). A stream's length comes from the data set's split info, else from max_images."""
    import datasets

    features = table.features or {}  # a stream may not know its columns before its first row
    if features and image_column not in features:
        raise DataError(f"{source!r} has no column {image_column!r}: pass --image-column, one of "
                        f"{', '.join(features)}")
    missing = [c for c in label_columns if features and c not in features]
    if missing:
        raise DataError(f"{source!r} has no label column(s) {', '.join(missing)}: choose from {', '.join(features)}")
    for c in label_columns:
        feature = features.get(c)
        numeric = feature is None or isinstance(feature, datasets.ClassLabel) or (
            isinstance(feature, datasets.Value) and re.fullmatch(r"bool|u?int\d+|float\d+", feature.dtype))
        if not numeric:
            kind = feature.dtype if isinstance(feature, datasets.Value) else type(feature).__name__
            raise DataError(f"label column {c!r} of {source!r} holds {kind} values, not numbers: labels must be "
                            "0/1, -1/+1 or bool (> 0 means present); map the column to numbers or leave it out")
    if isinstance(features.get(image_column), datasets.Image):
        table = table.cast_column(image_column, datasets.Image(decode=False))  # we decode, to count failures
    if features:
        table = table.select_columns([image_column] + label_columns)
    if isinstance(table, datasets.IterableDataset):
        splits = table.info.splits or {}
        count = splits[split].num_examples if split in splits and splits[split].num_examples else None
        if max_images is not None:
            table, count = table.take(max_images), min(count or max_images, max_images)
        if count is None:
            raise DataError(f"the length of the streamed split {split!r} of {source!r} is unknown, and the cache "
                            "is sized before streaming: pass --max-images N")
        return table, count
    if isinstance(table.features.get(image_column), datasets.Image):  # inside zips every file is listed
        paths = [(v or {}).get("path") or "" for v in table[image_column]]
        keep = [k for k, p in enumerate(paths) if not p or p.split("::")[0].lower().endswith(IMAGE_EXTENSIONS)]
        if len(keep) < len(table):
            table = table.select(keep)
    if max_images is not None:
        table = table.select(range(min(max_images, len(table))))
    if len(table) == 0:
        raise DataError(f"{source!r} has no images: check the source and --split")
    return table, len(table)


def _decode_into(rows, count: int, image_column: str, label_columns: list, res: int, pad: bool,
                 out: np.ndarray) -> tuple[int, list, int]:
    """Decode the images of `rows` (any iterable of dicts: a table or a stream) in order, writing the readable ones
    to out[0], out[1], ... (at most `count`) -> (number written, their label rows, number of unreadable ones).
    Decodes a chunk at a time in threads, so memory stays bounded at any data set size."""
    import datasets
    from tqdm import tqdm

    feature = datasets.Image()

    def one(value):
        try:
            if isinstance(value, dict):
                value = feature.decode_example(value)
            elif isinstance(value, (bytes, str)):
                value = feature.decode_example({"bytes": value, "path": None} if isinstance(value, bytes)
                                               else {"bytes": None, "path": value})
            value.load()
            return _square_resize(value, res, pad)
        except Exception:  # corrupt, truncated or unreadable: skipped and counted, never a crash mid-run
            return None

    written, skipped, labels, rows = 0, 0, [], iter(rows)
    size = max(16, min(1024, 2**28 // (res * res * 3)))  # at most ~256 MiB of decoded images in flight
    with ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as pool, \
            tqdm(total=count, unit="img", desc=f"decoding at {res}x{res}", disable=None) as bar:  # PIL frees the GIL
        while written < count and (chunk := list(itertools.islice(rows, size))):
            for row, image in zip(chunk, pool.map(one, [row[image_column] for row in chunk])):
                if image is None:
                    skipped += 1
                elif written < count:  # a stream may hold more rows than its split info says
                    out[written] = image
                    labels.append([row[c] for c in label_columns])
                    written += 1
                bar.update()
    return written, labels, skipped


def _real_dataset(source, res, *, mirror, max_images, pad, split, image_column, label_columns, cache_dir, stream):
    folder = Path(cache_dir).expanduser() if cache_dir else cache_root() / "data"
    label_columns = list(label_columns or [])
    options = _short_hash(image_column, *label_columns)  # the columns read change the entry too
    name = f"{_source_id(source, split)}-{options}-{res}" + ("-pad" if pad else "") + \
        (f"-max{max_images}" if max_images else "")

    def fill(out):
        written, labels, skipped = _decode_into(rows, count, image_column, label_columns, res, pad, out)
        if not written:
            raise DataError(f"none of the {skipped} files in {source!r} could be read as an image: "
                            "check the files (corrupt? not images?)")
        try:
            labels = np.asarray(labels, np.float64).reshape(written, len(label_columns)) > 0
        except (TypeError, ValueError):
            raise DataError(f"label columns {', '.join(label_columns)} of {source!r} hold values that are not "
                            "numbers: labels must be 0/1, -1/+1 or bool") from None
        return written, {"labels": labels.astype(np.float32), "skipped": np.int64(skipped),
                         "attribute_names": np.array(label_columns, dtype=str)}

    meta = _read_cache(folder, name, res)
    if meta is None:  # list the files (or rows) only when there is something to build
        table = _load_table(source, split, str(folder / "hf"), stream)
        rows, count = _prepare_table(table, source, split, image_column, label_columns, max_images)
        meta = _cached(folder, name, res, count, source, fill)
    skipped = int(meta["skipped"])
    if skipped:
        print(f"data: skipped {skipped} unreadable file(s) in {source}", file=sys.stderr)
    return ImageDataset(name + ("-mirror" if mirror else ""), res, int(meta["count"]),
                        attribute_names=[str(a) for a in meta["attribute_names"]],
                        images_path=str(folder / f"{name}.u8"), labels=meta["labels"], mirror=mirror,
                        num_skipped=skipped)


def _synthetic_dataset(source, res, *, mirror, max_images, cache_dir):
    count = SYNTHETIC_DEFAULT_SIZE
    if source != "synthetic":
        m = re.fullmatch(r"synthetic:(\d+)", source)
        if not m or int(m.group(1)) == 0:
            raise DataError(f"bad synthetic source {source!r}: write 'synthetic' or 'synthetic:N' with N > 0")
        count = int(m.group(1))
    if max_images is not None:
        count = min(count, max_images)
    name = f"synthetic-{count}-{res}"
    labels = render_faces_labels(np.arange(count))
    path = None
    if cache_dir:  # render once into the cache; later runs (and every worker) just map it
        from tqdm import tqdm

        def fill(out):
            step = 256
            for i in tqdm(range(0, count, step), desc=f"rendering faces at {res}x{res}", unit="batch",
                          disable=None, leave=False):
                out[i:i + step] = render_faces(np.arange(i, min(i + step, count)), res)[0]
            return count, {"labels": labels}

        path = Path(cache_dir).expanduser() / f"{name}.u8"
        _cached(path.parent, name, res, count, "synthetic faces", fill)
    return ImageDataset(name + ("-mirror" if mirror else ""), res, count, attribute_names=ATTRIBUTES,
                        images_path=str(path) if path else None, labels=labels, synthetic=True, mirror=mirror)


def render_faces_labels(indices) -> np.ndarray:
    """Labels of faces `indices` without rendering them -> float32 (N, len(ATTRIBUTES)) of 0/1."""
    p = _face_params(_as_indices(indices))
    return np.stack([p[name] for name in ATTRIBUTES], 1).astype(np.float32)


def make_dataset(source: str = "synthetic", resolution: int = 32, *, mirror: bool = False,
                 max_images: int | None = None, pad: bool = False, split: str = "train",
                 image_column: str = "image", label_columns: list[str] | None = None,
                 cache_dir: str | None = None, stream: bool = False) -> ImageDataset:
    """The one entry point for training and metrics data.

    source: "synthetic" (SYNTHETIC_DEFAULT_SIZE faces) or "synthetic:N"; a folder of images (searched
            recursively) or a .zip, read with datasets' "imagefolder" builder; or a Hub name "user/name" (with
            `split`, `image_column` and optional `label_columns`, 0/1 or -1/+1 or bool, > 0 meaning present).
    Real images are decoded once into the on-disk cache (cache_dir, default cache_root()/data), keyed by the
    source's contents, the resolution and crop/pad; every later call, in any process, memory-maps that one copy.
    Unreadable files are skipped and counted in `num_skipped`. A Hub data set is downloaded whole by `datasets`
    before decoding, or with stream=True read over the network while it is decoded, so only the decoded copy
    ever takes disk space (for data sets larger than the disk). Synthetic faces are a pure function of their
    index and render on the fly, costing neither memory nor disk; with an explicit cache_dir they are rendered
    once into it instead (worth it at 128 and up, where rendering is slower than a GPU trains)."""
    if not isinstance(source, str) or not source:
        raise DataError(f"data source must be a non-empty string, got {source!r}")
    if max_images is not None and (not isinstance(max_images, int) or max_images < 1):
        raise DataError(f"max_images must be a positive integer or None, got {max_images!r}")
    if source == "synthetic" or source.startswith("synthetic:"):
        res = _check_resolution(resolution, synthetic=True)
        return _synthetic_dataset(source, res, mirror=mirror, max_images=max_images, cache_dir=cache_dir)
    res = _check_resolution(resolution, synthetic=False)
    return _real_dataset(source, res, mirror=mirror, max_images=max_images, pad=pad, split=split,
                         image_column=image_column, label_columns=label_columns, cache_dir=cache_dir, stream=stream)


# ----------------------------------------------------------------------------------------------------------------
# Command line: a labelled grid, attribute statistics, throughput.

_SHORT = {"eyeglasses": "glasses", "wearing_hat": "hat", "smiling": "smile", "mouth_open": "open mouth",
          "eyes_open": "eyes open", "long_hair": "long hair", "bangs": "bangs", "dark_hair": "dark hair",
          "pale_skin": "pale", "freckles": "freckles"}


def face_grid(indices, resolution: int = 64, cols: int = 8, zoom: int = 2) -> Image.Image:
    """A grid of faces with the attributes each one has written under it."""
    from PIL import ImageDraw, ImageFont

    images, labels = render_faces(indices, resolution)
    tile, text_h, gap = resolution * zoom, 54, 4
    rows = math.ceil(len(images) / cols)
    grid = Image.new("RGB", (cols * (tile + gap), rows * (tile + text_h)), "white")
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default(size=11)
    for k, (im, lab) in enumerate(zip(images, labels)):
        x, y = (k % cols) * (tile + gap), (k // cols) * (tile + text_h)
        grid.paste(Image.fromarray(im).resize((tile, tile), Image.NEAREST), (x, y))
        words = [_SHORT[a] for a, on in zip(ATTRIBUTES, lab) if on] or ["(none)"]
        lines, line = [], f"#{int(indices[k])}:"
        for w in words:  # wrap to the tile width
            if draw.textlength(line + " " + w + ",", font=font) > tile:
                lines.append(line)
                line = w
            else:
                line = f"{line} {w}" if not line.endswith(":") and line else f"{line} {w}"
            line += "," if w != words[-1] else ""
        lines.append(line)
        draw.multiline_text((x + 1, y + tile + 1), "\n".join(lines), fill="black", font=font, spacing=1)
    return grid


def attribute_stats(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (K,) and the correlation matrix (K, K) of the attributes over faces 0..n-1."""
    labels = render_faces_labels(np.arange(n))
    return labels.mean(0), np.corrcoef(labels.T)


def _bench(sizes=(32, 64, 256), seconds: float = 3.0):
    print(f"# {os.cpu_count()} CPU(s); numbers are images/s on one process unless noted")
    for res in sizes:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            render_faces(np.arange(n, n + 64), res)
            n += 64
        print(f"synthetic render_faces  {res:4d}x{res:<4d} {n / (time.perf_counter() - t0):8.0f} img/s")
    for res in sizes:
        ds = make_dataset("synthetic", res)
        loader = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True, num_workers=2)
        n, t0 = 0, time.perf_counter()
        for img, _ in loader:
            n += len(img)
            if time.perf_counter() - t0 > seconds:
                break
        print(f"synthetic DataLoader(2 workers) {res:4d}  {n / (time.perf_counter() - t0):8.0f} img/s")
    import datasets  # noqa: F401  (imported before timing: the import alone takes seconds)

    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as cache:
        count = 256
        images, _ = render_faces(np.arange(count), 256)
        for k, im in enumerate(images):  # 512x512 files, half PNG half JPEG, like a typical photo folder
            big = Image.fromarray(im).resize((512, 512), Image.BICUBIC)
            big.save(f"{tmp}/{k:05d}." + ("png" if k % 2 else "jpg"), quality=95)
        for res in sizes:
            t0 = time.perf_counter()
            ds = make_dataset(tmp, res, cache_dir=cache)
            dt = time.perf_counter() - t0
            loader = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True, num_workers=2)
            t1 = time.perf_counter()
            m = sum(len(img) for _ in range(4) for img, _ in loader)
            print(f"folder {count} x 512px -> {res:4d}: decode+resize {count / dt:6.0f} img/s (once), "
                  f"then DataLoader {m / (time.perf_counter() - t1):8.0f} img/s")


def _bench_cache_read(sizes=(64, 256, 1024), seconds: float = 3.0, batch: int = 32):
    """Random batches read from a warm cache in one single-threaded process (what one DataLoader worker does),
    through ImageDataset.__getitems__: memory-map gather, HWC -> CHW, tensors."""
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as cache:
        for res in sizes:
            count = max(64, min(4096, 2**28 // (res * res * 3)))  # up to 256 MiB of pixels per size
            name = f"bench-{res}"

            def fill(out):  # faces rendered at up to 256 and repeated up to 1024: the content does not matter
                small, _ = render_faces(np.arange(min(count, 256)), min(res, 256))
                f = res // small.shape[1]
                for i in range(count):
                    out[i] = small[i % len(small)].repeat(f, 0).repeat(f, 1)
                return count, {"labels": np.zeros((count, 0), np.float32)}

            _cached(Path(cache), name, res, count, "a benchmark", fill)
            ds = ImageDataset(name, res, count, images_path=str(Path(cache) / f"{name}.u8"))
            rng = np.random.default_rng(0)
            n, t0, c0 = 0, time.perf_counter(), time.process_time()
            while time.process_time() - c0 < seconds:
                ds.__getitems__(rng.integers(0, count, batch).tolist())
                n += batch
            # per CPU second of this single-threaded process (user + system, page faults included): what one core
            # delivers, whatever else the machine is running; the wall-clock rate is below it on a busy machine
            rate, wall = n / (time.process_time() - c0), n / (time.perf_counter() - t0)
            print(f"cache read {res:4d}x{res:<4d} {rate:8.0f} img/s per core  {rate * res * res * 3 / 2**20:7.0f} "
                  f"MiB/s per core  ({wall:.0f} img/s wall; random batches of {batch} from {count} images, page "
                  "cache warm)")


# The program that --bench-train launches for each training process: it runs train.py's main with a thread that
# samples its own memory, and records when the first optimizer step returns; the results go to a JSON file.
_TRAIN_PROBE = r"""
import json, os, sys, threading, time
t0 = time.time()
peak = {"anon": 0, "file": 0, "tree_pss": 0}

def kib(path, keys):
    out = {}
    try:
        for line in open(path):
            k, _, v = line.partition(":")
            if k in keys:
                out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out

def sample():
    while True:
        s = kib("/proc/self/status", ("RssAnon", "RssFile"))
        peak["anon"], peak["file"] = max(peak["anon"], s["RssAnon"]), max(peak["file"], s["RssFile"])
        pids = [os.getpid()]
        for t in os.listdir("/proc/self/task"):
            try:
                pids += [int(p) for p in open(f"/proc/self/task/{t}/children").read().split()]
            except OSError:
                pass
        peak["tree_pss"] = max(peak["tree_pss"], sum(kib(f"/proc/{p}/smaps_rollup", ("Pss",)).get("Pss", 0)
                                                     for p in pids))
        time.sleep(0.2)

threading.Thread(target=sample, daemon=True).start()
import torch
first = []
adam_step = torch.optim.Adam.step
def step(self, *a, **k):
    out = adam_step(self, *a, **k)
    if not first:
        first.append(time.time() - t0)
    return out
torch.optim.Adam.step = step
from torch.utils.data import dataloader
next_batch = dataloader._BaseDataLoaderIter.__next__
def timed_next(self):
    out = next_batch(self)
    timing.setdefault("first_batch_s", time.time() - t0)
    return out
dataloader._BaseDataLoaderIter.__next__ = timed_next
timing = {}
sys.path.insert(0, os.getcwd())
import data
import train
make_dataset = data.make_dataset
def timed_make_dataset(*a, **k):
    timing["data_start_s"] = time.time() - t0
    out = make_dataset(*a, **k)
    timing["data_s"] = time.time() - t0 - timing["data_start_s"]
    return out
data.make_dataset = timed_make_dataset
try:
    train.main(sys.argv[1:])
finally:
    hwm = kib("/proc/self/status", ("VmHWM",))["VmHWM"]
    with open(os.environ["PROBE_OUT"] + "." + os.environ.get("RANK", "0"), "w") as f:
        json.dump({"hwm": hwm, **peak, **timing, "first_step_s": first[0] if first else None,
                   "wall_s": time.time() - t0}, f)
"""


def _bench_train(folders, code: str = ".", procs=(1, 2), runs: int = 2):
    """Peak memory per training process and time to the first step, training at 128x128 on each folder.

    Each configuration runs `runs` times in a row: with this code the first run builds the cache (when it is
    not there yet) and the later ones map it warm. `code` is a folder with train.py and data.py, to compare two
    versions of the code on the same data."""
    import json
    import subprocess

    code = str(Path(code).resolve())
    print(f"# code {code}; {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}; MiB per process "
          "(max over ranks): VmHWM, peak RssAnon, peak RssFile, peak PSS of the rank and its DataLoader workers")
    print("times in s, max over ranks: make_dataset; from its call to the first batch out of the DataLoader; first "
          "optimizer step after process start, and after the call to make_dataset; the whole run")
    print(f"{'images':>7} {'procs':>5} {'run':>3} {'VmHWM':>7} {'anon':>7} {'file':>7} {'PSS+wk':>7} "
          f"{'data':>6} {'batch':>6} {'step':>6} {'step-data':>9} {'wall':>6}")
    for folder in folders:
        count = sum(1 for f in Path(folder).rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
        for nproc in procs:
            for run in range(runs):
                with tempfile.TemporaryDirectory() as tmp:
                    args = ["--data", str(folder), "--resolution", "128", "--start-res", "128", "--kimg", "0.032",
                            "--batch", "16", "--tick-kimg", "0.032", "--snap-kimg", "1", "--outdir", tmp]
                    launch = [sys.executable] if nproc == 1 else [
                        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                        "--master_port", str(29500 + os.getpid() % 1000), "--no-python", sys.executable]
                    proc = subprocess.run([*launch, "-c", _TRAIN_PROBE, *args], cwd=code, capture_output=True,
                                          text=True, env={**os.environ, "PROBE_OUT": f"{tmp}/probe"})
                    if proc.returncode:
                        raise RuntimeError(f"training failed:\n{proc.stderr[-3000:]}")
                    ranks = [json.loads(p.read_text()) for p in Path(tmp).glob("probe.*")]
                mib = lambda key: max(r[key] for r in ranks) / 2**20  # noqa: E731
                longest = lambda key: max(r[key] for r in ranks)  # noqa: E731
                print(f"{count:7d} {nproc:5d} {run + 1:3d} {mib('hwm'):7.0f} {mib('anon'):7.0f} {mib('file'):7.0f} "
                      f"{mib('tree_pss'):7.0f} {longest('data_s'):6.1f} "
                      f"{max(r['first_batch_s'] - r['data_start_s'] for r in ranks):6.1f} {longest('first_step_s'):6.1f} "
                      f"{max(r['first_step_s'] - r['data_start_s'] for r in ranks):9.1f} {longest('wall_s'):6.1f}",
                      flush=True)


def main(argv=None):
    from common import ArgumentParser, int_at_least

    parser = ArgumentParser(prog="data.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", metavar="PNG", help="save a labelled grid of synthetic faces")
    parser.add_argument("--seeds", default="0-31", help="face indices for --grid, e.g. 0-31 or 3,5,7")
    parser.add_argument("--res", type=int_at_least(1), default=64, help="resolution of the faces in --grid")
    parser.add_argument("--stats", type=int_at_least(1), metavar="N", help="attribute frequencies over faces 0..N-1")
    parser.add_argument("--bench", action="store_true",
                        help="images/s of synthetic faces, folder loading and cache reads")
    parser.add_argument("--bench-train", nargs="+", metavar="FOLDER",
                        help="peak memory per process and time to the first step, training at 128x128 on each folder")
    parser.add_argument("--procs", default="1,2", help="--bench-train: process counts (torchrun above 1)")
    parser.add_argument("--runs", type=int_at_least(1), default=2, help="--bench-train: runs of each configuration (the first "
                                                            "may build the cache, the later ones map it)")
    parser.add_argument("--code", default=".", help="--bench-train: the folder whose train.py runs (to compare two "
                                                    "versions of the code)")
    args = parser.parse_args(argv)
    if not (args.grid or args.stats or args.bench or args.bench_train):
        parser.error("nothing to do: pass --grid PNG, --stats N, --bench or --bench-train FOLDER")
    if args.grid:
        from common import parse_seeds
        face_grid(parse_seeds(args.seeds), _check_render_resolution(args.res)).save(args.grid, optimize=True)
        print(f"saved {args.grid}")
    if args.stats:
        freq, corr = attribute_stats(args.stats)
        for name, f in zip(ATTRIBUTES, freq):
            print(f"{name:12s} {f:.3f}")
        off = np.abs(corr - np.eye(len(corr)))
        i, j = np.unravel_index(off.argmax(), off.shape)
        print(f"largest |correlation| between two attributes: {off.max():.3f} ({ATTRIBUTES[i]}, {ATTRIBUTES[j]})")
    if args.bench:
        _bench()
        _bench_cache_read()
    if args.bench_train:
        _bench_train(args.bench_train, args.code, [int(p) for p in args.procs.split(",")], args.runs)


if __name__ == "__main__":
    from common import UsageError, run_cli

    def _main(argv=None):
        try:
            return main(argv)
        except DataError as e:
            raise UsageError(str(e)) from None

    run_cli(_main)
