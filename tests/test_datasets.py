"""Dataset loaders read the real on-disk formats (tiny fixtures written in exactly those formats)."""
from __future__ import annotations

import csv
import json
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from learngene_ea.data import files
from learngene_ea.data.cifarfs import load_cifarfs, packaged_split
from learngene_ea.data.imagefolder import load_imagefolder, resolve_split
from learngene_ea.data.miniimagenet import load_miniimagenet
from learngene_ea.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The 100 CIFAR-100 fine labels in label-index order (what meta's fine_label_names holds).
CIFAR100_FINE = """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile
cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower
leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter
palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose
sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table
tank telephone television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman
worm""".split()

CIFARFS_VAL = ("otter motorcycle television lamp crocodile shark butterfly beaver beetle tractor flatfish "
               "maple_tree camel crab sea cattle").split()
CIFARFS_TEST = ("baby bed bicycle chimpanzee fox leopard man pickup_truck plain poppy rocket rose snail "
                "sweet_pepper table telephone wardrobe whale woman worm").split()


# ----------------------------------------------------------------------------- fixtures

def write_cifar100(folder, per_class=(2, 1), bytes_keys=True, seed=0):
    """A CIFAR-100 'python version' folder: train/test/meta pickles with N x 3072 uint8 rows."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    key = (lambda k: k.encode()) if bytes_keys else (lambda k: k)
    parts = {}
    for part, n in zip(("train", "test"), per_class):
        labels = list(np.tile(np.arange(100), n)[rng.permutation(100 * n)].tolist())
        data = rng.integers(0, 256, size=(100 * n, 3072), dtype=np.uint8)
        parts[part] = (data, labels)
        obj = {key("filenames"): [key(f"img_{i}.png") for i in range(len(labels))],
               key("batch_label"): key(f"{part}ing batch 1 of 1"),
               key("fine_labels"): labels, key("coarse_labels"): [lab // 5 for lab in labels],
               key("data"): data}
        with open(os.path.join(folder, part), "wb") as f:
            pickle.dump(obj, f, protocol=2)
    with open(os.path.join(folder, "meta"), "wb") as f:
        pickle.dump({key("fine_label_names"): [key(n) for n in CIFAR100_FINE],
                     key("coarse_label_names"): [key(f"super{i}") for i in range(20)]}, f, protocol=2)
    return parts


def write_image(path, size=(12, 10), mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    img = Image.fromarray(arr[..., 0] if channels == 1 else arr)  # mode follows the array shape
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img.save(path)


def write_imagefolder(root, num_classes=10, per_class=3):
    formats = [("png", "RGB"), ("jpg", "L"), ("png", "RGBA"), ("bmp", "RGB"), ("webp", "RGB")]
    for c in range(num_classes):
        for i in range(per_class):
            ext, mode = formats[(c + i) % len(formats)]
            write_image(os.path.join(root, f"class_{c:02d}", f"{i}.{ext}"), size=(10 + c, 14), mode=mode,
                        seed=c * 100 + i)
    return [f"class_{c:02d}" for c in range(num_classes)]


MINI_SPLITS = {"train": ["n01930112", "n01532829"], "val": ["n02110063"], "test": ["n01981276"]}


def write_miniimagenet_csv(root, per_class=3):
    """Ravi & Larochelle layout: {train,val,test}.csv (filename,label) + images/*.jpg (84x84)."""
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    rows = {}
    for split, wnids in MINI_SPLITS.items():
        rows[split] = []
        for i in range(per_class):  # interleave classes: the loader must group and order them itself
            for wnid in wnids:
                name = f"{wnid}{i + 1:08d}.jpg"
                write_image(os.path.join(root, "images", name), size=(84, 84), seed=int(wnid[1:]) % 1000 + i)
                rows[split].append((name, wnid))
        with open(os.path.join(root, f"{split}.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["filename", "label"])
            writer.writerows(rows[split])
    return rows


def write_miniimagenet_pickles(root, csv_root, rows):
    """The pickle caches made from the same decoded images, in the same per-class order."""
    os.makedirs(root, exist_ok=True)
    for split, split_rows in rows.items():
        images, class_dict = [], {}
        for name, wnid in split_rows:
            class_dict.setdefault(wnid, []).append(len(images))
            images.append(np.asarray(Image.open(os.path.join(csv_root, "images", name)).convert("RGB")))
        # a different dict order than the CSV: the loader must not depend on it
        class_dict = dict(sorted(class_dict.items(), reverse=True))
        with open(os.path.join(root, f"mini-imagenet-cache-{split}.pkl"), "wb") as f:
            pickle.dump({"image_data": np.stack(images), "class_dict": class_dict}, f, protocol=4)


class OpensForWriting:
    """Unpickling it calls ``open(path, "w")``: a dataset file that would create a file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def write_poisoned(root, dataset, marker):
    """A dataset whose first-read pickle would create ``marker``; returns that pickle's path."""
    if dataset == "cifarfs":
        write_cifar100(root)
        path = os.path.join(root, "meta")
        obj = {b"fine_label_names": [OpensForWriting(marker)]}
    else:
        os.makedirs(root)
        for split, wnids in MINI_SPLITS.items():
            with open(os.path.join(root, f"mini-imagenet-cache-{split}.pkl"), "wb") as f:
                pickle.dump({"image_data": np.zeros((len(wnids), 84, 84, 3), np.uint8),
                             "class_dict": {w: [i] for i, w in enumerate(wnids)}}, f, protocol=4)
        path = os.path.join(root, "mini-imagenet-cache-train.pkl")
        obj = {"image_data": np.zeros((1, 84, 84, 3), np.uint8), "class_dict": {"n0": OpensForWriting(marker)}}
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)
    return path


# ----------------------------------------------------------------------------- CIFAR-FS

def test_packaged_cifarfs_split_is_the_standard_64_16_20():
    split = packaged_split()
    assert [len(split[s]) for s in ("train", "val", "test")] == [64, 16, 20]
    assert sorted(split["val"]) == sorted(CIFARFS_VAL)
    assert sorted(split["test"]) == sorted(CIFARFS_TEST)
    every = split["train"] + split["val"] + split["test"]
    assert sorted(every) == sorted(CIFAR100_FINE)  # disjoint, each of the 100 names exactly once


@pytest.mark.parametrize("bytes_keys", [True, False])
def test_cifarfs_reads_the_python_pickles(tmp_path, bytes_keys):
    parts = write_cifar100(tmp_path / "cifar-100-python", bytes_keys=bytes_keys)
    for root in (tmp_path, tmp_path / "cifar-100-python"):  # the folder itself or its parent
        ds = load_cifarfs(str(root))
        assert ds.name == "cifarfs" and tuple(ds.images.shape) == (300, 3, 32, 32)
        assert [len(ds.splits[s]) for s in ("train", "val", "test")] == [64, 16, 20]
        names = {s: {ds.class_names[i] for i in ids} for s, ids in ds.splits.items()}
        assert names["val"] == set(CIFARFS_VAL) and names["test"] == set(CIFARFS_TEST)
        assert set(ds.images_per_class().values()) == {3}
    # pixels: row = R plane, G plane, B plane of 32x32; first image of a class = its first train row
    data, labels = parts["train"]
    fine = CIFAR100_FINE.index("otter")
    row = data[labels.index(fine)]
    first = ds.indices_of_class(ds.class_names.index("otter"))[0]
    assert torch.equal(ds.images[first], torch.from_numpy(row.reshape(3, 32, 32)))
    assert torch.equal(ds.images[first, 1], torch.from_numpy(row[1024:2048].reshape(32, 32)))
    # mean/std come from the training classes, on the 0..1 scale
    train = torch.cat([ds.indices_of_class(i) for i in ds.splits["train"]])
    expect = ds.images[train].double().div(255).mean(dim=(0, 2, 3))
    assert np.allclose(ds.mean, expect.numpy(), atol=1e-6)


def test_cifarfs_reads_split_class_folders(tmp_path):
    for split, classes in {"train": ["b", "a"], "val": ["c"], "test": ["d"]}.items():
        for c in classes:
            for i in range(2):
                write_image(str(tmp_path / split / c / f"{i}.png"), size=(32, 32), seed=ord(c) + i)
    ds = load_cifarfs(str(tmp_path))
    assert ds.class_names == ["a", "b", "c", "d"]
    assert ds.splits == {"train": [0, 1], "val": [2], "test": [3]}
    assert tuple(ds.images.shape) == (8, 3, 32, 32) and ds.cache_path is not None


def test_cifarfs_reads_bertinetto_split_files(tmp_path):
    base = tmp_path / "cifar100"
    lists = {"train": ["bee", "apple"], "val": ["cup"], "test": ["fox"]}
    os.makedirs(base / "splits" / "bertinetto")
    for split, classes in lists.items():
        (base / "splits" / "bertinetto" / f"{split}.txt").write_text("\n".join(classes) + "\n")
        for c in classes:
            write_image(str(base / "data" / c / "img_0.png"), size=(32, 32))
    write_image(str(base / "data" / "unused" / "img_0.png"), size=(32, 32))  # not in any list
    ds = load_cifarfs(str(tmp_path))  # parent of cifar100/
    assert ds.class_names == ["apple", "bee", "cup", "fox"]
    assert [len(ds.splits[s]) for s in ("train", "val", "test")] == [2, 1, 1]


def test_cifarfs_without_its_files_names_what_it_looked_for(tmp_path):
    with pytest.raises(UserError, match=r"has no CIFAR-FS data \(looked for cifar-100-python/train, test, meta"):
        load_cifarfs(str(tmp_path))
    with pytest.raises(UserError, match="does not exist"):
        load_cifarfs(str(tmp_path / "nowhere"))


def test_cifarfs_corrupt_pickle_names_the_file(tmp_path):
    folder = tmp_path / "cifar-100-python"
    write_cifar100(folder)
    (folder / "train").write_bytes(b"not a pickle at all")
    with pytest.raises(UserError, match=r"'.*cifar-100-python/train' cannot be read as a pickle"):
        load_cifarfs(str(tmp_path))


@pytest.mark.parametrize("part", ["meta", "train"])
def test_cifarfs_pickle_that_would_run_code_is_refused_naming_the_file(tmp_path, part):
    folder = tmp_path / "cifar-100-python"
    write_cifar100(folder)
    marker = tmp_path / "pwned"
    with open(folder / part, "wb") as f:  # a Python-3 protocol-2 pickle, as the real files' protocol
        pickle.dump({b"data": OpensForWriting(marker), b"fine_labels": []}, f, protocol=2)
    message = (rf"CIFAR-100 file '.*cifar-100-python/{part}' holds 'io\.open', which a dataset file never "
               r"contains; refusing to load it \(it could run code\)")
    with pytest.raises(UserError, match=message):
        load_cifarfs(str(tmp_path))
    assert not marker.exists()


# ----------------------------------------------------------------------------- miniImageNet

def test_miniimagenet_cache_pickle_that_would_run_code_is_refused_naming_the_file(tmp_path):
    marker = tmp_path / "pwned"
    path = write_poisoned(str(tmp_path / "mini"), "miniimagenet", marker)
    with pytest.raises(UserError, match=rf"miniImageNet file '{re.escape(path)}' holds 'io\.open', "
                                        r"which a dataset file never contains"):
        load_miniimagenet(str(tmp_path / "mini"))
    assert not marker.exists()


@pytest.mark.parametrize("size", [84, 40])
def test_miniimagenet_csv_and_pickle_layouts_give_the_same_dataset(tmp_path, size):
    rows = write_miniimagenet_csv(tmp_path / "csv")
    write_miniimagenet_pickles(tmp_path / "pkl", tmp_path / "csv", rows)
    a = load_miniimagenet(str(tmp_path / "csv"), image_size=size)
    b = load_miniimagenet(str(tmp_path / "pkl"), image_size=size)
    assert a.class_names == b.class_names == ["n01532829", "n01930112", "n02110063", "n01981276"]
    assert a.splits == b.splits == {"train": [0, 1], "val": [2], "test": [3]}
    assert torch.equal(a.labels, b.labels) and torch.equal(a.images, b.images)
    assert tuple(a.images.shape) == (12, 3, size, size)
    assert a.mean == pytest.approx(b.mean) and a.std == pytest.approx(b.std)
    # within a class, images keep CSV-row order
    first = Image.open(tmp_path / "csv" / "images" / "n0153282900000001.jpg").convert("RGB")
    if size == 84:
        assert torch.equal(a.images[0], torch.from_numpy(np.asarray(first).transpose(2, 0, 1).copy()))
    assert a.cache_path is not None and (b.cache_path is None) == (size == 84)


def test_miniimagenet_missing_layout_and_missing_image(tmp_path):
    with pytest.raises(UserError, match=r"has no miniImageNet files \(looked for train.csv, val.csv, test.csv"):
        load_miniimagenet(str(tmp_path))
    write_miniimagenet_csv(tmp_path)
    os.remove(tmp_path / "images" / "n0211006300000002.jpg")
    with pytest.raises(UserError, match=r"image 'n0211006300000002.jpg' listed in '.*val.csv'"):
        load_miniimagenet(str(tmp_path))


def test_miniimagenet_corrupt_image_names_the_file(tmp_path):
    write_miniimagenet_csv(tmp_path)
    (tmp_path / "images" / "n0198127600000003.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(UserError, match=r"Image file '.*n0198127600000003.jpg' cannot be decoded"):
        load_miniimagenet(str(tmp_path))


# ----------------------------------------------------------------------------- image folders + cache

def test_imagefolder_reads_any_mode_and_size(tmp_path):
    names = write_imagefolder(tmp_path)
    ds = load_imagefolder(str(tmp_path), image_size=16, channels=1)
    assert ds.class_names == names and tuple(ds.images.shape) == (30, 1, 16, 16)
    assert ds.labels.tolist() == [c for c in range(10) for _ in range(3)]
    assert len(ds.mean) == 1
    rgb = load_imagefolder(str(tmp_path), image_size=8, channels=3)
    assert tuple(rgb.images.shape) == (30, 3, 8, 8)
    expect = np.asarray(Image.open(tmp_path / "class_00" / "0.png").convert("RGB").resize((8, 8), Image.Resampling.BILINEAR))
    assert torch.equal(rgb.images[0], torch.from_numpy(expect.transpose(2, 0, 1).copy()))


def test_imagefolder_split_is_reproducible_from_the_seed(tmp_path):
    names = [f"c{i:02d}" for i in range(25)]
    default = resolve_split(names, {"train": 0.64, "val": 0.16, "test": 0.2}, seed=0)
    assert [len(default[s]) for s in ("train", "val", "test")] == [16, 4, 5]
    assert sorted(sum(default.values(), [])) == list(range(25))
    assert resolve_split(names, {"train": 0.64, "val": 0.16, "test": 0.2}, seed=0) == default
    assert resolve_split(names, {"train": 0.64, "val": 0.16, "test": 0.2}, seed=1) != default
    mixed = resolve_split(names, {"train": 0.5, "val": 3, "test": ["c00", "c01"]}, seed=3)
    assert mixed["test"] == [0, 1] and len(mixed["val"]) == 3 and len(mixed["train"]) == 10


def test_imagefolder_mixed_split_gives_disjoint_splits_of_the_sizes_asked_for():
    names = [f"c{i:02d}" for i in range(25)]
    named = ["c20", "c03", "c17"]
    # val named, train by count, test a fraction of what the names and the count leave (25 - 3 - 12)
    split = resolve_split(names, {"train": 12, "val": named, "test": 0.5}, seed=0)
    train, val, test = (set(split[s]) for s in ("train", "val", "test"))
    assert val == {names.index(n) for n in named}
    assert len(train) == 12 and len(test) == 5
    assert not (train & val or train & test or val & test)
    assert train | val | test <= set(range(25))  # 5 classes left unused, none invented


@pytest.mark.parametrize("split, message", [
    ({"train": ["nope"], "val": 1, "test": 1}, "names class 'nope', which is not a class folder"),
    ({"train": ["c00", "c01"], "val": ["c01"], "test": 1}, "names class 'c01' in both train and val"),
    ({"train": 20, "val": 3, "test": 3}, "data.split.train asks for 20 classes, data.split.val for 3 and "
                                         "data.split.test for 3 (26 in all), but data.root has only 25 classes"),
    ({"train": 22, "val": ["c00", "c01", "c02", "c03"], "test": 0.5},
     "data.split.train asks for 22 classes, but only 21 of the 25 classes of data.root are left after the named lists"),
    ({"train": 0.8, "val": 0.2, "test": 0.2}, "data.split.train 0.8 + data.split.val 0.2 + data.split.test 0.2 "
                                              "add up to 1.2"),
    ({"train": 0.5, "val": 0.5}, "no 'test' entry"),
    ({"train": 0.97, "val": 0.02, "test": 0.01}, "data.split.test gets no classes"),
    ({"train": -2, "val": 1, "test": 1}, "data.split.train is -2"),
])
def test_imagefolder_bad_split_is_a_user_error(split, message):
    with pytest.raises(UserError, match=re.escape(message)):
        resolve_split([f"c{i:02d}" for i in range(25)], split, seed=0)


def test_imagefolder_without_class_folders(tmp_path):
    with pytest.raises(UserError, match="has no class folders with images"):
        load_imagefolder(str(tmp_path))


def test_cache_is_reused_then_rebuilt_when_a_file_changes(tmp_path, monkeypatch):
    write_imagefolder(tmp_path, num_classes=5)
    first = load_imagefolder(str(tmp_path), image_size=16)
    assert os.path.isfile(first.cache_path) and os.path.dirname(first.cache_path) == str(tmp_path / ".learngene_cache")

    def no_decoding(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(files, "decode_image", no_decoding)
    again = load_imagefolder(str(tmp_path), image_size=16)  # would fail if it decoded anything
    assert again.cache_path == first.cache_path and torch.equal(again.images, first.images)

    changed = tmp_path / "class_02" / "1.bmp"
    write_image(str(changed), size=(11, 14), seed=999)
    os.utime(changed, ns=(os.stat(changed).st_atime_ns, os.stat(changed).st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoded again"):
        load_imagefolder(str(tmp_path), image_size=16)
    monkeypatch.undo()
    rebuilt = load_imagefolder(str(tmp_path), image_size=16)
    assert rebuilt.cache_path != first.cache_path and not os.path.exists(first.cache_path)
    assert not torch.equal(rebuilt.images, first.images)


def test_cache_dir_holds_the_cache_when_given(tmp_path):
    write_imagefolder(tmp_path / "data", num_classes=5)
    ds = load_imagefolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"))
    assert os.path.dirname(ds.cache_path) == str(tmp_path / "cache")
    assert not (tmp_path / "data" / ".learngene_cache").exists()
    assert not [n for n in os.listdir(tmp_path / "cache") if n.startswith(".tmp")]  # temp file replaced


def test_corrupt_image_in_a_folder_names_the_file(tmp_path):
    write_imagefolder(tmp_path, num_classes=5)
    (tmp_path / "class_03" / "broken.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(UserError, match=r"'.*class_03/broken.png' cannot be decoded"):
        load_imagefolder(str(tmp_path))


@pytest.mark.parametrize("make,problem", [
    (lambda p: p.symlink_to(p.name), "is a symbolic-link loop"),
    (lambda p: p.symlink_to("gone.png"), "is a symbolic link to 'gone.png', which does not exist"),
    (lambda p: os.mkfifo(p), "is a fifo (named pipe), not a regular file"),  # reading it would block for ever
])
def test_an_image_name_that_is_no_image_file_is_refused_naming_it(tmp_path, make, problem):
    write_imagefolder(tmp_path, num_classes=5)
    bad = tmp_path / "class_02" / "a.png"
    make(bad)
    with pytest.raises(UserError, match=re.escape(f"Image file '{bad}' {problem}; replace or remove it.")):
        load_imagefolder(str(tmp_path))


def test_a_folder_named_like_an_image_is_skipped_and_a_linked_class_folder_is_a_class(tmp_path):
    write_imagefolder(tmp_path / "data", num_classes=5)
    (tmp_path / "data" / "class_01" / "folder.png").mkdir()
    write_imagefolder(tmp_path / "elsewhere", num_classes=1)
    (tmp_path / "data" / "linked").symlink_to(tmp_path / "elsewhere" / "class_00")
    ds = load_imagefolder(str(tmp_path / "data"), image_size=8)
    assert ds.class_names[-1] == "linked" and len(ds.class_names) == 6 and ds.images.shape[0] == 18


@pytest.mark.parametrize("target,problem", [("loop", "is a symbolic-link loop"),
                                            ("gone", "is a symbolic link to 'gone', which does not exist")])
def test_a_class_entry_that_is_a_broken_link_is_refused_naming_it(tmp_path, target, problem):
    write_imagefolder(tmp_path, num_classes=5)
    (tmp_path / "loop").symlink_to(target)
    with pytest.raises(UserError, match=re.escape(f"'{tmp_path / 'loop'}' {problem}; fix or remove that link.")):
        load_imagefolder(str(tmp_path))


def test_a_class_folder_whose_name_is_not_utf8_is_refused_naming_it(tmp_path):
    write_imagefolder(tmp_path, num_classes=5)
    os.rename(tmp_path / "class_02", os.path.join(os.fsencode(tmp_path), b"cl\xffss"))
    with pytest.raises(UserError, match=r"Class folder '.*cl\\udcffss' has a name that is not UTF-8 text; rename it"):
        load_imagefolder(str(tmp_path))


def test_image_files_whose_names_are_not_utf8_load_and_cache(tmp_path):
    write_imagefolder(tmp_path, num_classes=5)
    os.rename(tmp_path / "class_02" / "0.png", os.path.join(os.fsencode(tmp_path / "class_02"), b"\xff.png"))
    first = load_imagefolder(str(tmp_path), image_size=8)
    again = load_imagefolder(str(tmp_path), image_size=8)
    assert first.images.shape[0] == 15 and first.cache_path == again.cache_path
    assert torch.equal(first.images, again.images)


def test_a_listed_image_that_is_a_fifo_is_refused_not_waited_for(tmp_path):
    write_miniimagenet_csv(tmp_path)
    fifo = tmp_path / "images" / "n0198127600000003.jpg"
    os.remove(fifo)
    os.mkfifo(fifo)
    with pytest.raises(UserError, match=re.escape(f"Image file '{fifo}' is a fifo (named pipe), not a regular file")):
        load_miniimagenet(str(tmp_path))


def test_a_miniimagenet_csv_that_is_not_utf8_names_the_line(tmp_path):
    write_miniimagenet_csv(tmp_path)
    (tmp_path / "val.csv").write_bytes(b"filename,label\n\xe9t\xe9.jpg,n02110063\n")
    with pytest.raises(UserError, match=r"miniImageNet file '.*val.csv' is not UTF-8 text \(byte 0xe9 on line 2\)"):
        load_miniimagenet(str(tmp_path))


def test_a_cifarfs_split_list_that_is_not_utf8_names_the_line(tmp_path):
    base = tmp_path / "cifar100"
    os.makedirs(base / "splits" / "bertinetto")
    for split in ("train", "val", "test"):
        (base / "splits" / "bertinetto" / f"{split}.txt").write_bytes(b"apple\n" if split != "val" else b"cup\n\xff\n")
        write_image(str(base / "data" / "apple" / "img_0.png"), size=(32, 32))
    with pytest.raises(UserError, match=r"CIFAR-FS split list '.*val.txt' is not UTF-8 text \(byte 0xff on line 2\)"):
        load_cifarfs(str(tmp_path))


# ----------------------------------------------------------------------------- command line

def run_cli(*args, cwd):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "learngene_ea.data", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_json_describes_the_dataset(tmp_path):
    write_imagefolder(tmp_path / "data", num_classes=10)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"data:\n  name: imagefolder\n  root: {tmp_path / 'data'}\n  image_size: 16\n")
    done = run_cli("--config", str(recipe), "--set", "data.seed=3", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["name"] == "imagefolder" and info["images"] == 30 and info["classes"] == 10
    assert info["image_size"] == 16 and info["channels"] == 3
    assert [info["splits"][s]["classes"] for s in ("train", "val", "test")] == [6, 2, 2]
    assert info["splits"]["val"]["images_per_class"] == [3]
    assert info["cache_path"].endswith(".npz") and info["load_seconds"] >= 0
    assert len(info["mean"]) == len(info["std"]) == 3


def test_cli_text_output(tmp_path, capsys):
    from learngene_ea.cli.data import main

    write_imagefolder(tmp_path / "data", num_classes=10)
    code = main(["--set", "data.name=imagefolder", "--set", f"data.root={tmp_path / 'data'}",
                 "--set", "data.image_size=12"])
    out = capsys.readouterr().out
    assert code == 0
    assert "imagefolder: 10 classes, 30 images of 3x12x12" in out
    assert "val:   2 classes, 3 images per class:" in out and "cache: " in out


def test_cli_bad_root_exits_2_without_traceback(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"data:\n  name: cifarfs\n  root: {tmp_path / 'missing'}\n")
    done = run_cli("--config", str(recipe), "--json", cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "does not exist" in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("dataset", ["cifarfs", "miniimagenet"])
def test_cli_refuses_a_dataset_pickle_that_would_run_code_in_one_line(tmp_path, capsys, dataset):
    from learngene_ea.cli.data import main

    marker = tmp_path / "pwned"
    path = write_poisoned(str(tmp_path / "data"), dataset, marker)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"data:\n  name: {dataset}\n  root: {tmp_path / 'data'}\n")
    code = main(["--config", str(recipe)])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and not marker.exists()
    assert err.count("\n") == 1 and err.startswith("error: ") and f"'{path}' holds 'io.open'" in err


def test_cli_synthetic_dataset(capsys):
    pytest.importorskip("learngene_ea.data.synthetic")
    from learngene_ea.cli.data import main

    code = main(["--set", "data.name=synthetic", "--set", "data.images_per_class=10",
                 "--set", "data.image_size=16", "--json"])
    info = json.loads(capsys.readouterr().out)
    assert code == 0 and info["name"] == "synthetic" and info["cache_path"] is None


def test_cli_image_folder_with_a_link_loop_exits_2_in_one_line(tmp_path, capsys):
    from learngene_ea.cli.data import main

    write_imagefolder(tmp_path / "data", num_classes=5)
    (tmp_path / "data" / "class_00" / "a.png").symlink_to("a.png")
    assert main(["--set", "data.name=imagefolder", "--set", f"data.root={tmp_path / 'data'}"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"error: Image file '{tmp_path / 'data' / 'class_00' / 'a.png'}' is a symbolic-link loop; " \
                                "replace or remove it.\n"


def test_a_transfer_target_with_a_link_loop_stops_the_run_before_its_folder(tmp_path, capsys):
    from conftest import tiny_overrides
    from learngene_ea.cli import run

    write_imagefolder(tmp_path / "shapes", num_classes=8)
    (tmp_path / "shapes" / "class_03" / "a.png").symlink_to("a.png")
    sets = [a for o in tiny_overrides(**{"transfer.after_run": "true", "transfer.target.name": "imagefolder",
                                         "transfer.target.root": str(tmp_path / "shapes")}) for a in ("--set", o)]
    assert run.main([*sets, "--run-dir", str(tmp_path / "r"), "--quiet"]) == 2
    assert "class_03/a.png' is a symbolic-link loop" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
