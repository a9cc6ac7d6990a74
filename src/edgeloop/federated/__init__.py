"""Federated learning on Flower: improve a deployed model from the fleet's delayed labels
without the data leaving the devices, and bring the result back as a registry version.

Two halves in two layers (docs/design.md):

- :mod:`edgeloop.federated.device` (device layer, no torch): the numpy head trainer over the
  deployed ONNX model's penultimate features, update compression, and the Flower ClientApp.
- :mod:`edgeloop.federated.server` (build layer): the ServerApp and its strategies, the
  in-process simulation, federated evaluation, and the candidate model with its lineage.

This package itself imports nothing; use the two halves.
"""
