"""Pickles from outside (dataset files, checkpoints) can hold data but cannot run code."""
import collections
import io
import os
import pickle

import numpy as np
import pytest

from learngene_ea.io.checkpoint import FORMAT, CheckpointError, dumps_checkpoint, loads_checkpoint
from learngene_ea.errors import UserError
from learngene_ea.io.safe_pickle import load_data_pickle


def load(data: bytes, error_class=UserError):
    return load_data_pickle(io.BytesIO(data), "dataset file 'x.pkl'", error_class)


class _OpensForWriting:
    """Unpickling it calls ``open(path, "w")``, which creates the file (pickled as ``io.open``)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _calls(module: str, name: str) -> bytes:
    """A protocol-0 pickle that calls ``module.name("true")``."""
    return f"c{module}\n{name}\n(S'true'\ntR.".encode()


# ----------------------------------------------------------------------------- what dataset files hold

ARRAYS = {
    "uint8": np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
    "int64": np.array([-(2 ** 40), 0, 7], dtype=np.int64),
    "float32": np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2),
    "fortran": np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3)),
    "bool": np.array([True, False]),
}


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("dtype", sorted(ARRAYS))
def test_numpy_arrays_round_trip(protocol, dtype):
    array = ARRAYS[dtype]
    loaded = load(pickle.dumps(array, protocol=protocol))
    assert loaded.dtype == array.dtype and loaded.shape == array.shape
    assert np.array_equal(loaded, array)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_nested_plain_data_with_bytes_keys_round_trips(protocol):
    data = {b"data": [np.uint8(3), np.float32(0.5), 2 ** 70, -1.25, "text", b"raw", b""],
            b"nested": {b"inner": (1, (2, 3)), "names": [b"apple", b"bee"]},
            "ordered": collections.OrderedDict([("b", 1), ("a", 2)]), "none": None, "flag": True}
    loaded = load(pickle.dumps(data, protocol=protocol))
    assert loaded == data
    assert type(loaded["ordered"]) is collections.OrderedDict and list(loaded["ordered"]) == ["b", "a"]
    assert type(loaded[b"data"][0]) is np.uint8 and type(loaded[b"data"][1]) is np.float32


def test_a_python2_pickle_like_cifar100s_loads_with_latin1_strings():
    # written by Python 2 + numpy 1.x: str keys and array bytes are 8-bit strings, numpy.core names
    py2 = (b"\x80\x02}q\x00(U\x04dataq\x01cnumpy.core.multiarray\n_reconstruct\nq\x02cnumpy\nndarray\n"
           b"q\x03K\x00\x85U\x01b\x87Rq\x04(K\x01K\x01K\x02\x86cnumpy\ndtype\nq\x05U\x02u1K\x00K\x01\x87Rq\x06"
           b"(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89U\x02\x01\xfftbU\x0bfine_labels]q\x07"
           b"(K\x03K\x05eu.")
    loaded = load(py2)
    assert list(loaded) == ["data", "fine_labels"] and loaded["fine_labels"] == [3, 5]
    assert loaded["data"].dtype == np.uint8 and loaded["data"].tolist() == [[1, 255]]


def test_numpy_dtype_classes_are_admitted():
    dtype_class = type(np.dtype(np.uint8))  # numpy.dtypes.UInt8DType
    assert load(pickle.dumps(dtype_class, protocol=4)) is dtype_class


# ----------------------------------------------------------------------------- what they never hold

@pytest.mark.parametrize("module, name", [("os", "system"), ("posix", "system"), ("builtins", "eval"),
                                          ("__builtin__", "eval"), ("subprocess", "Popen"),
                                          ("builtins", "getattr"), ("numpy", "load")])
def test_a_global_outside_the_allow_list_is_refused_naming_file_and_global(module, name):
    message = f"dataset file 'x.pkl' holds '{module}.{name}', which a dataset file never contains"
    with pytest.raises(UserError, match=message.replace(".", r"\.")):
        load(_calls(module, name))


def test_a_refused_pickle_has_no_effect(tmp_path):
    marker = tmp_path / "pwned"
    data = pickle.dumps({b"data": [_OpensForWriting(marker)]}, protocol=2)  # nested, not at the top
    with pytest.raises(UserError, match=r"holds 'io\.open'.*refusing to load it \(it could run code\)"):
        load(data)
    assert not marker.exists()


def test_the_refusal_is_raised_as_the_callers_error_class():
    with pytest.raises(pickle.UnpicklingError, match="'os.system'"):
        load_data_pickle(io.BytesIO(_calls("os", "system")), "dataset file 'x.pkl'")
    with pytest.raises(KeyError):
        load(_calls("os", "system"), error_class=KeyError)


def test_bytes_may_only_be_stored_as_latin1():
    rot13 = b"\x80\x02c_codecs\nencode\nX\x02\x00\x00\x00abX\x05\x00\x00\x00rot13\x86R."
    assert pickle.loads(rot13) == "no"  # unrestricted, any codec runs: here not even bytes come out
    with pytest.raises(pickle.UnpicklingError, match="'rot13', not latin-1"):
        load(rot13)


# ----------------------------------------------------------------------------- checkpoints

def test_a_checkpoint_naming_a_foreign_global_is_refused_by_the_unpickler(tmp_path):
    marker = tmp_path / "pwned"
    data = dumps_checkpoint({"format": FORMAT, "x": _OpensForWriting(marker)})  # valid header and SHA-256
    with pytest.raises(CheckpointError, match=r"evil\.pkl: refusing to load 'io\.open': checkpoints may only"):
        loads_checkpoint(data, "evil.pkl")
    assert not marker.exists()


class _CreatesACreatorClass:
    """Unpickling it calls ``deap.creator.meta_create``, which defines a class in ``deap.creator``."""

    def __reduce__(self):
        from deap import base, creator

        return (creator.meta_create, ("EvilClass", base.Fitness, {"weights": (1.0,)}))


def test_a_checkpoint_may_not_create_an_unknown_deap_creator_class():
    from deap import creator

    data = dumps_checkpoint({"format": FORMAT, "x": _CreatesACreatorClass()})
    with pytest.raises(CheckpointError, match="refusing to create DEAP class 'EvilClass' from a checkpoint"):
        loads_checkpoint(data, "evil.pkl")
    assert not hasattr(creator, "EvilClass")


def test_a_checkpoint_of_plain_data_and_arrays_loads():
    payload = {"format": FORMAT, "generation": 3, "rng": np.arange(5, dtype=np.uint32),
               "seen": {1, 2}, "nested": collections.defaultdict(list, a=[(1.5, "x")])}
    loaded = loads_checkpoint(dumps_checkpoint(payload))
    assert np.array_equal(loaded.pop("rng"), payload.pop("rng")) and loaded == payload


def test_removing_the_restriction_would_run_the_code(tmp_path):
    # the control for the tests above: the same bytes do act when unpickled without the allow-list
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(_OpensForWriting(marker))).close()
    assert marker.exists()
    os.remove(marker)
