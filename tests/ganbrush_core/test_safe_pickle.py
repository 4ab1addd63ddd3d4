"""The one restricted unpickler: explicit allow-lists, nothing outside them ever runs."""

import collections
import io
import os
import pickle

import numpy as np
import pytest
import torch

from ganbrush_core.safe_pickle import (
    NUMPY_ARRAYS,
    NUMPY_SCALARS,
    PLAIN_CONTAINERS,
    UnsafePickleError,
    load_numpy_tree,
    restricted_load,
    torch_tensors,
)


class _Marker:
    """Pickles as a call that would create ``path`` if the unpickler ran it."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


@pytest.mark.parametrize("allowed", [NUMPY_ARRAYS, NUMPY_SCALARS, PLAIN_CONTAINERS, torch_tensors(),
                                     {**NUMPY_ARRAYS, **NUMPY_SCALARS, **PLAIN_CONTAINERS, **torch_tensors()}])
def test_a_code_running_pickle_is_refused_without_running(tmp_path, allowed):
    marker = tmp_path / "ran"
    payload = pickle.dumps({"weights": [1.0, _Marker(marker)]}, protocol=4)
    with pytest.raises(UnsafePickleError, match=r"refusing to load 'posix\.mkdir'.*may contain code"):
        restricted_load(io.BytesIO(payload), allowed, "numbers")
    assert not marker.exists()


def test_plain_data_needs_no_allow_list():
    data = {"a": [1, 2.5, "x", (None, True)], "b": b"bytes"}
    assert restricted_load(io.BytesIO(pickle.dumps(data)), {}) == data
    with pytest.raises(UnsafePickleError, match="collections.OrderedDict"):
        restricted_load(io.BytesIO(pickle.dumps(collections.OrderedDict(a=1))), {})
    got = restricted_load(io.BytesIO(pickle.dumps(collections.OrderedDict(a=1))), PLAIN_CONTAINERS)
    assert got == {"a": 1} and isinstance(got, collections.OrderedDict)


def test_numpy_trees_hold_numeric_arrays_only():
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    tree = load_numpy_tree(io.BytesIO(pickle.dumps({"a": {"b": arr, "i": np.arange(3)}}, protocol=4)))
    assert np.array_equal(tree["a"]["b"], arr) and tree["a"]["b"].dtype == np.float32
    with pytest.raises(UnsafePickleError, match="object dtype"):
        load_numpy_tree(io.BytesIO(pickle.dumps({"a": np.array([1, None], dtype=object)})))
    with pytest.raises(UnsafePickleError, match="numeric arrays"):
        load_numpy_tree(io.BytesIO(pickle.dumps({"a": "text"})))
    with pytest.raises(UnsafePickleError, match="not a dict"):
        load_numpy_tree(io.BytesIO(pickle.dumps([arr])))
    masked = np.ma.masked_array([1.0, 2.0], mask=[0, 1])  # an ndarray subclass
    with pytest.raises(UnsafePickleError):
        load_numpy_tree(io.BytesIO(pickle.dumps({"a": masked})))


def test_tensors_and_numpy_scalars_round_trip():
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)[:, 1:]  # a strided view
    p = torch.nn.Parameter(torch.ones(2))
    data = {"t": t, "p": p, "s": np.float32(1.5), "n": np.int64(7)}
    got = restricted_load(io.BytesIO(pickle.dumps(data)), {**torch_tensors(), **NUMPY_SCALARS})
    assert torch.equal(got["t"], t) and isinstance(got["p"], torch.nn.Parameter) and torch.equal(got["p"], p)
    assert got["s"] == np.float32(1.5) and got["s"].dtype == np.float32 and got["n"] == 7


def test_persistent_ids_are_refused():
    class WithPid(pickle.Pickler):
        def persistent_id(self, obj):
            return "storage" if isinstance(obj, str) and obj == "x" else None

    buf = io.BytesIO()
    WithPid(buf).dump(["x"])
    buf.seek(0)
    with pytest.raises(UnsafePickleError, match="persistent id"):
        restricted_load(buf, {})
