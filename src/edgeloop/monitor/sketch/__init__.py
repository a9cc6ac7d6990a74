"""On-device monitoring, numpy only: the reference a bundle carries, the window sketch a device
builds per inference and sends with telemetry (histograms, data quality, predictions,
calibrated confidence), and the store for delayed labels."""

from edgeloop.monitor.sketch._feedback import Feedback, FeedbackStore
from edgeloop.monitor.sketch._reference import (
    MAX_BINS,
    MAX_CLASSES,
    MAX_FEATURES,
    REFERENCE_SCHEMA_VERSION,
    Calibration,
    FeatureReference,
    MonitorReference,
    Projection,
    build_reference,
)
from edgeloop.monitor.sketch._window import MAX_SKETCH_BYTES, SKETCH_SCHEMA_VERSION, WindowSketch

__all__ = [
    "MAX_BINS",
    "MAX_CLASSES",
    "MAX_FEATURES",
    "MAX_SKETCH_BYTES",
    "REFERENCE_SCHEMA_VERSION",
    "SKETCH_SCHEMA_VERSION",
    "Calibration",
    "FeatureReference",
    "Feedback",
    "FeedbackStore",
    "MonitorReference",
    "Projection",
    "WindowSketch",
    "build_reference",
]
