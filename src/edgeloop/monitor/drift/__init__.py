"""Server-side monitoring (service layer; numpy and scipy): validate device sketches against
the reference of the version they claim, merge them by device, cohort, version and window with
capped device weights, test for drift, estimate accuracy without labels, compare segments, and
raise or clear alerts with hysteresis. Pure functions: values in, values out."""

from edgeloop.monitor.drift._accuracy import (
    Estimate,
    SegmentGap,
    estimated_accuracy,
    positive_rate,
    realized_accuracy,
    segment_bias,
    wilson,
)
from edgeloop.monitor.drift._alerts import AlertPolicy, AlertState, step_alert
from edgeloop.monitor.drift._merge import (
    DeviceSketch,
    MergedSketch,
    group_sketches,
    merge_sketches,
    validate_sketch,
)
from edgeloop.monitor.drift._report import data_quality, drift_report, report_metrics
from edgeloop.monitor.drift._stats import (
    DriftOptions,
    FeatureTest,
    accuracy_drop_test,
    benjamini_hochberg,
    compare_counts,
    mean_shift_test,
)

__all__ = [
    "AlertPolicy",
    "AlertState",
    "DeviceSketch",
    "DriftOptions",
    "Estimate",
    "FeatureTest",
    "MergedSketch",
    "SegmentGap",
    "accuracy_drop_test",
    "benjamini_hochberg",
    "compare_counts",
    "data_quality",
    "drift_report",
    "estimated_accuracy",
    "group_sketches",
    "mean_shift_test",
    "merge_sketches",
    "positive_rate",
    "realized_accuracy",
    "report_metrics",
    "segment_bias",
    "step_alert",
    "validate_sketch",
    "wilson",
]
