"""Datasets: built-in (digits, generated shapes and textures, activity, anomaly and token tasks)
and loaders for a user's own ``.npz``, CSV and image folders. Splits are deterministic by seed.
``sensor_shift`` turns image inputs into what a different sensor would record (drift)."""

from edgeloop.data._catalog import BUILTIN, DatasetInfo, list_datasets, load_dataset
from edgeloop.data._dataset import Dataset, Inputs, content_sha256, split_indices
from edgeloop.data._textures import TEXTURE_CLASSES, sensor_shift

__all__ = [
    "BUILTIN",
    "TEXTURE_CLASSES",
    "Dataset",
    "DatasetInfo",
    "Inputs",
    "content_sha256",
    "list_datasets",
    "load_dataset",
    "sensor_shift",
    "split_indices",
]
