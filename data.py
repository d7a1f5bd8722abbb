"""Everything the trainer and the metrics read: synthetic faces, image folders, zips and Hub data sets.

Synthetic faces (faces.py: procedural faces with labels known by construction) are the default source, so the
whole loop runs without downloading anything. They render on the fly from their index, or once into the cache.

Real images (a folder searched recursively, a .zip, or a Hub data set) are listed with `datasets`, decoded once,
centre-cropped (or padded) to a square, resized with PIL's LANCZOS filter and written at the target resolution
into one cache file on disk (see "The on-disk cache" below), which every process memory-maps read-only. The trainer
reads that one copy and box-downsamples batches for lower progressive-growing stages, so no per-resolution copies
are needed.

    python data.py --bench                          # images/s of synthetic-face and folder loading, cache reads
    python data.py --bench-train ~/a ~/b            # peak memory per process and time to the first step
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import re
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from faces import ATTRIBUTES, SYNTHETIC_RES, DataError, render_faces, render_faces_labels

SYNTHETIC_DEFAULT_SIZE = 50_000  # like FFHQ's 70k: enough that a 25M-image run sees each face ~500 times
REAL_RES = (4, 1024)
RESIZE_FILTER = Image.LANCZOS  # see _square_resize for why
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


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
# Command line: loading throughput and training memory.


def _bench(sizes=(32, 64, 256), seconds: float = 3.0):
    print(f"# {os.cpu_count()} CPU(s); images/s (rendering alone: python faces.py --bench)")
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

    parser = ArgumentParser("data.py", __doc__)
    parser.add_argument("--bench", action="store_true",
                        help="images/s of synthetic faces through a DataLoader, folder loading and cache reads")
    parser.add_argument("--bench-train", nargs="+", metavar="FOLDER",
                        help="peak memory per process and time to the first step, training at 128x128 on each folder")
    parser.add_argument("--procs", default="1,2", help="--bench-train: process counts (torchrun above 1)")
    parser.add_argument("--runs", type=int_at_least(1), default=2, help="--bench-train: runs of each configuration (the first "
                                                            "may build the cache, the later ones map it)")
    parser.add_argument("--code", default=".", help="--bench-train: the folder whose train.py runs (to compare two "
                                                    "versions of the code)")
    args = parser.parse_args(argv)
    if not (args.bench or args.bench_train):
        parser.error("nothing to do: pass --bench or --bench-train FOLDER (a grid of the synthetic faces, their "
                     "statistics and render speed: faces.py)")
    if args.bench:
        _bench()
        _bench_cache_read()
    if args.bench_train:
        _bench_train(args.bench_train, args.code, [int(p) for p in args.procs.split(",")], args.runs)


if __name__ == "__main__":
    from common import run_cli

    run_cli(main, user_errors=(DataError,))
