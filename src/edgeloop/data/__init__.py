"""Datasets: built-in (digits, generated shapes, activity, anomaly and token tasks) and loaders
for a user's own ``.npz``, CSV and image folders. Splits are deterministic by seed."""

from edgeloop.data._catalog import BUILTIN, DatasetInfo, list_datasets, load_dataset
from edgeloop.data._dataset import Dataset, Inputs, content_sha256, split_indices

__all__ = [
    "BUILTIN",
    "Dataset",
    "DatasetInfo",
    "Inputs",
    "content_sha256",
    "list_datasets",
    "load_dataset",
    "split_indices",
]
