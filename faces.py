"""Synthetic cartoon faces whose attributes are known by construction: the default training data.

No face data set comes with the project or installs from PyPI (FFHQ and CelebA are separate downloads of many
gigabytes), yet the whole loop should run offline, and the paper's measurements need faces with labels: linear
separability (Sec. 4.2) scores attributes, and the ablation and fine-tuning experiments need factors of variation
that are known exactly. So the faces are drawn procedurally, 2-D and anti-aliased from signed distances, at any
resolution from 16 to 256, and every label is true by construction (the renderer draws the attribute it draws the
label for).

A face is a pure function of its index: every random choice is a hash of (index, name of the choice), never global
RNG state, so index 7 is the same face and the same labels on any machine, in any batch, at any resolution. The
faces vary at the three scales the paper separates (Sec. 3.1, Fig. 3):
    coarse: head position, pose (roll and yaw), face shape, eyeglasses, hat;
    middle: eyes open/closed, mouth (smile, open), hair style (long, bangs, volume, hairline, parting);
    fine:   skin, hair, eye, shirt and background colours, freckles, hair texture.
Each face carries len(ATTRIBUTES) binary labels, as CelebA does, each drawn independently with probability 1/2.
data.py serves them as a data set (make_dataset("synthetic")).

    python faces.py --grid faces.png --seeds 0-31   # a labelled grid of synthetic faces
    python faces.py --stats 10000                   # attribute frequencies and largest pairwise correlation
"""

from __future__ import annotations

import math
import zlib

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from common import ArgumentParser, DataError, int_at_least, parse_seeds, run_cli

SYNTHETIC_RES = (16, 256)  # the resolutions the renderer draws at

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
ATTRIBUTE_SCALES = {name: scale for scale, names in (("coarse", ATTRIBUTES[:2]), ("middle", ATTRIBUTES[2:7]),
                                                    ("fine", ATTRIBUTES[7:])) for name in names}


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


# ----------------------------------------------------------------------------------------------------------------
# Painting: one function per part of the picture, called back to front by _render.


class _Canvas:
    """A batch of pictures being painted back to front, and the coordinates the parts are drawn in.

    The image spans [-1, 1] in x (right) and y (down). Body coordinates (bx, by) follow the head's position and
    size but not its roll; head coordinates (x, y) roll as well. lpw is a pixel's width in head units: the width of
    every anti-aliased edge. Parts draw only inside region(...), the box they can touch in any face of the batch, so
    small parts like eyes and freckles cost little at 256x256; the large ones (face, hair, shirt) dominate."""

    def __init__(self, p: dict, res: int):
        self.p, self.res, self.n = p, res, len(p["cx"])
        self.pw = 2.0 / res  # pixel width in image units
        g = (np.arange(res, dtype=np.float32) + 0.5) * self.pw - 1.0
        self.U, self.V = g[None, None, :], g[None, :, None]  # (1, 1, W), (1, H, 1)
        s, cx, cy, roll = self.c("scale"), self.c("cx"), self.c("cy"), self.c("roll")
        self.cr, self.sr = np.cos(roll), np.sin(roll)
        self.bx, self.by = (self.U - cx) / s, (self.V - cy) / s
        self.x, self.y = self.cr * self.bx + self.sr * self.by, -self.sr * self.bx + self.cr * self.by
        self.lpw = self.pw / s
        self.black = np.zeros((self.n, 3), np.float32)
        self.img = None  # (N, 3, H, W), painted first by _draw_background

    def c(self, name):
        """A per-face scalar, broadcastable against (N, H, W) grids."""
        return self.p[name][:, None, None]

    def region(self, x0, x1, y0, y1, body=False):
        """(x, y, img) restricted to the pixels that a part spanning [x0, x1] x [y0, y1] in head (or body)
        coordinates can touch in any face of the batch; img is a view, so blending into it draws."""
        s, cx, cy = self.c("scale")[:, :, 0], self.c("cx")[:, :, 0], self.c("cy")[:, :, 0]
        px = np.array([x0, x1, x0, x1], np.float32)[None]
        py = np.array([y0, y0, y1, y1], np.float32)[None]
        c_, s_ = (1.0, 0.0) if body else (self.cr[:, :, 0], self.sr[:, :, 0])
        u = cx + s * (c_ * px - s_ * py)
        v = cy + s * (s_ * px + c_ * py)
        pw, res = self.pw, self.res
        lo_c, hi_c = int(np.floor((u.min() + 1) / pw)) - 1, int(np.ceil((u.max() + 1) / pw)) + 1
        lo_r, hi_r = int(np.floor((v.min() + 1) / pw)) - 1, int(np.ceil((v.max() + 1) / pw)) + 1
        rs, cs = slice(max(lo_r, 0), max(min(hi_r, res), 0)), slice(max(lo_c, 0), max(min(hi_c, res), 0))
        if body:
            return self.bx[:, :, cs], self.by[:, rs, :], self.img[:, :, rs, cs]
        return self.x[:, rs, cs], self.y[:, rs, cs], self.img[:, :, rs, cs]


def _hair_texture(cv: _Canvas, x, y):
    """Hair colour with stripes running down it: fine-scale texture with a per-face frequency and phase."""
    stripes = 0.93 + 0.07 * np.sin(cv.c("hair_freq") * x + 6 * y + cv.c("hair_phase"))
    return cv.p["hair"][:, :, None, None] * stripes[:, None]


def _draw_background(cv: _Canvas):
    """A vertical gradient of one colour."""
    img = cv.p["bg"][:, :, None, None] * (1.08 - 0.16 * (cv.V[:, None] + 1) / 2)
    cv.img = np.ascontiguousarray(np.broadcast_to(img, (cv.n, 3, cv.res, cv.res)), dtype=np.float32)


def _draw_shirt(cv: _Canvas):
    """Shoulders and shirt."""
    bx, by, im = cv.region(-1.2, 1.2, 0.7, 2.0, body=True)
    _blend(im, _cover(_ellipse(bx, by - 1.38, 0.95, 0.62), cv.lpw), cv.p["shirt"])


def _draw_ears(cv: _Canvas):
    """Ears, turned with the yaw (long hair, drawn next, hides them)."""
    yaw, fw = cv.c("yaw"), cv.c("face_w")
    for side in (-1, 1):
        x, y, im = cv.region(side * 0.47 - 0.12, side * 0.47 + 0.12, -0.16, 0.12)
        ear = _ellipse(x - side * (fw + 0.015 - 0.02 * side * yaw), y + 0.02, 0.06 * (1 - 0.3 * side * yaw), 0.11)
        _blend(im, _cover(ear, cv.lpw), cv.p["skin"] * 0.92)


def _draw_long_hair(cv: _Canvas):
    """Long hair, behind the head: a rounded block from the crown down past the shoulders."""
    c = cv.c
    x, y, im = cv.region(-0.85, 0.85, -0.8, 1.3)
    hair_top = -c("face_h") - 0.04 - c("hair_vol")
    long_bottom = c("hair_len")
    back = _box(x, y - (hair_top + long_bottom) / 2, c("face_w") + 0.11 + c("hair_vol"), (long_bottom - hair_top) / 2,
                0.25)
    _blend(im, _cover(back, cv.lpw) * c("long_hair"), _hair_texture(cv, x, y) * 0.85)


def _draw_neck(cv: _Canvas):
    """Neck, shadowed under the jaw."""
    bx, by, im = cv.region(-0.25, 0.25, 0.2, 1.3, body=True)
    _blend(im, _cover(_box(bx, by - 0.8, 0.17, 0.45, 0.05), cv.lpw), cv.p["skin"] * 0.85)


def _draw_face(cv: _Canvas):
    """An ellipse that narrows towards the chin (face shape), moved a little against the yaw; lit from the front,
    so darker towards the edges."""
    yaw, fw, fh = cv.c("yaw"), cv.c("face_w"), cv.c("face_h")
    x, y, im = cv.region(-0.52, 0.52, -0.6, 0.6)
    fx = (x + 0.02 * yaw) * (1 + cv.c("chin") * np.maximum(y, 0) / fh)
    shade = 1.0 - 0.12 * np.minimum((x + 0.3 * yaw) ** 2 / fw**2 + 0.5 * (y / fh) ** 2, 1)
    _blend(im, _cover(_ellipse(fx, y, fw, fh), cv.lpw), cv.p["skin"][:, :, None, None] * shade[:, None])


def _draw_hair_on_top(cv: _Canvas):
    """Inside a cap bigger than the head, above a hairline that drops to the temples at the sides, with a notch at
    the parting."""
    c = cv.c
    fw, vol = c("face_w"), c("hair_vol")
    x, y, im = cv.region(-0.62, 0.62, -0.78, 0.2)
    cap = _ellipse(x, y + 0.06, fw + vol, c("face_h") + vol + 0.02)
    hairline = c("hairline") + 0.35 * np.minimum(np.abs(x / fw), 1.2) ** 4 \
        - 0.06 * np.exp(-((x - c("parting")) / 0.05) ** 2)
    _blend(im, _cover(np.maximum(cap, y - hairline), cv.lpw), _hair_texture(cv, x, y))


def _draw_freckles(cv: _Canvas):
    """A dozen brown spots over the cheeks and nose, alternating sides."""
    p, yaw = cv.p, cv.c("yaw")
    x, y, im = cv.region(-0.42, 0.42, -0.02, 0.22)
    if not p["freckles"].any():
        return
    for k in range(N_FRECKLES):
        fxk = p["freckle_x"][:, k, None, None] * (1 if k % 2 else -1) + 0.06 * yaw
        d = np.sqrt((x - fxk) ** 2 + (y - p["freckle_y"][:, k, None, None]) ** 2) - p["freckle_r"][:, k, None, None]
        _blend(im, _cover(d, cv.lpw) * (0.75 * cv.c("freckles")), p["skin"] * np.float32([0.62, 0.45, 0.33]))


def _draw_nose(cv: _Canvas):
    """A shadow under the tip and a faint line down one side, shifted most by the yaw."""
    skin = cv.p["skin"]
    x, y, im = cv.region(-0.2, 0.2, -0.06, 0.2)
    nx = x - 0.1 * cv.c("yaw")
    _blend(im, _cover(_ellipse(nx, y - 0.15, 0.055, 0.026), cv.lpw) * 0.6, skin * 0.7)
    _blend(im, _line(nx - 0.03, 0.012, cv.lpw, np.abs(y - 0.05) - 0.09) * 0.35, skin * 0.75)


def _draw_eyes(cv: _Canvas):
    """Each eye with its brow; open or closed. (ex, ey): coordinates centred on the eye."""
    for side in (-1, 1):
        x, y, im = cv.region(side * 0.175 - 0.26, side * 0.175 + 0.26, -0.3, 0.05)
        ex, ey = x - (side * cv.c("eye_dx") + 0.07 * cv.c("yaw")), y - cv.c("eye_y")
        _draw_brow(cv, im, ex, ey, side)
        _draw_open_eye(cv, im, ex, ey)
        _draw_closed_eye(cv, im, ex, ey)


def _draw_brow(cv: _Canvas, im, ex, ey, side):
    """An arc above the eye, tilted per face."""
    ew = cv.c("eye_w")
    bt = ex / (ew * 1.15)
    brow = ey + 0.12 + 0.035 * (1 - bt**2) - side * cv.c("brow_tilt") * bt
    _blend(im, _line(brow, 0.02, cv.lpw, np.abs(ex) - ew * 1.15), cv.p["hair"] * 0.75)


def _draw_open_eye(cv: _Canvas, im, ex, ey):
    """Dark outline, white almond, iris, pupil, highlight."""
    ew, eh, open_, black, lpw = cv.c("eye_w"), cv.c("eye_h"), cv.c("eyes_open"), cv.black, cv.lpw
    _blend(im, _cover(_ellipse(ex, ey, ew + 0.012, eh + 0.012), lpw) * open_, black + 0.12)
    sclera = _cover(_ellipse(ex, ey, ew, eh), lpw) * open_
    _blend(im, sclera, black + 0.96)
    ix, ir = ex - cv.c("gaze"), eh * 0.95
    r_iris = np.sqrt(ix**2 + ey**2)
    _blend(im, sclera * _cover(r_iris - ir, lpw), cv.p["eye"])
    _blend(im, sclera * _cover(r_iris - ir * 0.45, lpw), black)
    _blend(im, sclera * _cover(np.sqrt((ix + 0.02) ** 2 + (ey + 0.02) ** 2) - ir * 0.25, lpw), black + 1)


def _draw_closed_eye(cv: _Canvas, im, ex, ey):
    """The lid a little darker than the skin, and a lash line curving down."""
    ew, eh, closed, lpw = cv.c("eye_w"), cv.c("eye_h"), 1 - cv.c("eyes_open"), cv.lpw
    lid = ey - 0.025 * (1 - np.minimum((ex / ew) ** 2, 1))
    _blend(im, _cover(_ellipse(ex, ey + 0.01, ew, eh * 0.8), lpw) * (0.25 * closed), cv.p["skin"] * 0.8)
    _blend(im, _line(lid, 0.018, lpw, np.abs(ex) - ew) * closed, cv.black + np.float32([0.2, 0.12, 0.1]))


def _draw_mouth(cv: _Canvas):
    """A centre line whose corners rise when smiling; an open mouth is a dark opening with teeth."""
    c, lpw, black = cv.c, cv.lpw, cv.black
    x, y, im = cv.region(-0.33, 0.33, 0.12, 0.5)
    smile, mopen = c("smiling"), c("mouth_open")
    mx = x - 0.07 * c("yaw")
    mw = c("mouth_w") * (1 + 0.3 * smile)
    mt = np.clip(mx / mw, -1, 1)
    bend = smile * 0.07 + (1 - smile) * c("frown")
    center = y - c("mouth_y") - bend * (0.5 - mt**2)  # bend > 0: the corners (mt = +-1) above the middle
    slope = np.sqrt(1 + (2 * bend * mx / mw**2) ** 2)  # vertical distance -> distance across the stroke
    ends = np.abs(mx) - mw
    lips = cv.p["skin"] * np.float32([0.85, 0.55, 0.55])
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


def _draw_bangs(cv: _Canvas):
    """A fringe from the hair cap down to just above the brows, with a ragged edge."""
    c = cv.c
    x, y, im = cv.region(-0.56, 0.56, -0.8, -0.1)
    fringe = c("eye_y") - 0.15 + 0.015 * np.sin(x * 45 + c("hair_phase"))
    bang = np.maximum(_ellipse(x, y + 0.04, c("face_w") + 0.02, c("face_h") + 0.08), y - fringe)
    _blend(im, _cover(bang, cv.lpw) * c("bangs"), _hair_texture(cv, x, y) * 0.95)


def _draw_eyeglasses(cv: _Canvas):
    """Two round rims, a bridge and arms to the ears; lightly tinted lenses."""
    c, lpw, frame = cv.c, cv.lpw, cv.p["frame"]
    x, y, im = cv.region(-0.56, 0.56, -0.32, 0.12)
    glasses, rim_r, ex0 = c("eyeglasses"), c("eye_w") + 0.045, 0.07 * c("yaw")
    gy = y - c("eye_y")
    for side in (-1, 1):
        dist = np.sqrt((x - (side * c("eye_dx") + ex0)) ** 2 + gy**2)
        _blend(im, _cover(dist - rim_r, lpw) * (0.18 * glasses), cv.black + 0.85)
        _blend(im, _line(dist - rim_r, 0.022, lpw) * glasses, frame)
        arm_x0 = side * (c("eye_dx") + rim_r) + ex0
        arm_len = c("face_w") + 0.03 - np.abs(arm_x0)
        arm_mid = arm_x0 + side * arm_len / 2
        _blend(im, _line(gy + 0.02, 0.018, lpw, np.abs(x - arm_mid) - arm_len / 2) * glasses, frame)
    bridge = np.abs(x - ex0) - (c("eye_dx") - rim_r)
    _blend(im, _line(gy + 0.015, 0.02, lpw, bridge) * glasses, frame)


def _draw_hat(cv: _Canvas):
    """A dome with a brim, sitting on the hair above the forehead."""
    c = cv.c
    fw, vol = c("face_w"), c("hair_vol")
    x, y, im = cv.region(-0.72, 0.72, -1.1, -0.3)
    hat, brim_y = c("wearing_hat"), c("hairline") - 0.02
    dome = np.maximum(_ellipse(x, y - brim_y, fw + vol + 0.02, c("hat_h") + vol), y - brim_y)
    _blend(im, _cover(dome, cv.lpw) * hat, cv.p["hat"])
    brim = _box(x, y - brim_y, fw + vol + 0.08, 0.04, 0.035)
    _blend(im, _cover(brim, cv.lpw) * hat, cv.p["hat"] * 0.75)


def _render(p: dict, res: int) -> np.ndarray:
    """Render faces with parameters p at res x res -> float32 (N, 3, H, W) in [0, 1], painting the parts back to
    front: each covers the ones before it."""
    cv = _Canvas(p, res)
    _draw_background(cv)
    _draw_shirt(cv)
    _draw_ears(cv)
    _draw_long_hair(cv)  # behind the head, so before it
    _draw_neck(cv)
    _draw_face(cv)
    _draw_hair_on_top(cv)
    _draw_freckles(cv)
    _draw_nose(cv)
    _draw_eyes(cv)
    _draw_mouth(cv)
    _draw_bangs(cv)
    _draw_eyeglasses(cv)
    _draw_hat(cv)
    return cv.img


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


def render_faces_labels(indices) -> np.ndarray:
    """Labels of faces `indices` without rendering them -> float32 (N, len(ATTRIBUTES)) of 0/1."""
    p = _face_params(_as_indices(indices))
    return np.stack([p[name] for name in ATTRIBUTES], 1).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
# A labelled grid, attribute statistics, throughput.

_SHORT = {"eyeglasses": "glasses", "wearing_hat": "hat", "smiling": "smile", "mouth_open": "open mouth",
          "eyes_open": "eyes open", "long_hair": "long hair", "bangs": "bangs", "dark_hair": "dark hair",
          "pale_skin": "pale", "freckles": "freckles"}


def face_grid(indices, resolution: int = 64, cols: int = 8, zoom: int = 2) -> Image.Image:
    """A grid of faces with the attributes each one has written under it."""
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


def main(argv=None):
    parser = ArgumentParser("faces.py", __doc__)
    parser.add_argument("--grid", metavar="PNG", help="save a labelled grid of synthetic faces")
    parser.add_argument("--seeds", default="0-31", help="face indices for --grid, e.g. 0-31 or 3,5,7")
    parser.add_argument("--res", type=int_at_least(1), default=64, help="resolution of the faces in --grid")
    parser.add_argument("--stats", type=int_at_least(1), metavar="N", help="attribute frequencies over faces 0..N-1")
    args = parser.parse_args(argv)
    if not (args.grid or args.stats):
        parser.error("nothing to do: pass --grid PNG or --stats N (render speed: python bench.py --sections data)")
    if args.grid:
        face_grid(parse_seeds(args.seeds), _check_render_resolution(args.res)).save(args.grid, optimize=True)
        print(f"saved {args.grid}")
    if args.stats:
        freq, corr = attribute_stats(args.stats)
        for name, f in zip(ATTRIBUTES, freq):
            print(f"{name:12s} {f:.3f}")
        off = np.abs(corr - np.eye(len(corr)))
        i, j = np.unravel_index(off.argmax(), off.shape)
        print(f"largest |correlation| between two attributes: {off.max():.3f} ({ATTRIBUTES[i]}, {ATTRIBUTES[j]})")


if __name__ == "__main__":
    run_cli(main)
