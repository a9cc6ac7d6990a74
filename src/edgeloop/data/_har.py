"""Generated human activity recognition: 3-axis accelerometer windows from simulated subjects.

Each window is 128 samples at 50 Hz (2.56 s) of acceleration in g, in the sensor's frame. The
body-frame signal of an activity is built from its physics: gravity, and for the gait
activities a periodic vertical bounce at the step frequency with harmonics (sharper heel
strikes when running or going downstairs), a forward sway and a lateral sway at half the step
frequency. Subjects differ in cadence, amplitude, and how the sensor sits on the body (a fixed
rotation of the gravity vector); windows add their own jitter, sensor noise and a slow drift.
Splits are by subject, so the test set holds people the model has never seen.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeloop.errors import DataError

__all__ = ["HAR_CLASSES", "HAR_RATE_HZ", "har_arrays"]

HAR_CLASSES = ("walking", "running", "upstairs", "downstairs", "sitting", "standing", "lying")
HAR_RATE_HZ = 50.0

# gait: step frequency (Hz), vertical amplitude (g), harmonic weight, harmonic phase, forward tilt
_GAIT = {
    "walking": (1.9, 0.35, 0.35, 0.0, 0.05),
    "running": (2.8, 1.10, 0.60, 0.0, 0.15),
    "upstairs": (1.5, 0.30, 0.25, 1.2, 0.20),
    "downstairs": (2.0, 0.55, 0.70, -1.2, -0.10),
}
# posture: gravity direction in the body frame (x forward, y left, z up)
_POSTURE = {
    "sitting": (0.55, 0.0, 0.83),
    "standing": (0.0, 0.0, 1.0),
    "lying": (0.0, 0.95, 0.30),
}


def _rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    """A random rotation matrix of at most ``max_deg`` degrees about a random axis."""
    axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(0.0, max_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    out: np.ndarray = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)
    return out


def _window(
    activity: str, subject: dict[str, Any], rng: np.random.Generator, steps: int
) -> np.ndarray:
    t = np.arange(steps) / HAR_RATE_HZ
    body = np.zeros((3, steps))
    if activity in _GAIT:
        f0, amp, harm, hphase, tilt = _GAIT[activity]
        f = f0 * subject["cadence"] * rng.uniform(0.93, 1.07)
        a = amp * subject["amplitude"] * rng.uniform(0.85, 1.15)
        ph = rng.uniform(0, 2 * np.pi)
        w = 2 * np.pi * f * t + ph
        vertical = a * (np.sin(w) + harm * np.sin(2 * w + hphase))
        if activity in ("running", "downstairs"):  # impacts: a sharp peak once per step
            vertical += a * 0.6 * (np.maximum(np.sin(w - 0.4), 0.0) ** 6)
        body[2] = 1.0 + vertical
        body[0] = tilt + 0.35 * a * np.sin(w / 2 + rng.uniform(0, np.pi)) + 0.2 * a * np.sin(w)
        body[1] = 0.25 * a * np.sin(w / 2 + subject["lateral_phase"])
    else:
        g = np.asarray(_POSTURE[activity]) + rng.normal(0.0, 0.06, 3)
        g /= np.linalg.norm(g)
        body += g[:, None]
        # small movements: breathing, fidgeting
        body += 0.01 * np.sin(2 * np.pi * rng.uniform(0.2, 0.4) * t + rng.uniform(0, 6.3))
        if rng.random() < 0.3:
            at = int(rng.integers(0, steps - 10))
            body[:, at : at + 10] += rng.normal(0.0, 0.08, (3, 1))
    sensor = subject["orientation"] @ _rotation(rng, 8.0) @ body
    drift = np.cumsum(rng.normal(0.0, 0.002, (3, steps)), axis=1)
    noise = rng.normal(0.0, subject["noise"], (3, steps))
    out: np.ndarray = sensor + drift + noise
    return out


def har_arrays(
    seed: int = 0, subjects: int = 30, windows: int = 12, steps: int = 128
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """``windows`` windows per activity for each of ``subjects`` simulated people.

    Returns ``(x (N, 3, steps) float32, y, subject id per window, classes)``.
    """
    # subjects: one person at least per split; steps: a still window may carry a 10-sample
    # fidget burst, so a window holds more than that
    limits = (("subjects", subjects, 3), ("windows", windows, 1), ("steps", steps, 11))
    for key, value, least in limits:
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise DataError(f"har {key}={value!r}: expected an integer of at least {least}")
    rng = np.random.default_rng([seed, 0x4A2])
    xs, ys, subj = [], [], []
    for s in range(subjects):
        person: dict[str, Any] = {
            "cadence": rng.uniform(0.85, 1.15),
            "amplitude": rng.uniform(0.75, 1.3),
            "lateral_phase": rng.uniform(0, 2 * np.pi),
            "noise": rng.uniform(0.01, 0.04),
        }
        orientation = _rotation(rng, 25.0)
        for c, activity in enumerate(HAR_CLASSES):
            for _ in range(windows):
                xs.append(_window(activity, {**person, "orientation": orientation}, rng, steps))
                ys.append(c)
                subj.append(s)
    x = np.stack(xs).astype(np.float32)
    return x, np.asarray(ys, dtype=np.int64), np.asarray(subj, dtype=np.int64), HAR_CLASSES
