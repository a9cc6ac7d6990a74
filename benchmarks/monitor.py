"""Monitoring benchmark: drift detection from kilobyte sketches, side by side with Evidently.

Two zoo tasks, each a zoo model trained here (``edgeloop.zoo.train``):

* ``har`` (time series, ``cnn1d``): accelerometer windows (3, 128). The device watches a PCA
  view of the input (384 values are too wide to watch per value); Evidently gets the raw 384
  values as columns;
* ``shapes`` (images (3, 32, 32), ``cnn``): the device watches a PCA view of the model's
  penultimate activations (the embedding view); Evidently gets the raw embedding as columns.

The model trains on the task's training split. Monitoring data are generated afresh (another
generator seed) and split at random into the reference (``--reference-rows``, with the model's
calibration) and the pool (``--pool-rows``) windows are drawn from with replacement, so an
unshifted window comes from the reference's distribution; sizes above a tenth of the pool
resample it (the JSON lists the sizes within).
Generated shifts of increasing size on the pool:

* ``covariate``: channel 0 of the input moves by ``s`` standard deviations (a sensor offset,
  a brightness change); the model's outputs are recomputed;
* ``label``: windows drawn with class priors ``(1 - s) * prior + s * onehot(class 0)``;
* ``concept``: a share ``s`` of class-0 labels become class 1 (inputs unchanged: only delayed
  labels can tell; 10 % of predictions get a label, as ``--labelled`` says).

Each window is what a device would send: every pool row is sketched once by the real
``WindowSketch.update`` and a window's sketch is the sum of its rows' contributions (sketches
add), parsed by the server's ``validate_sketch`` and judged by ``drift_report`` (its alarm:
drift of a watched component, of the view's mean in any of its whitened directions
(``@mean_shift``, ``--whiten``), of the predictions or confidences, or realized accuracy below
the reference's: one corrected family). Evidently's default
``DataDriftPreset`` runs in its own environment (``--evidently-python``; evidently 0.7.x needs
``pandas<3``) on the same windows as raw data, on a reduced grid because it is slow (seconds
per window for har's 384 columns): window sizes ``--evidently-sizes`` (100, 1,000), 20
unshifted and 10 shifted windows per size, the two largest shifts of each kind, in
``--evidently-procs`` processes, its widgets not drawn (``--evidently-render`` draws them:
about 5x slower, the same verdicts); the JSON records the grid under ``tasks.*.evidently``.

Reports: false-alarm rate per window size over ``--windows`` unshifted windows; detection rate
and delay (windows until an alert with hysteresis) per shift; estimated (CBPE) vs realized
accuracy error under covariate shift; bytes per device report; device CPU and memory
(tracemalloc: peak per inference and what stays allocated) per inference for sketching and
for the agent's whole monitoring path; server time to validate, merge and test 10,000 reports.

    BENCH_LOAD_BEFORE="$(cat /proc/loadavg)" python benchmarks/monitor.py   # a quiet machine
    python benchmarks/monitor.py --smoke                  # minutes: tiny sizes, few windows
    python benchmarks/monitor.py --table benchmarks/results/monitor.json   # docs' tables

Writes ``benchmarks/results/monitor.json`` (``--out``; JSON keys ``false_alarm_rate``,
``report_bytes``, ``merge_10k_s``, ``est_accuracy_mae``, ``detection_rate`` per kind, task,
shift and size for edgeloop and Evidently) and prints the markdown tables of docs/monitor.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.monitor.drift import (
    AlertPolicy,
    AlertState,
    DeviceSketch,
    drift_report,
    merge_sketches,
    step_alert,
    validate_sketch,
)
from edgeloop.monitor.sketch import MonitorReference, WindowSketch, build_reference

RESULTS = Path(__file__).parent / "results" / "monitor.json"
RUNNER = Path(__file__).with_name("_evidently_runner.py")
EVIDENTLY_PY = Path("/work/venvs/evidently/bin/python")
SHIFTS = {
    "covariate": (0.1, 0.25, 0.5, 1.0),
    "label": (0.1, 0.2, 0.4, 0.6),
    "concept": (0.1, 0.2, 0.4, 0.6),
}
# task -> (zoo architecture, monitored view, what Evidently gets)
TASKS = {"har": ("cnn1d", "input", "raw input"), "shapes": ("cnn", "embedding", "embedding")}


# --- the model side (torch, at benchmark time only) ---------------------------------------
def model_outputs(model: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits and penultimate activations (the input of the last Linear layer)."""
    import torch
    from torch import nn

    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    seen: list[np.ndarray] = []
    hook = last.register_forward_pre_hook(lambda _m, a: seen.append(a[0].detach().numpy()))
    model.eval()
    logits = []
    try:
        with torch.no_grad():
            for i in range(0, len(x), 256):
                logits.append(model(torch.from_numpy(np.ascontiguousarray(x[i : i + 256]))).numpy())
    finally:
        hook.remove()
    return np.concatenate(logits).astype(np.float64), np.concatenate(seen).astype(np.float64)


@dataclass
class Task:
    name: str
    view: str  # "input" or "embedding"
    model: Any
    ref_x: np.ndarray
    ref_y: np.ndarray
    pool_x: np.ndarray
    pool_y: np.ndarray
    accuracy: float


def load_task(name: str, args: argparse.Namespace) -> Task:
    """Train the task's zoo model on its training split, then generate fresh monitoring data
    (another generator seed, ``--reference-rows`` + ``--pool-rows`` rows) split at random into
    the reference and the pool windows are drawn from."""
    from edgeloop.data import load_dataset
    from edgeloop.zoo import train

    arch, view, _ = TASKS[name]
    result = train(arch, name, args.epochs, seed=args.seed, threads=1)
    rows = args.reference_rows + args.pool_rows
    opts = {"windows": -(-rows // (30 * 7)), "subjects": 30} if name == "har" else {"n": rows}
    data = load_dataset(name, "all", seed=args.seed + 1, **opts)
    x, y = np.asarray(data.x, dtype=np.float32), np.asarray(data.y)
    order = np.random.default_rng(args.seed).permutation(len(y))
    r, p = order[: args.reference_rows], order[args.reference_rows : rows]
    return Task(name, view, result.model, x[r], y[r], x[p], y[p],
                float(result.metrics.get("accuracy", float("nan"))))


def view_of(task: Task, x: np.ndarray, emb: np.ndarray) -> np.ndarray:
    return (x.reshape(len(x), -1) if task.view == "input" else emb).astype(np.float64)


# --- per-row sketch contributions ---------------------------------------------------------
_ROW_FIELDS = ("hist", "finite", "nan", "inf", "below", "above", "sum_z", "sum_z2", "pred",
               "conf_hist")


def _state(s: WindowSketch) -> np.ndarray:
    parts = [s.hist.ravel(), *(s.counts[k] for k in ("finite", "nan", "inf", "below", "above")),
             s.sum_z, s.sum_z2, s.pred, s.conf_hist, s.white_sum,
             np.array([s.n, s.bad_rows, s.n_outputs, s.bad_outputs, s.exp_correct,
                       s.exp_correct_sq, s.white_n])]
    return np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])


@dataclass
class Rows:
    """Each pool row's contribution to a sketch (the real ``update``, one row at a time)."""

    sketch: WindowSketch
    contrib: np.ndarray  # (rows, fields)
    values: np.ndarray  # monitored values per row (for vmin/vmax)
    pred: np.ndarray
    p_correct: np.ndarray
    raw: np.ndarray  # what Evidently gets


def sketch_rows(ref: MonitorReference, view: np.ndarray, logits: np.ndarray,
                raw: np.ndarray) -> Rows:
    s = WindowSketch(ref)
    before = _state(s)
    rows, p = [], []
    for i in range(len(view)):
        pc = s.update(view[i : i + 1], logits[i : i + 1])
        after = _state(s)
        rows.append(after - before)
        before = after
        p.append(float(pc[0]) if pc is not None else np.nan)
    values = ref.projection.apply(view) if ref.projection is not None else view
    return Rows(WindowSketch(ref), np.array(rows), values, logits.argmax(1), np.array(p), raw)


def window_sketch(rows: Rows, counts: np.ndarray, labels: np.ndarray, labelled: np.ndarray
                  ) -> bytes:
    """The JSON a device would send for a window holding pool rows ``counts`` times, of which
    ``labelled`` got a delayed label."""
    tmpl = rows.sketch
    used = np.flatnonzero(counts)
    # a window of 1,000 rows touches at most 1,000 of the pool's rows: add only those (the
    # pool-wide product cost more than the rest of a small window's sketch)
    total = (counts[used] @ rows.contrib[used] if len(used) < len(counts) // 4
             else counts @ rows.contrib)
    f = len(tmpl.reference.features)
    width = tmpl.hist.shape[1]
    i = 0

    def take(k: int) -> np.ndarray:
        nonlocal i
        out = total[i : i + k]
        i += k
        return out

    hist = take(f * width).reshape(f, width)
    cnt = {k: take(f) for k in ("finite", "nan", "inf", "below", "above")}
    sum_z, sum_z2 = take(f), take(f)
    pred, conf = take(len(tmpl.pred)), take(len(tmpl.conf_hist))
    white_sum = take(len(tmpl.white_sum))
    n, bad_rows, n_out, bad_out, exp_c, exp_sq, white_n = take(7)
    correct = rows.pred == labels
    fb_p = np.nan_to_num(rows.p_correct)
    d = tmpl.to_dict()
    d.update(
        n=int(round(n)), bad_rows=int(round(bad_rows)), n_outputs=int(round(n_out)),
        bad_outputs=int(round(bad_out)),
        hist=[np.rint(h[: len(ft.edges) + 1]).astype(int).tolist()
              for h, ft in zip(hist, tmpl.reference.features, strict=True)],
        **{k: np.rint(v).astype(int).tolist() for k, v in cnt.items()},
        repeats=[0] * f, sum_z=sum_z.tolist(), sum_z2=sum_z2.tolist(),
        vmin=rows.values[used].min(axis=0).tolist(), vmax=rows.values[used].max(axis=0).tolist(),
        pred=np.rint(pred).astype(int).tolist(), conf_hist=np.rint(conf).astype(int).tolist(),
        exp_correct=float(min(exp_c, n_out)), exp_correct_sq=float(min(exp_sq, exp_c)),
        fb_n=int(labelled.sum()), fb_correct=int(labelled @ correct),
        fb_expected=float(labelled @ fb_p),
        fb_labels=np.bincount(labels, weights=labelled, minlength=len(tmpl.pred)).astype(int)
        .tolist(),
    )
    if "white_sum" in d:  # a whitened view: the window's summed whitened coordinates
        d.update(white_n=int(round(white_n)), white_sum=white_sum.tolist())
    return json.dumps(d).encode()


# --- windows --------------------------------------------------------------------------------
def draw(rng: np.random.Generator, weights: np.ndarray, n: int, labelled_share: float
         ) -> tuple[np.ndarray, np.ndarray]:
    counts = rng.multinomial(n, weights / weights.sum())
    return counts, rng.binomial(counts, labelled_share)


_JUDGE_REF: MonitorReference | None = None  # the reference the judging processes inherit


def _judge_inherited(wire: bytes) -> tuple[bool, dict[str, Any]]:
    assert _JUDGE_REF is not None
    return judge(_JUDGE_REF, wire)


class Judges:
    """Judge windows in ``procs`` forked processes (the verdicts are independent; the windows
    are drawn in the parent, in order, so the random stream and the windows do not depend on
    ``procs``)."""

    def __init__(self, ref: MonitorReference, procs: int) -> None:
        global _JUDGE_REF
        self.ref = ref
        self.pool = None
        if procs > 1:
            _JUDGE_REF = ref
            self.pool = multiprocessing.get_context("fork").Pool(procs)

    def __call__(self, wires: list[bytes]) -> list[tuple[bool, dict[str, Any]]]:
        if self.pool is None:
            return [judge(self.ref, w) for w in wires]
        return self.pool.map(_judge_inherited, wires, chunksize=max(1, len(wires) // 64))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool.join()


def judge(ref: MonitorReference, wire: bytes) -> tuple[bool, dict[str, Any]]:
    """The server's verdict on one device window: the report's alarm (drift of a feature, of
    the predictions or confidences, or realized accuracy below the reference's: one family,
    corrected together)."""
    sketch = validate_sketch(wire, ref)
    report = drift_report("bench", 1, [DeviceSketch("dev", 1, sketch)])
    return report.alarm, report.accuracy.get("estimated", {})


def shifted_pool(task: Task, kind: str, s: float, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs, labels and row weights of the pool under a shift of ``kind`` and size ``s``."""
    x, y = task.pool_x.copy(), task.pool_y.copy()
    w = np.ones(len(y))
    if kind == "covariate":
        x[:, 0] += s * x[:, 0].std()
    elif kind == "label":
        prior = np.bincount(task.ref_y, minlength=int(y.max()) + 1) / len(task.ref_y)
        target = (1 - s) * prior + s * np.eye(len(prior))[0]
        w = target[y] / np.maximum(prior[y], 1e-12)
    elif kind == "concept":
        flip = (y == 0) & (rng.random(len(y)) < s)
        y[flip] = 1
    return x, y, w


@dataclass
class Windows:
    """Windows of one condition: the device's bytes, the raw rows for Evidently, truth."""

    alarms: list[bool]
    est: list[float]
    truth: list[float]
    evidently_raw: list[np.ndarray]


def run_condition(judges: Judges, rows: Rows, labels: np.ndarray,
                  weights: np.ndarray, size: int, windows: int, ev_windows: int,
                  args: argparse.Namespace, rng: np.random.Generator) -> Windows:
    out = Windows([], [], [], [])
    correct = rows.pred == labels
    wires = []
    for k in range(windows):
        counts, labelled = draw(rng, weights, size, args.labelled)
        wires.append(window_sketch(rows, counts, labels, labelled))
        out.truth.append(float(counts @ correct / size))
        if k < ev_windows and size in args.evidently_sizes:
            out.evidently_raw.append(np.repeat(rows.raw, counts, axis=0).astype(np.float32))
    for alarm, est in judges(wires):
        out.alarms.append(alarm)
        out.est.append(est.get("value", np.nan))
    return out


def windows_sha256(reference: np.ndarray, wins: list[np.ndarray]) -> str:
    """What Evidently is given for one condition: the reference and every window, as float32
    bytes with their shapes (equal digests: the same inputs, so the same verdicts)."""
    h = hashlib.sha256()
    for a in (reference, *wins):
        b = np.ascontiguousarray(np.asarray(a, dtype=np.float32).reshape(len(a), -1))
        h.update(repr(b.shape).encode())
        h.update(b.tobytes())
    return h.hexdigest()


# config entries that decide the windows Evidently sees (rows, sizes, counts, seed, model)
WINDOW_CONFIG = ("tasks", "reference_rows", "pool_rows", "sizes", "windows", "shift_windows",
                 "labelled", "epochs", "components", "evidently_sizes", "evidently_windows",
                 "evidently_shift_windows", "evidently_shifts", "seed")


def load_evidently_from(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """An earlier run's results whose Evidently verdicts this run may reuse. Runs that
    recorded ``evidently_window_sha256`` are checked window by window later; older ones only
    by their window config here (and their models' accuracies, per task, later)."""
    try:
        prior = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(
            f"--evidently-from {path}: expected a monitor.json results file ({e})") from None
    if not isinstance(prior, dict) or not isinstance(prior.get("tasks"), dict):
        raise SystemExit(f"--evidently-from {path}: expected a monitor.json results file")
    cfg = prior.get("config", {})
    mine = vars(args)
    diff = [k for k in WINDOW_CONFIG if cfg.get(k) != mine.get(k)]
    if diff:
        k = diff[0]
        raise SystemExit(f"--evidently-from {path}: windows differ ({k} was {cfg.get(k)!r}, "
                         f"this run {mine.get(k)!r})")
    return prior


def reuse_evidently(prior: dict[str, Any], path: Path, name: str, out: dict[str, Any],
                    digests: dict[str, str]) -> None:
    """Copy task ``name``'s Evidently verdicts from ``prior`` into ``out`` after checking that
    Evidently would see the same data: every condition's window digest equal, or, for a run
    older than the digests, the same trained model (its two accuracies, to the last bit)."""
    old = prior["tasks"].get(name)
    if not isinstance(old, dict) or "evidently" not in old:
        raise SystemExit(f"--evidently-from {path}: task {name!r} has no Evidently results")
    if "evidently_window_sha256" in old:
        bad = [k for k, v in digests.items() if old["evidently_window_sha256"].get(k) != v]
        if bad or set(old["evidently_window_sha256"]) != set(digests):
            raise SystemExit(f"--evidently-from {path}: task {name!r}: windows differ "
                             f"({(bad or ['the set of conditions'])[0]})")
        check = "sha256"
    else:
        if old.get("model") != out["model"]:
            raise SystemExit(f"--evidently-from {path}: task {name!r}: another model was "
                             f"trained ({old.get('model')} there, {out['model']} here)")
        check = "config+model"
    out["evidently"] = {**old["evidently"], "reused_from": str(path), "reuse_check": check}
    for det in ("evidently", "evidently_dataset_drift"):
        if det in old["false_alarm_rate"]:
            out["false_alarm_rate"][det] = old["false_alarm_rate"][det]
    for kind, per_shift in old["shifts"].items():
        for shift, per_size in per_shift.items():
            for size, r in per_size.items():
                ev = {k: v for k, v in r["detection_rate"].items() if k.startswith("evidently")}
                out["shifts"][kind][shift][size]["detection_rate"].update(ev)


def delay(alarms: list[bool], chunk: int = 10) -> float | None:
    """Median windows until an alert (raise after 2 bad windows) over sequences of ``chunk``."""
    delays = []
    for start in range(0, len(alarms) - chunk + 1, chunk):
        state = AlertState()
        for i, bad in enumerate(alarms[start : start + chunk]):
            state, ev = step_alert(state, bad, AlertPolicy())
            if ev == "raised":
                delays.append(i + 1)
                break
    return float(np.median(delays)) if delays else None


# --- Evidently in its own environment --------------------------------------------------------
def run_evidently(python: Path, reference: np.ndarray, batches: dict[str, list[np.ndarray]],
                  tmp: Path, procs: int = 1, render: bool = False
                  ) -> dict[str, list[dict[str, Any]]]:
    if not python.exists():
        print(f"evidently: {python} not found, skipped (see the docstring for the venv)")
        return {}
    ref_path = tmp / "reference.npz"
    np.savez(ref_path, reference=reference.reshape(len(reference), -1),
             columns=np.array([f"c{i}" for i in range(reference.reshape(len(reference),
                                                                        -1).shape[1])]))
    jobs = []
    for key, wins in batches.items():
        if wins:
            src = tmp / f"{key}.npz"
            np.savez(src, windows=np.stack([w.reshape(len(w), -1) for w in wins]))
            jobs.append({"reference": str(ref_path), "windows": str(src),
                         "out": str(tmp / f"{key}.json")})
    (tmp / "jobs.json").write_text(json.dumps(jobs))
    cmd = [str(python), str(RUNNER), str(tmp / "jobs.json"), "--procs", str(procs)]
    subprocess.run(cmd + (["--render"] if render else []), check=True)
    return {Path(j["out"]).stem: json.loads(Path(j["out"]).read_text()) for j in jobs}


# --- the benchmark ------------------------------------------------------------------------------
def evidently_shifts(sizes: tuple[float, ...], which: str) -> list[float]:
    """The shift sizes of a kind Evidently runs on: all, the two largest or the largest."""
    keep = {"all": len(sizes), "top2": 2, "largest": 1}[which]
    return list(sizes[-keep:])


def bench_task(name: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    t_task = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    task = load_task(name, args)
    ref_logits, ref_emb = model_outputs(task.model, task.ref_x)
    ref_view = view_of(task, task.ref_x, ref_emb)
    ref = build_reference(ref_view, ref_logits, task.ref_y, output_kind="logits",
                          components=args.components, whiten=args.whiten, max_features=32)
    ref_raw = ref_view if task.view == "embedding" else task.ref_x.reshape(len(task.ref_x), -1)
    out: dict[str, Any] = {
        "model": {"accuracy_test": task.accuracy, "reference_accuracy": ref.accuracy},
        "reference_rows": ref.n, "pool_rows": len(task.pool_y),
        # windows are drawn with replacement from the pool: a window much larger than a tenth
        # of it resamples the pool, and then compares the pool (a finite sample) with the
        # reference rather than the population with it
        "sizes_within_pool_tenth": [s for s in args.sizes if s <= len(task.pool_y) // 10],
        "view": task.view, "monitored_features": len(ref.features),
        "whitened_directions": 0 if ref.projection is None or ref.projection.whiten is None
        else len(ref.projection.whiten),
        "reference_bytes": len(ref.to_json()),
    }
    logits, emb = model_outputs(task.model, task.pool_x)
    base_view = view_of(task, task.pool_x, emb)
    base_raw = base_view if task.view == "embedding" else task.pool_x.reshape(len(task.pool_x), -1)
    base = sketch_rows(ref, base_view, logits, base_raw)
    # device cost: one inference at a time through the real update
    s = WindowSketch(ref)
    reps = min(len(base_view), 2000)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        for i in range(reps):
            s.update(base_view[i : i + 1], logits[i : i + 1])
        times.append((time.perf_counter() - t0) / reps)
    out["sketch_us_per_inference"] = 1e6 * min(times)
    out["sketch_state_bytes"] = int(s.hist.nbytes + sum(v.nbytes for v in s.counts.values())
                                    + 4 * s.sum_z.nbytes + s.pred.nbytes + s.conf_hist.nbytes
                                    + s.white_sum.nbytes)
    out["sketch_memory"] = sketch_memory(ref, base_view, logits, reps)
    out["agent_observe_us_per_inference"], out["agent_memory"] = agent_observe(
        ref, base_view, logits, reps)
    counts, labelled = draw(rng, np.ones(len(task.pool_y)), 1000, args.labelled)
    out["report_bytes"] = len(window_sketch(base, counts, task.pool_y, labelled))
    judges = Judges(ref, args.procs)
    ev_batches: dict[str, list[np.ndarray]] = {}
    fa: dict[str, float] = {}
    for size in args.sizes:
        w = run_condition(judges, base, task.pool_y, np.ones(len(task.pool_y)), size,
                          args.windows, args.evidently_windows, args, rng)
        fa[str(size)] = float(np.mean(w.alarms))
        ev_batches[f"none_0_{size}"] = w.evidently_raw
    out["false_alarm_rate"] = {"edgeloop": fa}
    shifts: dict[str, Any] = {}
    mae: dict[str, list[float]] = {}
    for kind, sizes in SHIFTS.items():
        for shift in sizes:
            x, y, weights = shifted_pool(task, kind, shift, rng)
            if kind == "covariate":
                lg, em = model_outputs(task.model, x)
                v = view_of(task, x, em)
                rows = sketch_rows(ref, v, lg, v if task.view == "embedding"
                                   else x.reshape(len(x), -1))
            else:
                rows = base
            per_size = {}
            for size in args.sizes:
                ev_n = args.evidently_shift_windows if shift in evidently_shifts(
                    sizes, args.evidently_shifts) else 0
                w = run_condition(judges, rows, y, weights, size, args.shift_windows,
                                  ev_n, args, rng)
                per_size[str(size)] = {"detection_rate": {"edgeloop": float(np.mean(w.alarms))},
                                       "delay_windows": delay(w.alarms)}
                ev_batches[f"{kind}_{shift}_{size}"] = w.evidently_raw
                if kind == "covariate":
                    err = np.abs(np.array(w.est) - np.array(w.truth))
                    mae.setdefault(str(size), []).extend(err[np.isfinite(err)].tolist())
            shifts.setdefault(kind, {})[str(shift)] = per_size
    out["shifts"] = shifts
    out["est_accuracy_mae"] = {k: float(np.mean(v)) for k, v in mae.items() if v}
    judges.close()
    out["edgeloop_seconds"] = time.perf_counter() - t_task
    ev_batches = {k: v for k, v in ev_batches.items() if v}
    digests = {k: windows_sha256(ref_raw, v) for k, v in ev_batches.items()}
    out["evidently_window_sha256"] = digests
    if args.evidently_prior is not None:
        reuse_evidently(args.evidently_prior, args.evidently_from, name, out, digests)
        return out
    t_ev = time.perf_counter()
    ev = run_evidently(args.evidently_python, ref_raw, ev_batches, tmp / name,
                       procs=args.evidently_procs, render=args.evidently_render)
    if ev:
        out["evidently"] = {
            # Evidently runs on a reduced grid (it is slow): fewer windows, sizes and shifts
            "grid": {"sizes": args.evidently_sizes, "unshifted_windows": args.evidently_windows,
                     "shift_windows": args.evidently_shift_windows,
                     "shifts": {k: evidently_shifts(v, args.evidently_shifts)
                                for k, v in SHIFTS.items()}},
            "columns": int(ref_raw.reshape(len(ref_raw), -1).shape[1]),
            "widgets_rendered": bool(args.evidently_render),
            "procs": args.evidently_procs,
            "windows": sum(len(r) for r in ev.values()),
            "seconds": time.perf_counter() - t_ev,
            "seconds_per_window": float(np.mean(
                [r["seconds"] for rs in ev.values() for r in rs])),
        }
        fa_ev, fa_ds = {}, {}
        for key, res in ev.items():
            kind, shift, size = key.split("_")
            any_col = float(np.mean([r["count"] > 0 for r in res]))
            dataset = float(np.mean([r["dataset_drift"] for r in res]))
            if kind == "none":
                fa_ev[size], fa_ds[size] = any_col, dataset
            else:
                det = out["shifts"][kind][shift][size]["detection_rate"]
                det["evidently"], det["evidently_dataset_drift"] = any_col, dataset
        out["false_alarm_rate"]["evidently"] = fa_ev
        out["false_alarm_rate"]["evidently_dataset_drift"] = fa_ds
    return out


def bench_merge(args: argparse.Namespace) -> float:
    """Server seconds to validate, merge and test 10,000 device reports of one version."""
    rng = np.random.default_rng(args.seed)
    x = rng.normal(size=(4000, 16))
    logits = x[:, :4] @ rng.normal(size=(4, 4))
    y = logits.argmax(1)
    ref = build_reference(x, logits, y, output_kind="logits")
    wires = []
    for _ in range(args.merge_reports):
        s = WindowSketch(ref)
        idx = rng.integers(0, 4000, 100)
        s.update(x[idx], logits[idx])
        wires.append(s.to_json())
    t0 = time.perf_counter()
    items = [DeviceSketch(f"d{i}", 1, validate_sketch(w, ref)) for i, w in enumerate(wires)]
    merge_sketches(items)
    drift_report("bench", 1, items)
    return time.perf_counter() - t0


def _traced(step: Any, reps: int) -> dict[str, int]:
    """Python-heap bytes (tracemalloc; numpy's buffers included) of ``step(i)`` per call: the
    largest transient peak above the memory held before the call, and what ``reps`` calls
    left allocated (bounded memory: flat however many inferences)."""
    step(0)  # warm: caches, lazily built arrays
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        peak = 0
        for i in range(reps):
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            step(i)
            peak = max(peak, tracemalloc.get_traced_memory()[1] - before)
        held = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    return {"peak_bytes_per_inference": int(peak), "retained_bytes": int(held),
            "inferences": reps}


def sketch_memory(ref: MonitorReference, view: np.ndarray, logits: np.ndarray,
                  reps: int) -> dict[str, int]:
    """Memory of ``WindowSketch.update`` per inference (one row at a time)."""
    s = WindowSketch(ref)
    n = len(view)
    return _traced(lambda i: s.update(view[i % n : i % n + 1], logits[i % n : i % n + 1]), reps)


def agent_observe(ref: MonitorReference, view: np.ndarray, logits: np.ndarray,
                  reps: int) -> tuple[float, dict[str, int]]:
    """The agent's whole monitoring path per inference (``agent.Monitoring.observe``: the
    sketch, a prediction id, the pending-label record with its input): µs, best of three, and
    its memory (the pending-label store keeps inputs up to its bound, so ``retained_bytes``
    grows to that bound and no further)."""
    from edgeloop.agent import Monitoring
    from edgeloop.artifacts import Manifest, ModelCard, TensorSpec

    manifest = Manifest(name="bench", version=1, model_card=ModelCard(name="bench", sha256=""),
                        inputs=(TensorSpec("x", "float32", (None, view.shape[1])),),
                        monitor=ref.to_dict())
    mon = Monitoring()
    mon.activate("bench", manifest)
    x = view.astype(np.float32)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        for i in range(reps):
            mon.observe({"x": x[i : i + 1]}, {"out": logits[i : i + 1]})
        times.append((time.perf_counter() - t0) / reps)
    if mon.errors:
        raise RuntimeError(f"agent monitoring failed: {mon.last_error}")
    n = len(x)
    memory = _traced(lambda i: mon.observe({"x": x[i % n : i % n + 1]},
                                           {"out": logits[i % n : i % n + 1]}), reps)
    return 1e6 * min(times), memory


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def _num(v: Any, fmt: str = ".3g") -> str:
    return "-" if v is None else format(v, fmt)


def markdown(results: dict[str, Any], size: str = "1000") -> str:
    """The tables of docs/monitor.md from a results JSON: the headline figures, false alarms
    per window size and detection per shift (at ``size`` rows), edgeloop beside Evidently."""
    tasks = results["tasks"]
    lines = ["| figure | " + " | ".join(tasks) + " |", "| --- |" + " --- |" * len(tasks)]

    def row(label: str, get: Any) -> None:
        lines.append(f"| {label} | " + " | ".join(get(t) for t in tasks.values()) + " |")

    row("report bytes (1,000-row window)", lambda t: str(t["report_bytes"]))
    row("reference bytes", lambda t: str(t["reference_bytes"]))
    row("sketch µs / inference", lambda t: _num(t["sketch_us_per_inference"], ".1f"))
    row("agent monitoring µs / inference", lambda t: _num(t["agent_observe_us_per_inference"],
                                                            ".1f"))
    row("sketch peak bytes / inference",
        lambda t: str(t.get("sketch_memory", {}).get("peak_bytes_per_inference", "-")))
    row("sketch bytes retained after N inferences",
        lambda t: "{retained_bytes} (N={inferences})".format(**t["sketch_memory"])
        if "sketch_memory" in t else "-")
    row("est. accuracy MAE (>= 1,000 rows)",
        lambda t: _pct(np.mean([v for s, v in t["est_accuracy_mae"].items() if int(s) >= 1000])
                       if any(int(s) >= 1000 for s in t["est_accuracy_mae"]) else None))
    fa, merge = _pct(results["false_alarm_rate"]), _num(results["merge_10k_s"], ".2f")
    out = [f"Headline (`false_alarm_rate` {fa}, the worst over sizes and tasks; "
           f"`merge_10k_s` {merge} s):", "", *lines, ""]
    sizes = sorted({s for t in tasks.values() for s in t["false_alarm_rate"]["edgeloop"]},
                   key=int)
    head = ["| task | detector | " + " | ".join(f"{int(s):,}" for s in sizes) + " |",
            "| --- | --- |" + " --- |" * len(sizes)]
    rows = []
    for name, t in tasks.items():
        for det, fa in t["false_alarm_rate"].items():
            rows.append(f"| {name} | {det} | " + " | ".join(_pct(fa.get(s)) for s in sizes)
                        + " |")
    out += ["False-alarm rate per window size (rows):", "", *head, *rows, ""]
    rows = []
    for name, t in tasks.items():
        for kind, per_shift in t["shifts"].items():
            for shift, per_size in per_shift.items():
                r = per_size.get(size, {})
                det = r.get("detection_rate", {})
                rows.append(f"| {name} | {kind} | {shift} | {_pct(det.get('edgeloop'))} | "
                            f"{_num(r.get('delay_windows'))} | {_pct(det.get('evidently'))} | "
                            f"{_pct(det.get('evidently_dataset_drift'))} |")
    out += [f"Detection rate per shift at {int(size):,}-row windows (delay: median windows to "
            "an alert, raise after 2):", "",
            "| task | shift | size | edgeloop | delay | Evidently (any column) | "
            "Evidently (dataset drift) |", "| --- | --- | --- | --- | --- | --- | --- |", *rows]
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="har,shapes")
    ap.add_argument("--reference-rows", type=int, default=5000)
    ap.add_argument("--pool-rows", type=int, default=50_000)
    ap.add_argument("--sizes", default="50,100,1000,10000,100000")
    ap.add_argument("--windows", type=int, default=1000, help="unshifted windows per size")
    ap.add_argument("--shift-windows", type=int, default=200, help="windows per shift and size")
    ap.add_argument("--labelled", type=float, default=0.1, help="share of delayed labels")
    ap.add_argument("--epochs", type=int, default=None, help="zoo training (default: the arch's)")
    ap.add_argument("--components", type=int, default=8)
    ap.add_argument("--whiten", type=int, default=64,
                    help="whitened directions of the view the mean-shift test sums (0: none)")
    # Evidently is slow (seconds per window for har's 384 columns): a reduced grid
    ap.add_argument("--evidently-python", type=Path, default=EVIDENTLY_PY)
    ap.add_argument("--evidently-sizes", default="100,1000",
                    help="window sizes Evidently runs on (a subset of --sizes)")
    ap.add_argument("--evidently-windows", type=int, default=20,
                    help="unshifted windows per size for Evidently")
    ap.add_argument("--evidently-shift-windows", type=int, default=10,
                    help="windows per shift and size for Evidently")
    ap.add_argument("--evidently-shifts", choices=("all", "top2", "largest"), default="top2",
                    help="shift sizes of each kind Evidently runs on")
    ap.add_argument("--evidently-procs", type=int, default=min(8, os.cpu_count() or 1),
                    help="Evidently windows run in this many processes")
    ap.add_argument("--evidently-render", action="store_true",
                    help="let Evidently draw its widgets too (about 5x slower, same verdicts)")
    ap.add_argument("--evidently-from", type=Path, default=None, metavar="JSON",
                    help="reuse Evidently's verdicts from an earlier run's JSON (same windows: "
                         "checked) instead of running it")
    ap.add_argument("--procs", type=int, default=min(8, os.cpu_count() or 1),
                    help="processes judging windows (the windows do not depend on it)")
    ap.add_argument("--merge-reports", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: check that it runs")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--table", type=Path, default=None, metavar="JSON",
                    help="only print the markdown tables of an earlier run's JSON")
    args = ap.parse_args()
    if args.table is not None:
        print(markdown(json.loads(args.table.read_text())), end="")
        return
    if args.smoke:
        args.sizes, args.windows, args.shift_windows = "50,1000", 20, 10
        args.reference_rows, args.pool_rows = 1000, 3000
        args.epochs, args.merge_reports = 1, 200
        args.evidently_windows, args.evidently_shift_windows = 1, 1
        args.evidently_shifts, args.evidently_sizes = "largest", "50"
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.evidently_sizes = [int(s) for s in args.evidently_sizes.split(",") if s]
    if args.procs < 1:
        raise SystemExit(f"--procs {args.procs}: expected a count >= 1")
    args.evidently_prior = None
    if args.evidently_from is not None:
        args.evidently_prior = load_evidently_from(args.evidently_from, args)
    t0 = time.perf_counter()
    results: dict[str, Any] = {
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(), "python": platform.python_version()},
        # figures are only results from a quiet machine: the load says how quiet it was
        "load_before": os.environ.get("BENCH_LOAD_BEFORE"),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                   if k != "evidently_prior"},
        "tasks": {},
    }
    with tempfile.TemporaryDirectory(prefix="edgeloop-monitor-") as tmp:
        for name in args.tasks.split(","):
            print(f"[{name}] ...", flush=True)
            (Path(tmp) / name).mkdir()
            results["tasks"][name] = bench_task(name, args, Path(tmp))
    results["merge_10k_s"] = bench_merge(args) * 10_000 / args.merge_reports
    tasks = results["tasks"].values()
    results["false_alarm_rate"] = max(max(t["false_alarm_rate"]["edgeloop"].values())
                                      for t in tasks)
    ev_fa = [v for t in tasks for v in t["false_alarm_rate"].get("evidently", {}).values()]
    results["evidently_false_alarm_rate"] = max(ev_fa) if ev_fa else None
    results["report_bytes"] = max(t["report_bytes"] for t in tasks)
    big = [v for t in tasks for s, v in t["est_accuracy_mae"].items() if int(s) >= 1000]
    results["est_accuracy_mae"] = float(np.mean(big)) if big else None
    # per kind, task, shift and window size: {"edgeloop": rate, "evidently": rate, ...}
    results["detection_rate"] = {
        kind: {name: {str(sh): {sz: r["detection_rate"] for sz, r in per.items()}
                      for sh, per in t["shifts"][kind].items()}
               for name, t in results["tasks"].items()}
        for kind in SHIFTS
    }
    results["seconds_total"] = time.perf_counter() - t0
    results["load_after"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".monitor-", suffix=".json", dir=args.out.parent)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(results, indent=2) + "\n")
    Path(tmp_name).replace(args.out)
    print(markdown(results), end="")
    print(json.dumps({k: results[k] for k in ("false_alarm_rate", "evidently_false_alarm_rate",
                                              "report_bytes", "merge_10k_s",
                                              "est_accuracy_mae", "seconds_total")}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
