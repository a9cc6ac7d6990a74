"""When to poll next: a jittered interval, doubled after each failure up to a cap.

Pure apart from the random source, which is passed in: a fleet of devices that all start at the
same moment (a power cut, a server restart) spreads out instead of polling in lock-step, and a
server that is down sees fewer and fewer requests instead of a retry storm.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass
class Backoff:
    """``next()`` gives the delay before the next poll; ``failed()``/``succeeded()`` feed it.

    After ``n`` consecutive failures the delay is drawn uniformly from
    ``[d/2, d]`` with ``d = min(cap, base * factor**n)`` ("equal jitter"); with no failure it is
    ``interval * (1 ± jitter)``.
    """

    interval: float = 30.0
    jitter: float = 0.2
    base: float = 1.0
    factor: float = 2.0
    cap: float = 600.0
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.base <= 0 or self.cap <= 0:
            raise ValueError(
                f"interval, base and cap must be > 0, got {self.interval}, {self.base}, {self.cap}"
            )
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")
        if self.factor < 1:
            raise ValueError(f"factor must be >= 1, got {self.factor}")

    def failed(self) -> float:
        self.failures += 1
        return self.next()

    def succeeded(self) -> float:
        self.failures = 0
        return self.next()

    def ceiling(self) -> float:
        """The largest delay the current failure count can give."""
        if self.failures == 0:
            return self.interval * (1 + self.jitter)
        return min(self.cap, self.base * self.factor ** min(self.failures - 1, 64))

    def next(self) -> float:
        if self.failures == 0:
            return self.interval * self.rng.uniform(1 - self.jitter, 1 + self.jitter)
        d = self.ceiling()
        return self.rng.uniform(d / 2, d)
