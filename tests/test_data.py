"""data.py: the synthetic-face data set and real-image loading (folder and zip with corrupt, grayscale, RGBA,
palette and non-square files; caching; clear errors). The faces themselves: test_faces.py."""

import pickle
import shutil
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

import data
import faces

# ------------------------------------------------------------------------------------------------------------
# make_dataset: synthetic


def test_synthetic_dataset_items_labels_and_mirror(tmp_path):
    ds = data.make_dataset()
    assert len(ds) == data.SYNTHETIC_DEFAULT_SIZE and ds.resolution == 32 and ds.num_skipped == 0
    assert ds.attribute_names == faces.ATTRIBUTES
    ds = data.make_dataset("synthetic:10", 32, mirror=True)
    assert len(ds) == 20 and ds.name == "synthetic-10-32-mirror"
    img, lab = ds[3]
    ref, ref_lab = faces.render_face(3, 32)
    assert img.dtype == torch.uint8 and img.shape == (3, 32, 32) and lab.dtype == torch.float32
    assert np.array_equal(img.permute(1, 2, 0).numpy(), ref) and np.array_equal(lab.numpy(), ref_lab)
    img_m, lab_m = ds[13]
    assert torch.equal(img_m, img.flip(-1)) and torch.equal(lab_m, lab)
    batch = ds.__getitems__([13, 3, 0])
    assert torch.equal(batch[0][0], img_m) and torch.equal(batch[1][0], img)
    assert len(data.make_dataset("synthetic:10", 16, max_images=4)) == 4
    with pytest.raises(IndexError):
        ds[20]


def test_synthetic_cache_and_workers(tmp_path):
    live = data.make_dataset("synthetic:40", 16)
    cached = data.make_dataset("synthetic:40", 16, cache_dir=str(tmp_path))
    assert (tmp_path / "synthetic-40-16.u8").exists()
    assert len(pickle.dumps(cached)) < 20_000  # the memory map is reopened in workers, not copied
    loader = torch.utils.data.DataLoader(cached, batch_size=8, num_workers=2)
    images = torch.cat([b[0] for b in loader])
    assert images.shape == (40, 3, 16, 16)
    assert all(torch.equal(images[k], live[k][0]) for k in range(40))


def test_make_dataset_rejects_bad_arguments(tmp_path):
    for res in (48, 8, 512):
        with pytest.raises(data.DataError, match="power of two from 16 to 256"):
            data.make_dataset("synthetic", res)
    for source in ("synthetic:x", "synthetic:0"):
        with pytest.raises(data.DataError, match="synthetic:N"):
            data.make_dataset(source)
    with pytest.raises(data.DataError, match="does not exist"):
        data.make_dataset(str(tmp_path / "nowhere"), 32)
    with pytest.raises(data.DataError, match="positive integer"):
        data.make_dataset("synthetic", 32, max_images=0)


# ------------------------------------------------------------------------------------------------------------
# make_dataset: folders and zips


@pytest.fixture
def image_folder(tmp_path):
    """Seven files: RGB PNG, JPEG, grayscale, RGBA with a transparent half, palette, non-square, and a corrupt
    PNG; plus a text file that is not an image. Nested one level, since folders are searched recursively."""
    root = tmp_path / "images"
    (root / "nested").mkdir(parents=True)
    red = np.zeros((40, 40, 3), np.uint8)
    red[..., 0] = 200
    Image.fromarray(red).save(root / "a_rgb.png")
    Image.fromarray(np.full((40, 40, 3), (20, 40, 220), np.uint8)).save(root / "b_blue.jpg", quality=95)
    Image.fromarray(np.tile(np.arange(0, 240, 6, dtype=np.uint8), (40, 1))).save(root / "nested" / "c_gray.png")
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[:, :20] = (0, 160, 0, 255)  # left half opaque green, right half transparent
    Image.fromarray(rgba, "RGBA").save(root / "nested" / "d_rgba.png")
    Image.fromarray(np.full((40, 40, 3), (240, 200, 0), np.uint8)).convert("P", palette=Image.ADAPTIVE).save(
        root / "e_palette.png")
    wide = np.zeros((20, 60, 3), np.uint8)  # thirds: red, green, blue
    wide[:, :20, 0], wide[:, 20:40, 1], wide[:, 40:, 2] = 255, 255, 255
    Image.fromarray(wide).save(root / "f_wide.png")
    (root / "g_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)
    (root / "notes.txt").write_text("not an image")
    return root


def check_folder_images(ds):
    assert len(ds) == 6 and ds.num_skipped == 1 and ds.attribute_names == []
    items = [ds[k] for k in range(len(ds))]
    assert all(img.shape == (3, 16, 16) and img.dtype == torch.uint8 and lab.shape == (0,) for img, lab in items)
    imgs = [img.permute(1, 2, 0).numpy().astype(int) for img, _ in items]
    gray = [im for im in imgs if np.array_equal(im[..., 0], im[..., 1]) and np.array_equal(im[..., 1], im[..., 2])
            and im[..., 0].std() > 20]
    assert len(gray) == 1 and np.all(np.diff(gray[0][8, 2:-2, 0]) >= 0)  # converted, left-to-right ramp kept
    rgba = [im for im in imgs if im[8, 2, 1] > 120 and im[8, 2, 0] < 40 and im[8, -2].min() > 240]
    assert len(rgba) == 1  # the transparent right half composited over white, the opaque left half kept
    assert any(np.abs(im - (240, 200, 0)).max() < 12 for im in imgs)  # palette image
    wide = [im for im in imgs if im[8, 8, 1] > 200 and im[8, 8, 0] < 60 and im[8, 8, 2] < 60]
    assert len(wide) == 1 and wide[0][:, 2:-2, 1].min() > 200  # centre-cropped to the green third
    return imgs


def test_folder_loading(image_folder, tmp_path):
    ds = data.make_dataset(str(image_folder), 16, cache_dir=str(tmp_path / "cache"))
    check_folder_images(ds)
    assert ds.name.startswith("folder-") and ds.name.endswith("-16")
    again = data.make_dataset(str(image_folder), 16, cache_dir=str(tmp_path / "cache"))  # from the cache
    assert again.name == ds.name and again.num_skipped == 1
    assert all(torch.equal(again[k][0], ds[k][0]) for k in range(len(ds)))
    # pad instead of crop: the wide image keeps all three thirds, with black above and below
    padded = data.make_dataset(str(image_folder), 16, pad=True, cache_dir=str(tmp_path / "cache"))
    imgs = [padded[k][0].permute(1, 2, 0).numpy().astype(int) for k in range(len(padded))]
    wide = [im for im in imgs if im[8, 1, 0] > 200 and im[8, -2, 2] > 200]
    assert len(wide) == 1 and wide[0][1].max() < 10 and wide[0][-2].max() < 10
    mirrored = data.make_dataset(str(image_folder), 16, mirror=True, cache_dir=str(tmp_path / "cache"))
    assert len(mirrored) == 12 and torch.equal(mirrored[6 + 2][0], mirrored[2][0].flip(-1))
    assert len(data.make_dataset(str(image_folder), 16, max_images=3, cache_dir=str(tmp_path / "cache"))) <= 3


def test_folder_default_cache_and_name_tracks_contents(image_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("STYLEGAN_CACHE", str(tmp_path / "default"))
    ds = data.make_dataset(str(image_folder), 16)  # no cache_dir: the default location
    check_folder_images(ds)
    assert [p.name for p in (tmp_path / "default" / "data").glob("*.u8")] == [ds.name + ".u8"]
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image_folder / "h_new.png")
    ds2 = data.make_dataset(str(image_folder), 16)
    assert ds2.name != ds.name and len(ds2) == len(ds) + 1


def direct_decode(folder, res, pad=False):
    """Every readable image under folder through square_resize alone, with no cache: the reference."""
    out = []
    for f in sorted(folder.rglob("*")):
        try:
            with Image.open(f) as im:
                out.append(data.square_resize(im, res, pad))
        except Exception:
            pass
    return out


def as_arrays(ds):
    return [ds[k][0].permute(1, 2, 0).numpy() for k in range(len(ds))]


def test_cache_reads_back_exactly_what_a_direct_decode_gives(image_folder, tmp_path):
    for pad in (False, True):
        built = data.make_dataset(str(image_folder), 16, pad=pad, cache_dir=str(tmp_path))
        mapped = data.make_dataset(str(image_folder), 16, pad=pad, cache_dir=str(tmp_path))  # a cache hit
        reference = direct_decode(image_folder, 16, pad)
        assert len(reference) == 6 and built.num_skipped == mapped.num_skipped == 1  # the corrupt PNG, counted
        key = lambda im: im.tobytes()  # noqa: E731  (the order of the rows is imagefolder's, not sorted)
        assert sorted(map(key, as_arrays(built))) == sorted(map(key, reference))
        assert [key(im) for im in as_arrays(mapped)] == [key(im) for im in as_arrays(built)]
        assert isinstance(mapped._array(), np.memmap) and mapped._array().dtype == np.uint8


def test_killed_or_damaged_build_is_rebuilt_not_trusted(image_folder, tmp_path, capfd):
    import signal
    import subprocess
    import sys

    cache = tmp_path / "cache"
    # A build killed (SIGKILL: no cleanup runs) after three images have been written.
    script = f"""
import os, signal, sys
sys.path.insert(0, {str(data.Path(data.__file__).parent)!r})
import data
real, calls = data.square_resize, []
def dying(*a):
    calls.append(1)
    if len(calls) == 4:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*a)
data.square_resize = dying
data._decode_into.__globals__["os"].cpu_count = lambda: 1  # one thread: a deterministic point of death
data.make_dataset({str(image_folder)!r}, 16, cache_dir={str(cache)!r})
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == -signal.SIGKILL, run.stderr
    assert list(cache.glob("*.u8.tmp")) and not list(cache.glob("*.meta.npz"))  # half-written, never completed
    reference = sorted(im.tobytes() for im in direct_decode(image_folder, 16))
    capfd.readouterr()
    ds = data.make_dataset(str(image_folder), 16, cache_dir=str(cache))
    assert "data: cached " in capfd.readouterr().err  # rebuilt
    assert sorted(im.tobytes() for im in as_arrays(ds)) == reference
    assert not list(cache.glob("*.tmp*"))
    # Pixels cut short, or pixels without their meta file: both rebuilt, neither read.
    pixels = cache / f"{ds.name}.u8"
    for damage in (lambda: pixels.write_bytes(pixels.read_bytes()[:-5]),
                   lambda: (cache / f"{ds.name}.meta.npz").unlink()):
        damage()
        again = data.make_dataset(str(image_folder), 16, cache_dir=str(cache))
        assert "data: cached " in capfd.readouterr().err
        assert sorted(im.tobytes() for im in as_arrays(again)) == reference
    data.make_dataset(str(image_folder), 16, cache_dir=str(cache))
    assert "data: cached " not in capfd.readouterr().err  # complete now: mapped, not rebuilt


def test_two_processes_build_one_cache(image_folder, tmp_path):
    import subprocess
    import sys

    cache, go = tmp_path / "cache", tmp_path / "go"
    # Both processes start decoding at the same moment (a file barrier) and decoding is slowed to ~1 s, so without
    # the lock both would build.
    script = f"""
import sys, time
from pathlib import Path
sys.path.insert(0, {str(data.Path(data.__file__).parent)!r})
import data
real = data.square_resize
data.square_resize = lambda *a: (time.sleep(0.3), real(*a))[1]
Path({str(tmp_path)!r}, "ready-" + sys.argv[1]).touch()
while not Path({str(go)!r}).exists():
    time.sleep(0.01)
ds = data.make_dataset({str(image_folder)!r}, 16, cache_dir={str(cache)!r})
print(ds.name, len(ds), ds.num_skipped)
"""
    procs = [subprocess.Popen([sys.executable, "-c", script, str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    deadline = __import__("time").time() + 120
    while len(list(tmp_path.glob("ready-*"))) < 2 and __import__("time").time() < deadline:
        __import__("time").sleep(0.01)
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    err = "".join(e for _, e in outs)
    assert err.count("data: cached ") == 1, err  # one build ...
    assert outs[0][0] == outs[1][0] and outs[0][0].split()[1:] == ["6", "1"]  # ... the same data for both
    assert len(list(cache.glob("*.u8"))) == 1 and not list(cache.glob("*.tmp*"))


def test_cache_refuses_when_the_disk_is_too_small(image_folder, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(data.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 100, 100))
    message = r"needs 21.0 MiB for 7 images at 1024x1024 but .* has only 0.0 MiB free"
    with pytest.raises(data.DataError, match=message) as e:
        data.make_dataset(str(image_folder), 1024, cache_dir=str(tmp_path))
    assert "\n" not in str(e.value) and "--cache-dir" in str(e.value)
    assert not list(tmp_path.glob("*.u8*"))


def test_hub_labels_must_be_numeric():
    import datasets

    table = datasets.Dataset.from_dict({"image": [b"x", b"y"], "smiling": [1, -1], "hair": ["blond", "dark"]})
    rows, count = data._prepare_table(table, "user/faces", "train", "image", ["smiling"], None)
    assert rows.column_names == ["image", "smiling"] and count == 2
    with pytest.raises(data.DataError, match="label column 'hair' of 'user/faces' holds string values, not numbers"):
        data._prepare_table(table, "user/faces", "train", "image", ["smiling", "hair"], None)


def test_streamed_hub_data_equals_downloaded(tmp_path, monkeypatch):
    # A Hub data set stand-in (the tests never go online): five images as bytes, one of them corrupt, and labels.
    import io

    import datasets

    blobs = []
    for k in range(5):
        buf = io.BytesIO()
        Image.fromarray(np.full((20, 30, 3), 40 * k, np.uint8)).save(buf, "PNG")
        blobs.append(buf.getvalue() if k != 2 else b"not an image")
    table = datasets.Dataset.from_dict({"image": [{"bytes": b, "path": None} for b in blobs],
                                       "smiling": [1, -1, 1, -1, 1]},
                                      features=datasets.Features({"image": datasets.Image(),
                                                                  "smiling": datasets.Value("int64")}))
    calls = []

    def load_dataset(name, split, streaming=False, cache_dir=None):
        calls.append((name, split, streaming))
        return table.to_iterable_dataset() if streaming else table

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    kwargs = dict(label_columns=["smiling"], max_images=5)
    downloaded = data.make_dataset("user/faces", 16, cache_dir=str(tmp_path / "a"), **kwargs)
    streamed = data.make_dataset("user/faces", 16, cache_dir=str(tmp_path / "b"), stream=True, **kwargs)
    assert calls == [("user/faces", "train", False), ("user/faces", "train", True)]
    assert streamed.name == downloaded.name and len(streamed) == 4 and streamed.num_skipped == 1
    assert [torch.equal(streamed[k][0], downloaded[k][0]) for k in range(4)] == [True] * 4
    assert [streamed[k][1].tolist() for k in range(4)] == [[1.0], [0.0], [0.0], [1.0]]
    assert streamed[3][0].float().mean() == 160  # the fifth image, in its place after the skipped one
    with pytest.raises(data.DataError, match="length of the streamed split 'train' .* unknown.*--max-images"):
        data.make_dataset("user/faces", 16, cache_dir=str(tmp_path / "c"), stream=True)
    data.make_dataset("user/faces", 16, cache_dir=str(tmp_path / "b"), stream=True, **kwargs)
    assert len(calls) == 3  # the third call asked for a length; a cache hit contacts nothing


def test_zip_loading_matches_folder(image_folder, tmp_path):
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted(image_folder.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(image_folder))
    ds = data.make_dataset(str(archive), 16, cache_dir=str(tmp_path / "cache"))
    assert ds.name.startswith("zip-")
    from_zip = check_folder_images(ds)
    from_folder = check_folder_images(data.make_dataset(str(image_folder), 16, cache_dir=str(tmp_path / "cache")))
    key = lambda im: im.tobytes()  # noqa: E731
    assert sorted(map(key, from_zip)) == sorted(map(key, from_folder))


def test_resize_filter_is_antialiased():
    # A 1-pixel checkerboard downscaled 8x must come out flat grey (LANCZOS averages it), not a moire pattern.
    checker = ((np.indices((128, 128)).sum(0) % 2) * 255).astype(np.uint8)
    out = data.square_resize(Image.fromarray(checker), 16, pad=False)
    assert np.abs(out.astype(int) - 128).max() <= 3


def test_unreadable_sources_fail_before_any_work(tmp_path):
    cache = str(tmp_path / "cache")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(data.DataError, match="no image files"):
        data.make_dataset(str(empty), 32, cache_dir=cache)
    (empty / "readme.txt").write_text("hello")
    with pytest.raises(data.DataError, match="no image files"):
        data.make_dataset(str(empty), 32, cache_dir=cache)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.jpg").write_bytes(b"garbage")
    with pytest.raises(data.DataError, match="could be read"):
        data.make_dataset(str(bad), 32, cache_dir=cache)
    (tmp_path / "a.tar").write_bytes(b"x")
    with pytest.raises(data.DataError, match="not a .zip"):
        data.make_dataset(str(tmp_path / "a.tar"), 32, cache_dir=cache)
    with pytest.raises(data.DataError, match="power of two from 4 to 1024"):
        data.make_dataset(str(bad), 48, cache_dir=cache)


def test_hub_name_offline_is_a_clear_error(tmp_path):
    # conftest sets HF_DATASETS_OFFLINE=1: the Hub is never contacted, and the failure is one clear line.
    with pytest.raises(data.DataError, match="could not load Hub data set 'someone/no-such-faces'") as e:
        data.make_dataset("someone/no-such-faces", 32, cache_dir=str(tmp_path))
    assert "\n" not in str(e.value)


def test_data_report_counts_each_kind_and_writes_nothing_into_the_folder(tmp_path, capsys):
    """python data.py FOLDER --resolution R: small, greyscale, RGBA, duplicate, corrupt and odd-ratio images, each
    counted, each problem one line; the cache is built and the preview written, the folder left as it was."""
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.RandomState(0)
    rgb = lambda h, w: Image.fromarray(rng.randint(0, 255, (h, w, 3), np.uint8))  # noqa: E731
    for i in range(3):
        rgb(32, 32).save(folder / f"ok{i}.png")
    rgb(8, 8).save(folder / "small.png")  # smaller than 16
    rgb(32, 64).save(folder / "sub" / "wide.jpg")  # 2:1
    Image.fromarray(rng.randint(0, 255, (32, 32), np.uint8)).save(folder / "grey.png")
    Image.fromarray(rng.randint(0, 255, (32, 32, 4), np.uint8), "RGBA").save(folder / "alpha.png")
    shutil.copy(folder / "ok0.png", folder / "sub" / "copy-of-ok0.png")  # an exact duplicate
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))

    info = data.main([str(folder), "--resolution", "16", "--preview", str(tmp_path / "preview.png"),
                      "--cache-dir", str(tmp_path / "cache")])
    out = capsys.readouterr().out
    assert info["found"] == 9 and len(info["sizes"]) == 8 and [n for n, _ in info["skipped"]] == ["broken.png"]
    assert info["modes"] == {"colour": 7, "greyscale": 1} and info["alpha"] == 1
    assert info["duplicates"] == [["ok0.png", "sub/copy-of-ok0.png"]]
    assert "9 image files, 8 read, 1 skipped" in out and "skipped broken.png: " in out
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert any("1 of 8 images are smaller than 16x16 (the smallest 8x8)" in w for w in warnings)
    assert any("1 of 8 images are not square (up to 2.00:1): the centre crop cuts 50%" in w for w in warnings)
    assert any("1 greyscale images among 7 colour" in w for w in warnings)
    assert any("1 images have an alpha channel" in w for w in warnings)
    assert any("1 exact duplicates in 1 groups" in w for w in warnings)
    assert len(info["dataset"]) == 8 and Image.open(tmp_path / "preview.png").size == (8 * 16, 16)
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before  # nothing written into the folder
    pad = data.report_lines(info, 16, pad=True)
    assert any("--pad fills 50% of each on average with black" in line for line in pad)


def test_data_report_bad_input_is_one_line(tmp_path, capsys):
    from common import run_cli

    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.png").write_bytes(b"no")
    for argv, message in ((["missing"], "does not exist"), ([str(tmp_path / "junk")], "could be read as an image"),
                          ([str(tmp_path / "junk"), "--resolution", "100"], "power of two")):
        with pytest.raises(SystemExit) as e:
            run_cli(data.main, argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and err.count("\n") == 1, err
