"""Datasets and minibatches for pcc (numpy only: importing this package imports no jax).

``load_dataset(spec.data, spec.seed)`` gives a :class:`Dataset`; ``peek_shapes(spec.data)`` gives its
(input_dim, output_dim) cheaply; :func:`batches` iterates an epoch deterministically from (seed, epoch).
"""

from pcc.data.batching import batches, batches_from, epoch_order, num_batches, prefetch
from pcc.data.datasets import FASHION_MNIST_DIR, SOURCES, load_dataset, mnist_5k_file, peek_shapes, register
from pcc.data.prepare import Dataset, Raw

__all__ = [
    "FASHION_MNIST_DIR",
    "SOURCES",
    "Dataset",
    "Raw",
    "batches",
    "batches_from",
    "epoch_order",
    "load_dataset",
    "mnist_5k_file",
    "num_batches",
    "peek_shapes",
    "prefetch",
    "register",
]
