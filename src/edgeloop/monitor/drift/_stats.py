"""Two-sample tests of a window against its reference, on binned counts. Pure.

For each monitored feature (and the predicted classes and the confidence histogram):

* effect sizes: PSI and Jensen-Shannon distance on proportions smoothed by half a count per
  bin (so an empty bin is not infinite), Wasserstein on bin centres in units of the
  reference's standard deviation;
* significance: the chi-square test of homogeneity on the 2 x bins table (reference counts are
  a sample too, so this is a two-sample test), after merging adjacent bins until each expects
  at least ``min_expected`` (20) window counts (see :class:`DriftOptions` for why not 5);
  and the two-sample KS on the binned CDFs (conservative when binned) for ordered features
  (reported, not part of the alarm);
* the window's mean in every direction of a projected view (``@mean_shift``), from the summed
  whitened coordinates: Hotelling's two-sample T^2 with the reference's covariance,
  ``T^2 = n_eff |mean|^2`` (``n_eff = n m / (n + m)``, the reference's mean is a sample too),
  whose ``T^2 (m - d) / (d (m - 1))`` follows F(d, m - d) when the view is Gaussian and the
  window's covariance is the reference's (exact, whatever the window size: the reference's
  covariance is an estimate from m rows, which the F accounts for). Its effect is the squared
  Mahalanobis distance of the two means, less its expectation under no shift (``d / n_eff``):
  for Gaussians with one covariance that is the symmetric Kullback-Leibler divergence, the
  quantity PSI estimates per feature, so it is held to the same floor. It sees a shift in a
  direction that the few components watched per feature do not carry;
* realized accuracy (delayed labels) against the reference's: Fisher's exact one-sided test
  on the 2 x 2 table (window right/wrong, reference right/wrong). Exact, so five labels are
  judged as soundly as 5,000, and two-sample, so the reference's own accuracy (a sample of
  a few thousand rows) is not taken for the truth: a large labelled window tested against
  it as if exact alarms on the reference's sampling error;
* p-values adjusted across ALL tested items, the accuracy test included, with
  Benjamini-Hochberg: the report alarms when any item drifts, and when nothing drifted BH's
  false-discovery rate is the chance of any alarm, so ``alpha`` bounds the report's false
  alarms as a whole (one correction over every test the alarm ORs, not one per family).

An item drifts only when BOTH its adjusted p is below ``alpha`` AND its effect is above the
floor (PSI for distributions, the accuracy drop for realized accuracy): a large window makes
tiny, harmless differences significant and a small one makes large PSI values out of noise;
requiring both keeps either from alarming alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special, stats
from scipy.spatial.distance import jensenshannon

__all__ = [
    "DriftOptions",
    "FeatureTest",
    "accuracy_drop_test",
    "benjamini_hochberg",
    "compare_counts",
    "mean_shift_test",
]

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class DriftOptions:
    # false discovery rate across the items of one report; with nothing drifted it is the
    # chance that the report alarms at all, so it sits under the 1 % false-alarm goal with a
    # margin: BH at exactly 0.01 alarms on ~1 % of healthy windows by construction (measured
    # 1.1-1.4 % on 1,000 har windows of 50-100 rows), and a goal met only on average is
    # missed by every other run
    alpha: float = 0.005
    psi_floor: float = 0.1  # the smallest drift worth an alarm ("moderate" by the usual scale)
    # window counts expected per merged chi-square bin. BH over ~10 items tests each near
    # alpha / 10 = 0.001, far in the tail, where Pearson's chi-square with the textbook 5
    # expected counts is anti-conservative: 1.1-1.6 % of unshifted 50- and 100-row har windows
    # alarmed (800 each), 0.4-0.5 % with 20. It costs power only below ~200 rows (bins expect
    # 100 at 1,000 rows, so nothing merges there).
    min_expected: float = 20.0
    min_n: float = 20.0  # fewer effective rows: no distribution test, no alarm
    accuracy_floor: float = 0.01  # the smallest drop of realized accuracy worth an alarm
    # the smallest mean shift worth an alarm, as squared Mahalanobis distance (the symmetric
    # KL divergence of two Gaussians with one covariance; the PSI floor's scale): 0.1 is a
    # shift of 0.32 reference sd along the direction it takes
    shift_floor: float = 0.1


@dataclass(frozen=True)
class FeatureTest:
    n: float
    psi: float
    js: float
    wasserstein: float
    chi2: float
    p: float
    ks: float | None
    ks_p: float | None

    def as_dict(self) -> dict[str, float]:
        out = {k: float(v) for k, v in self.__dict__.items() if v is not None}
        return out


def _smoothed(c: F64) -> F64:
    return (c + 0.5) / (c.sum() + 0.5 * len(c))  # type: ignore[no-any-return]


def _merge_bins(ref: F64, win: F64, min_expected: float) -> tuple[F64, F64]:
    """Adjacent bins merged until each expects ``min_expected`` window counts."""
    expected = win.sum() * ref / ref.sum()
    groups: list[list[int]] = [[]]
    acc = 0.0
    for j, e in enumerate(expected):
        groups[-1].append(j)
        acc += e
        if acc >= min_expected:
            groups.append([])
            acc = 0.0
    if not groups[-1]:
        groups.pop()
    elif len(groups) > 1 and acc < min_expected:
        groups[-2].extend(groups.pop())
    return (np.array([ref[g].sum() for g in groups]), np.array([win[g].sum() for g in groups]))


def compare_counts(
    ref_counts: npt.ArrayLike,
    window_counts: npt.ArrayLike,
    *,
    centers: F64 | None = None,
    ordered: bool = True,
    options: DriftOptions = DriftOptions(),
) -> FeatureTest:
    """Test ``window_counts`` against ``ref_counts`` over the same bins."""
    ref = np.asarray(ref_counts, dtype=np.float64)
    win = np.asarray(window_counts, dtype=np.float64)
    n, m = float(win.sum()), float(ref.sum())
    if n <= 0 or m <= 0 or len(ref) < 2:
        return FeatureTest(n, 0.0, 0.0, 0.0, 0.0, 1.0, None, None)
    p, q = _smoothed(ref), _smoothed(win)
    psi = float(np.sum((q - p) * np.log(q / p)))
    js = float(jensenshannon(p, q, base=2))
    wd = 0.0
    if centers is not None:
        wd = float(stats.wasserstein_distance(centers, centers, ref / m, win / n))
    r_g, w_g = _merge_bins(ref, win, options.min_expected)
    chi2, pval = 0.0, 1.0
    keep = (r_g + w_g) > 0
    if keep.sum() >= 2:
        chi2, pval = _homogeneity(r_g[keep], w_g[keep])
    ks = ks_p = None
    if ordered:
        d = float(np.max(np.abs(np.cumsum(ref) / m - np.cumsum(win) / n)))
        n_eff = n * m / (n + m)
        # the Kolmogorov distribution's survival function (scipy.stats.kstwobign.sf), direct
        ks, ks_p = d, float(special.kolmogorov(math.sqrt(n_eff) * d)) if d > 0 else 1.0
    return FeatureTest(n, psi, js, wd, chi2, pval if math.isfinite(pval) else 1.0, ks, ks_p)


def mean_shift_test(
    white_sum: npt.ArrayLike, white_n: float, ref_n: float
) -> dict[str, float]:
    """Hotelling's T^2 of a window's whitened mean (``white_sum / white_n``, d directions,
    unit covariance on the reference) against the reference's (0, from ``ref_n`` rows):
    ``{"n", "components", "t2", "p", "mahalanobis", "kl"}`` (``kl``: the squared distance
    less its null expectation, at least 0; ``mahalanobis``: its square root)."""
    total = np.asarray(white_sum, dtype=np.float64)
    d, n, m = len(total), float(white_n), float(ref_n)
    if d == 0 or n <= 0 or m <= d + 1:
        return {"n": n, "components": float(d), "t2": 0.0, "p": 1.0, "mahalanobis": 0.0,
                "kl": 0.0}
    mean = total / n
    sq = float(mean @ mean)
    n_eff = n * m / (n + m)
    t2 = n_eff * sq
    f = t2 * (m - d) / (d * (m - 1))
    p = float(special.fdtrc(d, m - d, f))  # the F(d, m - d) survival function
    kl = max(0.0, sq - d / n_eff)
    return {"n": n, "components": float(d), "t2": t2, "p": p if math.isfinite(p) else 1.0,
            "mahalanobis": math.sqrt(kl), "kl": kl}


def _homogeneity(ref: F64, win: F64) -> tuple[float, float]:
    """Pearson's chi-square test of homogeneity of the 2 x k table (ref, win), no continuity
    correction: what ``scipy.stats.chi2_contingency(table, correction=False)`` computes (the
    same statistic and p to rounding, tested), without its generic machinery, which took more
    than half of a drift report's time (the benchmark judges ~17,000 windows per task)."""
    cols = ref + win
    rows = np.array([ref.sum(), win.sum()])
    expected = rows[:, None] * cols[None, :] / rows.sum()
    observed = np.vstack([ref, win])
    stat = float(np.sum((observed - expected) ** 2 / expected))
    return stat, float(special.chdtrc(len(cols) - 1, stat))


def accuracy_drop_test(
    ref_correct: float, ref_n: float, win_correct: float, win_n: float
) -> tuple[float, float]:
    """(drop, p): the window's realized accuracy below the reference's and the one-sided
    Fisher exact p-value of "the window is less accurate". Counts are rounded (capped merges
    weigh devices, so they can be fractional); no labels gives (0, 1)."""
    rc, rn = round(ref_correct), round(ref_n)
    wc, wn = round(win_correct), round(win_n)
    rc, wc = min(max(rc, 0), rn), min(max(wc, 0), wn)
    if rn <= 0 or wn <= 0:
        return 0.0, 1.0
    drop = rc / rn - wc / wn
    res = stats.fisher_exact([[wc, wn - wc], [rc, rn - rc]], alternative="less")
    p = float(res.pvalue)
    return drop, min(p, 1.0) if math.isfinite(p) else 1.0


def benjamini_hochberg(pvalues: list[float]) -> list[float]:
    """BH-adjusted p-values (step-up, monotone), in the input's order."""
    if not pvalues:
        return []
    p = np.asarray(pvalues, dtype=np.float64)
    order = np.argsort(p)
    k = len(p)
    adj = p[order] * k / np.arange(1, k + 1)
    adj = np.minimum.accumulate(adj[::-1])[::-1]
    out = np.empty(k)
    out[order] = np.minimum(adj, 1.0)
    return out.tolist()  # type: ignore[no-any-return]
