"""Tiny datasets and models for the zoo tests, so each runs in about a second."""

from __future__ import annotations

from typing import Any

import pytest

# arch -> (builder kwargs for a tiny model, dataset name, dataset options)
TINY: dict[str, tuple[dict[str, Any], str, dict[str, Any]]] = {
    "cnn": ({"width": 8}, "digits", {}),
    "mobilenet": ({"width": 0.25, "input_size": 32}, "shapes", {"n": 200}),
    "mbconv": (
        {"width": 0.25, "depth": 1, "kernel": 5, "expansion": 2, "resolution": 24},
        "shapes",
        {"n": 200},
    ),
    "cnn1d": ({"width": 8}, "har", {"subjects": 10, "windows": 1}),
    "transformer": ({"dim": 16, "heads": 2, "layers": 1, "ff": 32}, "tokens", {"n": 160}),
    "autoencoder": ({"hidden": 16, "latent": 4}, "anomaly", {"n": 300}),
}


@pytest.fixture(params=sorted(TINY))
def tiny(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any], str, dict[str, Any]]:
    """(arch, builder kwargs, dataset, dataset options) for each architecture."""
    kwargs, dataset, options = TINY[request.param]
    return request.param, kwargs, dataset, options
