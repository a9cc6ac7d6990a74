"""Monitoring: is a model still good in the field?

Two subpackages in two layers, so this package imports neither:

* :mod:`edgeloop.monitor.sketch` (device layer, numpy only): the monitoring reference a bundle
  carries, the per-window sketch a device builds per inference and sends with telemetry, data
  quality counters, and the store for delayed labels;
* :mod:`edgeloop.monitor.drift` (service layer, numpy and scipy): validation of incoming
  sketches, merging by device, cohort, version and window with capped device weights, drift
  tests against the reference, estimated and realized accuracy, bias per segment, and alerts.
"""
