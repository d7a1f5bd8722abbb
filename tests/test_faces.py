"""faces.py: synthetic faces (determinism, one test per attribute, anti-aliasing, balance, clear errors)."""

import numpy as np
import pytest

import faces

R = 64  # attribute tests: large enough to locate parts, small enough to be fast
INDICES = range(6)


def luminance(img):
    return img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def test_attribute_names():
    assert len(faces.ATTRIBUTES) >= 8 and len(set(faces.ATTRIBUTES)) == len(faces.ATTRIBUTES)
    for name in ["smiling", "eyeglasses", "eyes_open", "long_hair", "dark_hair"]:
        assert name in faces.ATTRIBUTES


def test_same_index_same_face_any_batch():
    a, la = faces.render_faces([3, 7, 11], 32)
    b, lb = faces.render_faces([7], 32)
    c, lc = faces.render_face(7, 32)
    assert a.dtype == np.uint8 and a.shape == (3, 32, 32, 3) and la.shape == (3, len(faces.ATTRIBUTES))
    assert np.array_equal(a[1], b[0]) and np.array_equal(b[0], c)
    assert np.array_equal(la[1], lb[0]) and np.array_equal(lb[0], lc)
    assert not np.array_equal(a[0], a[1])  # different indices, different faces
    assert set(np.unique(la)) <= {0, 1}


def test_pinned_faces_on_any_machine():
    # Labels come from integer hashing only: exact everywhere. Pixels go through float sin/sqrt, whose last bit
    # may differ between CPUs, so the image is pinned through 8x8-pixel block means with a tolerance.
    _, labels = faces.render_faces(range(8), 32)
    assert labels.tolist() == [
        [1, 0, 1, 1, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 0, 0, 1, 1], [0, 1, 1, 1, 1, 1, 0, 0, 1, 0],
        [0, 0, 0, 1, 0, 0, 1, 1, 0, 1], [0, 0, 0, 1, 0, 0, 0, 0, 1, 1], [1, 1, 0, 0, 1, 0, 0, 1, 0, 1],
        [1, 1, 1, 1, 0, 1, 1, 0, 0, 1], [0, 0, 1, 0, 0, 1, 1, 1, 1, 0]]
    img, _ = faces.render_face(0, 32)
    blocks = img.reshape(4, 8, 4, 8, 3).mean((1, 3))
    expected = np.array([
        [[133, 168, 129], [149, 167, 121], [139, 168, 126], [133, 168, 129]],
        [[134, 162, 122], [145, 106, 66], [141, 119, 82], [128, 162, 124]],
        [[127, 155, 117], [101, 73, 56], [107, 96, 74], [123, 156, 120]],
        [[118, 147, 115], [98, 92, 82], [105, 109, 98], [118, 149, 115]]])
    assert np.abs(blocks - expected).max() < 1.5


def test_labels_without_rendering_match():
    _, labels = faces.render_faces(range(20), 16)
    assert np.array_equal(faces.render_faces_labels(range(20)), labels.astype(np.float32))


def test_attributes_balanced_and_independent():
    labels = faces.render_faces_labels(range(4000))
    freq = labels.mean(0)
    assert np.all((freq > 0.45) & (freq < 0.55)), dict(zip(faces.ATTRIBUTES, freq.round(3)))
    corr = np.corrcoef(labels.T) - np.eye(len(faces.ATTRIBUTES))
    assert np.abs(corr).max() < 0.08


@pytest.mark.parametrize("res", [16, 32, 64])
def test_antialiased_like_a_supersampled_render(res):
    # An anti-aliased render at res should match the 256x256 render box-averaged down to res; a point-sampled
    # (aliased) render would differ by whole edge pixels.
    small, _ = faces.render_faces(range(4), res)
    big, _ = faces.render_faces(range(4), 256)
    f = 256 // res
    down = big.reshape(4, res, f, res, f, 3).astype(np.float64).mean((2, 4))
    err = np.abs(small - down)
    assert err.mean() < 4.0 and np.percentile(err, 99) < 60


def test_any_resolution_in_range_and_clear_errors():
    for res in (16, 24, 100, 256):
        img, _ = faces.render_face(1, res)
        assert img.shape == (res, res, 3)
    for bad in (15, 257, "32", 32.0, True):
        with pytest.raises(faces.DataError, match="pick a resolution"):
            faces.render_faces([0], bad)
    with pytest.raises(faces.DataError, match="unknown attribute override"):
        faces.render_face(0, 32, smilling=True)
    with pytest.raises(faces.DataError, match="non-negative integers"):
        faces.render_faces([-1], 32)


def flip(name, index, res=R):
    """(image with the attribute, image without, bool mask of changed pixels)."""
    on, lab_on = faces.render_face(index, res, **{name: True})
    off, lab_off = faces.render_face(index, res, **{name: False})
    k = faces.ATTRIBUTES.index(name)
    assert lab_on[k] == 1 and lab_off[k] == 0
    others = [j for j in range(len(faces.ATTRIBUTES)) if j != k]
    assert np.array_equal(lab_on[others], lab_off[others])  # forcing one attribute leaves the others alone
    changed = np.abs(on.astype(int) - off.astype(int)).max(-1) > 10
    assert changed.sum() > 0, f"{name} changes nothing on face {index}"
    return on, off, changed


def rows_cols(mask):
    r, c = np.nonzero(mask)
    return r / mask.shape[0], c / mask.shape[1]


def only_within(mask, r0, r1, c0, c1):
    r, c = rows_cols(mask)
    return r.min() >= r0 and r.max() <= r1 and c.min() >= c0 and c.max() <= c1


@pytest.mark.parametrize("i", INDICES)
@pytest.mark.parametrize("name, rows, cols", [
    pytest.param("smiling", (0.55, 0.85), (0.25, 0.75), id="smiling-changes-the-mouth"),
    pytest.param("bangs", (0.08, 0.5), (0.15, 0.85), id="bangs-cover-the-forehead"),
])
def test_attribute_changes_only_its_part(name, rows, cols, i):
    on, off, changed = flip(name, i)
    assert only_within(changed, *rows, *cols)


@pytest.mark.parametrize("i", INDICES)
def test_mouth_open_changes_the_mouth_and_darkens_it(i):
    on, off, changed = flip("mouth_open", i)
    assert only_within(changed, 0.55, 0.85, 0.25, 0.75)
    assert luminance(on[changed]).min() < luminance(off[changed]).min()  # a dark opening


@pytest.mark.parametrize("i", INDICES)
def test_eyes_open_changes_the_eyes_and_shows_whites(i):
    on, off, changed = flip("eyes_open", i)
    assert only_within(changed, 0.33, 0.62, 0.2, 0.8)
    r, c = rows_cols(changed)
    assert (c < 0.5).any() and (c > 0.5).any()  # both eyes
    px = lambda im: im[changed].astype(int)  # noqa: E731
    white = lambda im: ((px(im).min(-1) > 165) & (np.ptp(px(im), -1) < 25)).sum()  # bright and untinted  # noqa
    assert white(on) >= 3 and white(off) == 0


@pytest.mark.parametrize("i", INDICES)
def test_eyeglasses_cover_both_eyes_and_the_bridge(i):
    on, off, changed = flip("eyeglasses", i)
    assert only_within(changed, 0.3, 0.65, 0.12, 0.88)
    r, c = rows_cols(changed)
    assert c.max() - c.min() > 0.4  # from one arm across the bridge to the other


@pytest.mark.parametrize("i", INDICES)
def test_wearing_hat_changes_only_the_top_of_the_head(i):
    on, off, changed = flip("wearing_hat", i)
    assert only_within(changed, 0.0, 0.45, 0.0, 1.0)
    assert changed.mean() > 0.05


@pytest.mark.parametrize("i", INDICES)
def test_long_hair_falls_beside_the_face_not_over_it(i):
    on, off, changed = flip("long_hair", i)
    r, c = rows_cols(changed)
    low = r > 0.6
    assert (c[low] < 0.3).any() and (c[low] > 0.7).any()  # on both sides, below the eyes
    assert not changed[int(0.45 * R):int(0.75 * R), int(0.42 * R):int(0.58 * R)].any()  # the face itself


@pytest.mark.parametrize("i", INDICES)
def test_dark_hair_darkens_the_hair_only(i):
    on, off, changed = flip("dark_hair", i)
    assert luminance(on[changed]).mean() < luminance(off[changed]).mean() - 20
    assert not changed[int(0.58 * R):int(0.75 * R), int(0.42 * R):int(0.58 * R)].any()  # nose and mouth


@pytest.mark.parametrize("i", INDICES)
def test_pale_skin_lightens_the_face_not_the_background(i):
    on, off, changed = flip("pale_skin", i)
    assert luminance(on[changed]).mean() > luminance(off[changed]).mean() + 5
    assert changed[int(0.6 * R), int(0.5 * R)] or changed[int(0.55 * R), int(0.5 * R)]  # the middle of the face
    assert not changed[:4, :4].any() and not changed[:4, -4:].any()  # background corners


@pytest.mark.parametrize("i", INDICES)
def test_freckles_are_dark_spots_on_the_cheeks(i):
    on, off, changed = flip("freckles", i)
    assert only_within(changed, 0.45, 0.72, 0.2, 0.8)
    assert (luminance(on[changed]) < luminance(off[changed])).all()
