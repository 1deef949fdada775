"""What the file-based loaders share: image decoding, the decoded-image cache, channel statistics.

Decoding thousands of JPEG/PNG files takes tens of seconds, so a loader decodes them once and
keeps the result as one uint8 ``.npz`` file. The cache is keyed by a fingerprint of its
sources (relative paths, sizes and modification times of every file, plus the image size and
channels), so it is reused while the files are unchanged and rebuilt when any of them changes.
By default it lives in ``<root>/.learngene_cache/`` (hidden, so image-folder scans skip it).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from ..errors import UserError
from ..io.paths import file_problem, folder_problem

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
CACHE_FOLDER = ".learngene_cache"
CACHE_VERSION = 1
_MODES = {1: "L", 3: "RGB"}


# ----------------------------------------------------------------------------- paths

def existing_root(root, looked_for: str, key: str = "data") -> str:
    """``root`` as an absolute path; :class:`UserError` (naming ``<key>.root``) when it is unset or not a folder."""
    if not root:
        raise UserError(f"{key}.root is not set; set it to the folder holding {looked_for}.")
    path = os.path.abspath(os.path.expanduser(os.fspath(root)))
    if not os.path.isdir(path):
        raise UserError(f"{key}.root '{root}' does not exist or is not a folder; "
                        f"set {key}.root to the folder holding {looked_for}.")
    return path


def _usable_image(entry: os.DirEntry) -> bool:
    """Is this directory entry an image file to read? Folders are not; a link loop, a link to nothing
    or a fifo with an image's name is a :class:`UserError` (a fifo would block the reader for ever)."""
    if entry.is_file(follow_symlinks=False):  # the common case, known from the listing alone
        return True
    problem = file_problem(entry.path)
    if problem is None:
        return True
    if problem == "is a folder, not a file":
        return False
    raise UserError(f"Image file '{entry.path}' {problem}; replace or remove it.")


def image_files(folder: str) -> list[str]:
    """Image files (by extension) directly inside ``folder``, sorted by name, hidden ones skipped."""
    with os.scandir(folder) as entries:
        names = [e.name for e in entries
                 if not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTENSIONS) and _usable_image(e)]
    return [os.path.join(folder, n) for n in sorted(names)]


def _is_folder(entry: os.DirEntry) -> bool:
    if entry.is_dir(follow_symlinks=False):
        return True
    if not entry.is_symlink():
        return False
    problem = folder_problem(entry.path)
    if problem is None:
        return True
    if problem.startswith(("is a symbolic", "cannot be read")):  # a loop or a link to nothing: not what was meant
        raise UserError(f"'{entry.path}' {problem}; fix or remove that link.")
    return False


def class_folders(folder: str) -> list[str]:
    """Names of the non-hidden sub-folders of ``folder`` that hold at least one image, sorted.

    A class is named by its folder in every report, so a name that is not UTF-8 text is a :class:`UserError`.
    """
    with os.scandir(folder) as entries:
        names = [e.name for e in entries if not e.name.startswith(".") and _is_folder(e)]
    names = sorted(n for n in names if image_files(os.path.join(folder, n)))
    for name in names:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise UserError(f"Class folder {os.path.join(folder, name)!r} has a name that is not UTF-8 text; "
                            "rename it (class names go into every report).") from None
    return names


# ----------------------------------------------------------------------------- decoding

def _resize(img: Image.Image, size: int) -> Image.Image:
    # Pillow's bilinear filter widens its support when shrinking, so downscaling is antialiased.
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return img


def _to_chw(img: Image.Image) -> np.ndarray:
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def decode_image(path: str, size: int, channels: int) -> np.ndarray:
    """One image file as uint8 ``[channels, size, size]`` (any mode converted, then resized)."""
    problem = file_problem(path)  # a fifo listed as an image would block here for ever
    if problem:
        raise UserError(f"Image file '{path}' {problem}; replace or remove it.")
    try:
        with Image.open(path) as img:
            return _to_chw(_resize(img.convert(_MODES[channels]), size))
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise UserError(f"Image file '{path}' cannot be decoded ({err}); replace or remove it.") from err


def resize_array(image_hwc: np.ndarray, size: int) -> np.ndarray:
    """An RGB uint8 ``[H, W, 3]`` array resized like :func:`decode_image`, as ``[3, size, size]``."""
    return _to_chw(_resize(Image.fromarray(image_hwc), size))


def decode_images(paths: list[str], size: int, channels: int) -> np.ndarray:
    """Decode every file into one uint8 ``[N, channels, size, size]`` array (threads: PIL frees the GIL)."""
    out = np.empty((len(paths), channels, size, size), dtype=np.uint8)

    def work(chunk):
        for i in chunk:
            out[i] = decode_image(paths[i], size, channels)

    chunks = [range(s, min(s + 256, len(paths))) for s in range(0, len(paths), 256)]
    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        list(pool.map(work, chunks))
    return out


# ----------------------------------------------------------------------------- statistics

def class_moments(images: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """Per-class, per-channel pixel sums and sums of squares (0..255 scale) and pixel counts.

    Stored with the cache, so the mean/std of any set of classes (see :func:`mean_std`) costs
    nothing on later loads. Exact integer sums, in chunks of ~16M values to keep memory flat.
    """
    n, c = images.shape[:2]
    per_image = int(np.prod(images.shape[2:]))
    sums = np.zeros((num_classes, c))
    squares = np.zeros((num_classes, c))
    step = max(1, (1 << 24) // max(1, c * per_image))
    for start in range(0, n, step):
        x = images[start:start + step].reshape(-1, c, per_image)
        lab = labels[start:start + step]
        np.add.at(sums, lab, x.sum(-1, dtype=np.int64))
        x = x.astype(np.uint16)  # 255 ** 2 fits in 16 bits: exact and half the memory of float32
        np.multiply(x, x, out=x)
        np.add.at(squares, lab, x.sum(-1, dtype=np.int64))
    pixels = np.bincount(labels, minlength=num_classes).astype(np.float64) * per_image
    return {"class_sum": sums, "class_sumsq": squares, "class_pixels": pixels}


def leading_mean_std(images: np.ndarray, labels: np.ndarray, num_leading: int):
    """Mean and std of classes ``0 .. num_leading - 1`` of label-sorted images (a view, no copy)."""
    end = int(np.searchsorted(labels, num_leading))
    return mean_std(class_moments(images[:end], labels[:end], num_leading), range(num_leading))


def mean_std(moments: dict[str, np.ndarray], class_ids) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (0..1 scale) over the images of ``class_ids``."""
    ids = np.asarray(list(class_ids), dtype=np.int64)
    pixels = max(float(moments["class_pixels"][ids].sum()), 1.0)
    mean = moments["class_sum"][ids].sum(0) / pixels / 255.0
    var = moments["class_sumsq"][ids].sum(0) / pixels / 255.0 ** 2 - mean ** 2
    std = np.maximum(np.sqrt(np.maximum(var, 0.0)), 1.0 / 255.0)  # a flat channel must not divide by 0
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


# ----------------------------------------------------------------------------- cache

def fingerprint(root: str, sources: list[str], params: dict) -> str:
    """Hash of the sources' relative paths, sizes and mtimes, and of the decoding parameters."""
    h = hashlib.sha256(json.dumps({"version": CACHE_VERSION, **params}, sort_keys=True).encode())
    for path in sources:
        try:
            st = os.stat(path)
        except OSError as err:
            raise UserError(f"Dataset file '{path}' cannot be read ({err.strerror}); "
                            "check that the dataset is complete.") from err
        # os.fsencode: a file name need not be UTF-8 (its bytes are kept as the OS gave them)
        h.update(os.fsencode(os.path.relpath(path, root)) + f"\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _read_cache(path: str) -> dict[str, np.ndarray] | None:
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception:  # a damaged cache is only a cache: rebuild it
        return None


def _write_atomic(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as ``.npz`` via a temp file in the same folder, fsync, then ``os.replace``."""
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; other users may share the dataset
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def cached(tag: str, root: str, sources: list[str], params: dict, build, cache_dir=None):
    """Arrays from the cache keyed by ``sources`` + ``params``, or ``build()`` them and cache them.

    ``tag`` (e.g. ``miniimagenet-84px-3ch``) starts the file name. Returns ``(arrays, cache_path)``;
    ``cache_path`` is ``None`` when the cache folder is not writable (the data still loads, with a
    warning). Older caches with the same tag and root in that folder are deleted once the new one
    is written.
    """
    key = fingerprint(root, sources, params)
    folder = os.path.abspath(os.path.expanduser(cache_dir)) if cache_dir else os.path.join(root, CACHE_FOLDER)
    prefix = f"{tag}-{hashlib.sha256(os.fsencode(root)).hexdigest()[:8]}-"
    path = os.path.join(folder, prefix + key[:16] + ".npz")
    arrays = _read_cache(path)
    if arrays is not None:
        return arrays, path
    arrays = build()
    try:
        os.makedirs(folder, exist_ok=True)
        _write_atomic(path, arrays)
    except OSError as err:
        warnings.warn(f"Could not write the image cache '{path}' ({err.strerror}); "
                      "set data.cache_dir to a writable folder so later runs start faster.", stacklevel=2)
        return arrays, None
    for name in os.listdir(folder):
        if name.startswith(prefix) and name.endswith(".npz") and os.path.join(folder, name) != path:
            try:
                os.remove(os.path.join(folder, name))
            except OSError:
                pass
    return arrays, path


def load_class_images(kind: str, root: str, class_files: list[tuple[str, list[str]]], size: int,
                      channels: int, cache_dir=None):
    """Decode (or read from the cache) the images of classes given as ``(name, [files])``.

    Class ``i`` of ``class_files`` gets label ``i``; images are grouped by class in list order.
    Returns ``(images [N, C, S, S] uint8, labels int64, moments, cache_path)``.
    """
    paths = [p for _, files in class_files for p in files]
    names = [name for name, _ in class_files]

    def build():
        labels = np.repeat(np.arange(len(class_files)), [len(f) for _, f in class_files]).astype(np.int64)
        images = decode_images(paths, size, channels)
        return {"images": images, "labels": labels, **class_moments(images, labels, len(names))}

    params = {"size": size, "channels": channels, "classes": names, "counts": [len(f) for _, f in class_files]}
    arrays, path = cached(f"{kind}-{size}px-{channels}ch", root, paths, params, build, cache_dir)
    moments = {k: arrays[k] for k in ("class_sum", "class_sumsq", "class_pixels")}
    return arrays["images"], arrays["labels"], moments, path
