"""Everything the trainer and the metrics read: synthetic faces, image folders, zips and Hub data sets.

Synthetic faces (faces.py: procedural faces with labels known by construction) are the default source, so the
whole loop runs without downloading anything. They render on the fly from their index, or once into the cache.

Real images (a folder searched recursively, a .zip, or a Hub data set) are listed with `datasets`, decoded once,
centre-cropped (or padded) to a square, resized with PIL's LANCZOS filter and written at the target resolution
into one cache file on disk (see "The on-disk cache" below), which every process memory-maps read-only. The trainer
reads that one copy and box-downsamples batches for lower progressive-growing stages, so no per-resolution copies
are needed.

    python data.py ~/images --resolution 256 --preview grid.png   # a report on a data set, and its cache built

Loading speed and training memory are measured by bench.py (`--sections data`, `--train-memory`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import itertools
import json
import os
import re
import shutil
import sys
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from checkpoint import save_grid
from common import ArgumentParser, DataError, int_at_least, run_cli
from faces import ATTRIBUTES, SYNTHETIC_RES, render_faces, render_faces_labels

SYNTHETIC_DEFAULT_SIZE = 50_000  # like FFHQ's 70k: enough that a 25M-image run sees each face ~500 times
REAL_RES = (4, 1024)
RESIZE_FILTER = Image.LANCZOS  # see square_resize for why
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
                 num_skipped: int = 0, label_kind: str = "attributes"):
        self.name = name
        self.label_kind = label_kind  # "attributes" (each label 0/1 or a number) or "classes" (one-hot rows)
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

    @property
    def labels(self) -> np.ndarray:
        """The labels of the stored images (count, K), float32 (mirrored items share their original's)."""
        return self._labels

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


def square_resize(im: Image.Image, res: int, pad: bool) -> np.ndarray:
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


def cached(folder: Path, name: str, res: int, count: int, what: str, fill) -> dict:
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
            print(f"data: cached {what}: {written} images at {res}x{res}, {_size(written * res * res * 3)} in "
                  f"{folder}", file=sys.stderr)
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
    import datasets  # here, not at the top: it takes seconds to import, and the synthetic faces never need it

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
    datasets.disable_progress_bars()  # listing local files is quick; the decoding below has its own bar
    try:
        return datasets.load_dataset("imagefolder", drop_labels=True, **loader, **kwargs)
    except Exception as e:
        raise DataError(f"could not read images from {path} ({_first_line(e)[:200]}): check that it holds "
                        f"images (and a {split!r} split, if it has split folders)") from None
    finally:
        datasets.enable_progress_bars()


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


def _decode_into(rows, count: int, image_column: str, label_of, res: int, pad: bool,
                 out: np.ndarray) -> tuple[int, list, int]:
    """Decode the images of `rows` (any iterable of dicts: a table or a stream) in order, writing the readable ones
    to out[0], out[1], ... (at most `count`) -> (number written, their label rows, number of unreadable ones).
    Decodes a chunk at a time in threads, so memory stays bounded at any data set size."""
    import datasets

    feature = datasets.Image()

    def one(value):
        try:
            if isinstance(value, dict):
                value = feature.decode_example(value)
            elif isinstance(value, (bytes, str)):
                value = feature.decode_example({"bytes": value, "path": None} if isinstance(value, bytes)
                                               else {"bytes": None, "path": value})
            value.load()
            return square_resize(value, res, pad)
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
                    labels.append(label_of(row))
                    written += 1
                bar.update()
    return written, labels, skipped


def _real_dataset(source, res, *, mirror, max_images, pad, split, image_column, label_columns, cache_dir, stream,
                  cond=False):
    folder = Path(cache_dir).expanduser() if cache_dir else cache_root() / "data"
    label_columns = list(label_columns or [])
    conditional = folder_labels(source) if cond else None  # checked before anything is read
    options = _short_hash(image_column, *label_columns, *(["cond"] if cond else []))  # what is read makes the entry
    name = f"{_source_id(source, split)}-{options}-{res}" + ("-pad" if pad else "") + \
        (f"-max{max_images}" if max_images else "")

    def label_of(row):
        if conditional is None:
            return [row[c] for c in label_columns]
        path = os.path.realpath((row[image_column] or {}).get("path") or "")
        return conditional.rows[os.path.relpath(path, conditional.root)]

    def fill(out):
        written, labels, skipped = _decode_into(rows, count, image_column, label_of, res, pad, out)
        if not written:
            raise DataError(f"none of the {skipped} files in {source!r} could be read as an image: "
                            "check the files (corrupt? not images?)")
        if conditional is not None:
            return written, {"labels": np.asarray(labels, np.float32).reshape(written, len(conditional.names)),
                             "skipped": np.int64(skipped), "attribute_names": np.array(conditional.names, dtype=str),
                             "label_kind": np.array(conditional.kind)}
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
        meta = cached(folder, name, res, count, source, fill)
    skipped = int(meta["skipped"])
    if skipped:
        print(f"data: skipped {skipped} unreadable file(s) in {source}", file=sys.stderr)
    return ImageDataset(name + ("-mirror" if mirror else ""), res, int(meta["count"]),
                        attribute_names=[str(a) for a in meta["attribute_names"]],
                        images_path=str(folder / f"{name}.u8"), labels=meta["labels"], mirror=mirror,
                        num_skipped=skipped, label_kind=str(meta.get("label_kind", "attributes")))


@dataclasses.dataclass
class FolderLabels:
    """The labels of a folder's images: rows[relative path] = the label vector, with the labels' names."""
    root: str
    rows: dict
    names: list
    kind: str  # "classes" (one-hot) or "attributes"


LABELS_FILE = "dataset.json"


def folder_labels(source: str) -> FolderLabels:
    """Labels for train.py --cond: from FOLDER/dataset.json in stylegan2-ada's format ({"labels": [[path, label],
    ...]}, label an int class or a list of numbers), else one class per subfolder (named after it). Every mismatch
    is one DataError line: an image without a label, a label for no image, an unknown class, a wrong length."""
    root = Path(source).expanduser()
    if not root.is_dir():
        raise DataError(f"--cond reads labels from a folder's {LABELS_FILE} or its subfolders (or the synthetic "
                        f"faces' attributes); {source} is not a folder: unpack it into one")
    files = [name for name, _ in _image_files(root)]
    if (root / LABELS_FILE).is_file():
        return _json_labels(root, files)
    top = [f for f in files if "/" not in f.replace(os.sep, "/")]
    if top:
        raise DataError(f"--cond: {len(top)} images lie at the top of {root} (e.g. {top[0]}), outside any class "
                        f"subfolder: move them into one, or give their labels in {root / LABELS_FILE}")
    classes = sorted({f.replace(os.sep, "/").split("/")[0] for f in files})
    if len(classes) < 2:
        raise DataError(f"--cond: {root} has one class subfolder ({classes[0]}); conditioning needs two or more")
    index = {c: i for i, c in enumerate(classes)}
    eye = np.eye(len(classes), dtype=np.float32)
    rows = {f: eye[index[f.replace(os.sep, "/").split("/")[0]]].tolist() for f in files}
    return FolderLabels(os.path.realpath(root), rows, classes, "classes")


def _json_labels(root: Path, files: list[str]) -> FolderLabels:
    path = root / LABELS_FILE
    try:
        entries = json.loads(path.read_text())["labels"]
        pairs = {str(Path(p)): label for p, label in entries}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path} is not a label file ({_first_line(e)[:80]}): it must read "
                        '{"labels": [["image.png", 0], ...]} (a class index or a list of numbers per image)') from None
    missing = [f for f in files if str(Path(f)) not in pairs]
    if missing:
        raise DataError(f"{path} has no label for {len(missing)} of the {len(files)} images (e.g. {missing[0]}): "
                        "label every image, or move the unlabelled ones out")
    known = {str(Path(f)) for f in files}
    stray = [p for p in pairs if p not in known]
    if stray:
        raise DataError(f"{path} labels {len(stray)} files that are not images in {root} (e.g. {stray[0]}): fix "
                        "the paths (relative to the folder, as stylegan2-ada's dataset_tool writes them)")
    values = list(pairs.values())
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        bad = [v for v in values if v < 0]
        if bad:
            raise DataError(f"{path}: unknown class {bad[0]}: class labels are indices 0, 1, 2, ...")
        eye = np.eye(max(values) + 1, dtype=np.float32)
        rows = {f: eye[pairs[str(Path(f))]].tolist() for f in files}
        return FolderLabels(os.path.realpath(root), rows, [str(i) for i in range(len(eye))], "classes")
    if all(isinstance(v, list) for v in values):
        lengths = sorted({len(v) for v in values})
        if len(lengths) > 1 or not lengths[0]:
            odd = next(p for p, v in pairs.items() if len(v) != len(values[0]))
            raise DataError(f"{path}: labels of different lengths ({', '.join(map(str, lengths))}; e.g. {odd}): "
                            "every image needs a vector of the same length")
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for v in values for x in v):
            raise DataError(f"{path}: a label vector holds something that is not a number: use numbers (0/1 "
                            "for attributes)")
        rows = {f: [float(x) for x in pairs[str(Path(f))]] for f in files}
        return FolderLabels(os.path.realpath(root), rows, [f"label{i}" for i in range(lengths[0])], "attributes")
    odd = next(v for v in values if not (isinstance(v, list) or (isinstance(v, int) and not isinstance(v, bool))))
    raise DataError(f"{path}: unknown class {odd!r}: a label is a class index (0, 1, ...) or a list of numbers, "
                    "the same kind for every image")


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
        def fill(out):
            step = 256
            for i in tqdm(range(0, count, step), desc=f"rendering faces at {res}x{res}", unit="batch",
                          disable=None, leave=False):
                out[i:i + step] = render_faces(np.arange(i, min(i + step, count)), res)[0]
            return count, {"labels": labels}

        path = Path(cache_dir).expanduser() / f"{name}.u8"
        cached(path.parent, name, res, count, "synthetic faces", fill)
    return ImageDataset(name + ("-mirror" if mirror else ""), res, count, attribute_names=ATTRIBUTES,
                        images_path=str(path) if path else None, labels=labels, synthetic=True, mirror=mirror)



class StreamSampler(torch.utils.data.Sampler):
    """Training's sampler: indices [start, stop) of an endless stream of per-epoch permutations (seeded by seed and
    epoch), a pure function of the images seen, so that a resumed run reads exactly what it would have."""

    def __init__(self, size: int, seed: int, start: int, stop: int):
        self.size, self.seed, self.start, self.stop = size, seed, start, stop

    def __len__(self):
        return self.stop - self.start

    def __iter__(self):
        pos = self.start
        while pos < self.stop:
            epoch, offset = divmod(pos, self.size)
            perm = np.random.RandomState((self.seed * 100003 + epoch) % 2**32).permutation(self.size)
            take = perm[offset: offset + (self.stop - pos)]
            yield from take.tolist()
            pos += len(take)


def make_dataset(source: str = "synthetic", resolution: int = 32, *, mirror: bool = False,
                 max_images: int | None = None, pad: bool = False, split: str = "train",
                 image_column: str = "image", label_columns: list[str] | None = None,
                 cache_dir: str | None = None, stream: bool = False, cond: bool = False) -> ImageDataset:
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
    once into it instead (worth it at 128 and up, where rendering is slower than a GPU trains).
    cond: labels for conditional training (folder_labels; the synthetic faces always carry their attributes)."""
    if not isinstance(source, str) or not source:
        raise DataError(f"data source must be a non-empty string, got {source!r}")
    if max_images is not None and (not isinstance(max_images, int) or max_images < 1):
        raise DataError(f"max_images must be a positive integer or None, got {max_images!r}")
    if source == "synthetic" or source.startswith("synthetic:"):
        res = _check_resolution(resolution, synthetic=True)
        return _synthetic_dataset(source, res, mirror=mirror, max_images=max_images, cache_dir=cache_dir)
    res = _check_resolution(resolution, synthetic=False)
    if cond and (label_columns or stream):
        raise DataError("--cond reads labels from a folder's dataset.json or subfolders: a Hub data set's label "
                        "columns are not yet a conditioning source")
    return _real_dataset(source, res, mirror=mirror, max_images=max_images, pad=pad, split=split,
                         image_column=image_column, label_columns=label_columns, cache_dir=cache_dir, stream=stream,
                         cond=cond)


# ----------------------------------------------------------------------------------------------------------------
# The data report: python data.py FOLDER --resolution R

GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def _image_files(source: Path) -> list[tuple[str, callable]]:
    """(name, read bytes) of every image file in a folder (recursive) or a zip, in sorted order."""
    if source.is_dir():
        paths = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        return [(str(p.relative_to(source)), p.read_bytes) for p in paths]
    if source.suffix.lower() == ".zip":
        with zipfile.ZipFile(source) as z:
            names = sorted(n for n in z.namelist() if Path(n).suffix.lower() in IMAGE_EXTENSIONS)
        return [(n, lambda n=n: _zip_member(source, n)) for n in names]
    raise DataError(f"{source} is neither a folder nor a .zip: the report reads local images")


def _zip_member(path: Path, name: str) -> bytes:
    with zipfile.ZipFile(path) as z:
        return z.read(name)


def inspect_images(source: str | Path) -> dict:
    """Every image file of a folder or zip, opened and measured: counts, sizes, modes, alpha, duplicates, and the
    files that could not be read, with why. Reads only; writes nothing."""
    source = Path(source).expanduser()
    if not source.exists():
        raise DataError(f"{source} does not exist: pass a folder of images or a .zip")
    files = _image_files(source)
    if not files:
        raise DataError(f"no image files under {source}: expected {', '.join(IMAGE_EXTENSIONS)}")
    sizes, modes, alpha, skipped, by_hash = [], {}, 0, [], {}
    for name, read in tqdm(files, desc="reading", unit="img", disable=None, leave=False):
        raw = read()
        try:
            with Image.open(io.BytesIO(raw)) as im:
                im.load()
                size, mode = im.size, im.mode
                has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info)
        except Exception as e:  # PIL raises many types for a bad file
            skipped.append((name, _first_line(e)))
            continue
        sizes.append(size)
        kind = "greyscale" if mode in GREY_MODES else "colour"
        modes[kind] = modes.get(kind, 0) + 1
        alpha += has_alpha
        by_hash.setdefault(hashlib.sha1(raw).hexdigest(), []).append(name)
    return {"source": str(source), "found": len(files), "sizes": sizes, "modes": modes, "alpha": alpha,
            "skipped": skipped, "duplicates": [names for names in by_hash.values() if len(names) > 1]}


def report_lines(info: dict, resolution: int, pad: bool) -> list[str]:
    """The report as lines; each problem of the data is one line starting with 'warning:'."""
    sizes, n = np.array(info["sizes"] or [(0, 0)]), len(info["sizes"])
    lines = [f"{info['source']}: {info['found']} image files, {n} read, {len(info['skipped'])} skipped"]
    for name, why in info["skipped"][:10]:
        lines.append(f"  skipped {name}: {why}")
    if len(info["skipped"]) > 10:
        lines.append(f"  ... and {len(info['skipped']) - 10} more skipped")
    if not n:
        return lines + ["warning: no file could be read as an image: nothing to train on"]
    short, w, h = sizes.min(1), sizes[:, 0], sizes[:, 1]
    lines.append(f"sizes: shorter side {short.min()} to {short.max()} px (median {int(np.median(short))}); "
                 f"{len({tuple(s) for s in info['sizes']})} distinct sizes")
    small = int((short < resolution).sum())
    if small:
        lines.append(f"warning: {small} of {n} images are smaller than {resolution}x{resolution} (the smallest "
                     f"{w[short.argmin()]}x{h[short.argmin()]}): they will be upscaled and look blurry")
    ratio = np.maximum(w, h) / np.maximum(np.minimum(w, h), 1)
    odd = ratio > 1.01
    if odd.any():
        if pad:
            lost = 1 - (w * h) / np.maximum(w, h) ** 2
            lines.append(f"warning: {int(odd.sum())} of {n} images are not square (up to {ratio.max():.2f}:1): "
                         f"--pad fills {lost[odd].mean():.0%} of each on average with black")
        else:
            lost = 1 - np.minimum(w, h) ** 2 / (w * h)
            lines.append(f"warning: {int(odd.sum())} of {n} images are not square (up to {ratio.max():.2f}:1): the "
                         f"centre crop cuts {lost[odd].mean():.0%} of each on average (up to {lost.max():.0%}); "
                         "--pad keeps it all")
    else:
        lines.append("aspect: every image is square")
    grey, colour = info["modes"].get("greyscale", 0), info["modes"].get("colour", 0)
    lines.append(f"modes: {colour} colour, {grey} greyscale, {info['alpha']} with alpha")
    if grey and colour:
        lines.append(f"warning: {grey} greyscale images among {colour} colour ones: they train as grey RGB")
    if info["alpha"]:
        lines.append(f"warning: {info['alpha']} images have an alpha channel: transparent pixels become white")
    dups = info["duplicates"]
    if dups:
        extra = sum(len(d) - 1 for d in dups)
        lines.append(f"warning: {extra} exact duplicates in {len(dups)} groups (e.g. {', '.join(dups[0][:3])}): "
                     "the trainer sees them more often than the others")
    else:
        lines.append("duplicates: none (by content hash)")
    return lines


def main(argv=None) -> dict:
    parser = ArgumentParser(
        "data.py", "A report on a data set before you train on it: what is there, what is wrong with it, and what the "
                   "trainer will see; it builds the data cache, so that training starts at once.",
        "examples:\n  python data.py ~/images --resolution 256\n"
        "  python data.py photos.zip --resolution 64 --pad --preview preview.png\n"
        "Nothing is written into the data's folder.")
    parser.add_argument("source", nargs="?", help="a folder of images (searched recursively) or a .zip")
    parser.add_argument("--resolution", type=int_at_least(4), default=256, help="training resolution (default 256)")
    parser.add_argument("--pad", action="store_true", help="pad non-square images instead of centre-cropping them")
    parser.add_argument("--preview", metavar="PNG", help="a grid of the first 32 images as the trainer sees them")
    parser.add_argument("--cache-dir", help="where the cache goes (default: as train.py's)")
    args = parser.parse_args(argv)
    if args.source is None:
        parser.error("name the data: python data.py FOLDER --resolution R")
    if args.preview and Path(args.preview).exists():
        parser.error(f"--preview {args.preview} exists; remove it or give another name")
    res = _check_resolution(args.resolution, synthetic=False)
    info = inspect_images(args.source)
    for line in report_lines(info, res, args.pad):
        print(line)
    if not info["sizes"]:
        raise DataError(f"none of the {info['found']} files in {args.source} could be read as an image")
    dataset = make_dataset(str(args.source), res, pad=args.pad, cache_dir=args.cache_dir)
    print(f"cache: {len(dataset)} images at {res}x{res}, ready for `train.py --data {args.source} --resolution {res}"
          f"{' --pad' if args.pad else ''}`")
    if args.preview:
        shown = np.stack([dataset[i][0].permute(1, 2, 0).numpy() for i in range(min(32, len(dataset)))])
        save_grid(shown, Path(args.preview), cols=8)
        print(f"preview: {args.preview}")
    return {**info, "dataset": dataset}


if __name__ == "__main__":
    run_cli(main)
