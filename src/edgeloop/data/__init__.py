"""Datasets: built-in (digits, generated shapes, activity, anomaly and token tasks) and loaders
for a user's own ``.npz``, CSV and image folders. Splits are deterministic by seed."""

from edgeloop.data._dataset import Dataset, content_sha256, split_indices
from edgeloop.data._registry import BUILTIN, DatasetInfo, list_datasets, load_dataset

__all__ = [
    "BUILTIN",
    "Dataset",
    "DatasetInfo",
    "content_sha256",
    "list_datasets",
    "load_dataset",
    "split_indices",
]
