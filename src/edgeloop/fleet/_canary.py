"""Cohorts and canaries: which devices a rollout stage takes. Pure.

A device's place in a rollout is a stable hash of the rollout's salt and the device id, a
number in [0, 1). A stage of ``p`` percent takes the eligible devices (those in the cohort) with
the lowest hashes: when the stage starts, the cut is set at the hash of the ``ceil(p% * N)``-th
device (at least one), and from then on a device is in the stage when its hash is at or below
the cut. So each stage contains the previous ones, a device's membership does not change while
the stage runs, the director answers from one number per check-in, and the devices above the
cut, still on the previous version, are the control group.

A cohort is ``key=value`` terms joined by ``,`` (all must hold): ``arch`` and ``hardware`` (the
device profile's arch and target name), ``isa`` (a flag the CPU has), any other key a device
label (``region=eu``, ``tag=beta``; ``tag`` also matches one entry of a ``tags`` label).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

from edgeloop.artifacts import DeviceProfile
from edgeloop.errors import RolloutError

__all__ = ["cohort_matches", "device_hash", "in_stage", "parse_cohort", "stage_cut"]


def parse_cohort(text: str | Mapping[str, str] | None) -> dict[str, str]:
    """``"arch=arm64,region=eu"`` -> ``{"arch": "arm64", "region": "eu"}``."""
    if text is None:
        return {}
    if isinstance(text, Mapping):
        items = [(str(k), str(v)) for k, v in text.items()]
    else:
        items = []
        for term in (t.strip() for t in text.split(",")):
            if not term:
                continue
            key, sep, value = term.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise RolloutError(f"cohort term {term!r}: expected KEY=VALUE, e.g. arch=arm64")
            items.append((key.strip(), value.strip()))
    return dict(items)


def cohort_matches(
    cohort: Mapping[str, str], profile: DeviceProfile | None, labels: Mapping[str, str]
) -> bool:
    for key, want in cohort.items():
        if key == "arch":
            ok = profile is not None and profile.arch == want
        elif key == "hardware":
            ok = profile is not None and profile.name == want
        elif key == "isa":
            ok = profile is not None and want.lower() in {f.lower() for f in profile.isa}
        elif key == "tag":
            tags = {t.strip() for t in str(labels.get("tags", "")).split(",") if t.strip()}
            ok = labels.get("tag") == want or want in tags
        else:
            ok = str(labels.get(key, "")) == want
        if not ok:
            return False
    return True


def device_hash(salt: str, device_id: str) -> float:
    """A stable number in [0, 1) for this device in this rollout."""
    digest = hashlib.sha256(f"{salt}\0{device_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def stage_cut(hashes: Sequence[float], percent: float) -> float:
    """The cut that takes ``ceil(percent% * N)`` (at least one) of the devices with ``hashes``.

    100 % takes every device, also those that enroll later (cut 1.0).
    """
    if percent >= 100.0:
        return 1.0
    if not hashes:
        return 0.0
    ranked = sorted(hashes)
    k = max(1, math.ceil(percent / 100.0 * len(ranked)))
    return ranked[min(k, len(ranked)) - 1]


def in_stage(salt: str, device_id: str, cut: float) -> bool:
    return device_hash(salt, device_id) <= cut
