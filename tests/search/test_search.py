"""The architecture search: spaces, the cost screen, multi-fidelity stopping, the front, workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeloop.errors import InputError, UnknownNameError
from edgeloop.search import (
    SPACES,
    Limits,
    TrialRecord,
    load_space,
    pareto_front,
    rank_correlation,
    search,
)
from edgeloop.zoo import load_checkpoint

TINY = {
    "space": "mobilenet",
    "choices": {"width": [0.25, 1.0], "depth": [1], "kernel": [3], "expansion": [2, 4]},
}


def _space(tmp_path: Path, doc: dict[str, object] = TINY) -> Path:
    path = tmp_path / "space.json"
    path.write_text(json.dumps(doc))
    return path


def _rec(
    n: int, acc: float | None, ms: float, state: str = "full", over: float = -1.0
) -> TrialRecord:
    return TrialRecord(n, {}, {}, state, acc, acc, {"latency_ms": ms}, {"latency_ms": over})


def test_builtin_spaces_hold_the_issue_knobs() -> None:
    assert set(SPACES["mobilenet"].choices) == {
        "width",
        "depth",
        "kernel",
        "expansion",
        "resolution",
    }
    assert {"layers", "heads", "dim"} <= set(SPACES["transformer"].choices)
    assert SPACES["mobilenet"].size() > 100


def test_space_file_narrows_a_builtin_space(tmp_path: Path) -> None:
    sp = load_space(_space(tmp_path))
    assert sp.arch == "mbconv" and sp.choices["width"] == (0.25, 1.0)
    assert sp.choices["resolution"] == SPACES["mobilenet"].choices["resolution"]  # kept
    kw = sp.arch_kwargs({"resolution": 0.5, "width": 0.25}, {"input_size": 32})
    assert kw["resolution"] == 16 and kw["width"] == 0.25


@pytest.mark.parametrize(
    ("choices", "message"),
    [
        ({"kernel": [4]}, "odd"),
        ({"width": [float("nan")]}, "not a number"),
        ({"depth": [1.5]}, "not an integer"),
        ({"depth": []}, "list of 1 to 32"),
        ({"colour": [1]}, "no knob 'colour'"),
    ],
)
def test_space_file_refuses_bad_values(
    tmp_path: Path, choices: dict[str, object], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        load_space(_space(tmp_path, {"space": "mobilenet", "choices": choices}))


def test_transformer_space_needs_heads_that_divide_dim(tmp_path: Path) -> None:
    doc = {"space": "transformer", "choices": {"dim": [36], "heads": [8]}}
    with pytest.raises(InputError, match="divide"):
        load_space(_space(tmp_path, doc))


def test_unknown_space_is_named() -> None:
    with pytest.raises(UnknownNameError, match="mobilenet, transformer"):
        load_space("resnet")


def test_limits_refuse_non_positive_or_infinite() -> None:
    with pytest.raises(InputError, match="max-latency-ms"):
        Limits(max_latency_ms=-1.0)
    with pytest.raises(InputError, match="max-size-kb"):
        Limits(max_size_kb=float("inf"))


def test_search_refuses_a_non_positive_batch_size_before_anything_is_written(
    tmp_path: Path,
) -> None:
    with pytest.raises(InputError, match="--batch-size must be >= 1, got 0"):
        search("mobilenet", out_dir=tmp_path / "out", dataset="digits", trials=1, batch_size=0)
    assert not (tmp_path / "out").exists()


def test_pareto_front_keeps_only_feasible_full_undominated_trials() -> None:
    trials = [
        _rec(0, 0.80, 1.0),
        _rec(1, 0.70, 2.0),  # dominated by 0
        _rec(2, 0.90, 3.0),
        _rec(3, 0.95, 0.5, state="stopped"),  # short training only: not on the front
        _rec(4, 0.99, 0.4, over=1.0),  # over the budget
        _rec(5, 0.90, 3.0),  # ties 2: neither dominates
    ]
    assert [t.number for t in pareto_front(trials)] == [0, 2, 5]


def test_rank_correlation() -> None:
    assert rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert rank_correlation([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833)
    with pytest.raises(InputError):
        rank_correlation([1.0], [2.0])


def test_search_screens_trains_and_chooses_a_feasible_model(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # width 1.0 with expansion 4 is over 100 KB: the cost model screens it before training
    result = search(
        _space(tmp_path),
        out_dir=out,
        target="rpi4",
        dataset="digits",
        trials=6,
        epochs=2,
        short_epochs=1,
        min_stop_trials=2,
        train_samples=200,
        threads=1,
        limits=Limits(max_size_kb=100.0),
    )
    states = {t.state for t in result.trials}
    assert len(result.trials) == 6 and "screened" in states
    for t in result.trials:
        big = t.cost["size_bytes"] / 1024 > 100.0
        assert big == (not t.feasible)
        assert big == (t.state == "screened") or t.state == "repeat"  # a repeat copies its figures
        if t.state == "screened":
            assert t.short_accuracy is None and t.checkpoint is None and t.accuracy is None
        if t.state == "stopped":  # stopped below the median of the earlier short trainings
            assert t.checkpoint is None and t.accuracy == t.short_accuracy
    assert result.front and all(t.feasible and t.state == "full" for t in result.front)
    assert result.chosen is not None and result.chosen.feasible
    best = max(t.accuracy or 0 for t in result.trials if t.state == "full" and t.feasible)
    assert result.chosen.accuracy == best
    model, meta = load_checkpoint(result.checkpoint or "")
    assert meta["arch"] == "mbconv" and meta["extra"]["search"]["trial"] == result.chosen.number
    assert meta["metrics"] == result.test_metrics and 0.0 <= result.test_metrics["accuracy"] <= 1
    assert (out / "front.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((out / "front.json").read_text())
    assert saved["front"] == [t.number for t in result.front]
    assert saved["chosen"] == result.chosen.number
    assert result.trials[0].cost["source"] == "cost model"


def test_search_refuses_a_study_started_with_another_setup(tmp_path: Path) -> None:
    doc = {
        "space": "mobilenet",
        "choices": {"width": [0.25], "depth": [1], "kernel": [3], "expansion": [2]},
    }
    space = _space(tmp_path, doc)

    def run(limits: Limits | None) -> None:
        search(
            space,
            out_dir=tmp_path / "o",
            target="rpi4",
            dataset="digits",
            trials=1,
            epochs=1,
            train_samples=50,
            study_name="s",
            threads=1,
            limits=limits,
        )

    run(None)
    with pytest.raises(InputError, match="another setup"):
        run(Limits(max_size_kb=5.0))


@pytest.mark.slow
def test_two_worker_processes_share_one_journal_study(tmp_path: Path) -> None:
    space = _space(tmp_path)
    journal = tmp_path / "shared.journal"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def worker(i: int) -> subprocess.Popen[str]:
        args = [
            sys.executable, "-m", "edgeloop", "search", str(space), "--target", "rpi4",
            "--dataset", "digits", "--trials", "2", "--epochs", "1", "--train-samples", "100",
            "--storage", str(journal), "--study", "shared", "--worker", str(i),
            "--threads", "1", "--out", str(tmp_path / "out"), "--json",
        ]  # fmt: skip
        return subprocess.Popen(
            args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    procs = [worker(0), worker(1)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    study = optuna.load_study(
        study_name="shared", storage=JournalStorage(JournalFileBackend(str(journal)))
    )
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 4
    assert sorted(t.user_attrs["worker"] for t in done) == [0, 0, 1, 1]
    assert len({t.number for t in done}) == 4
    # the last worker to finish saw all four trials
    last = max((json.loads(o) for o, _ in outs), key=lambda r: len(r["trials"]))
    assert len(last["trials"]) == 4
    assert np.all([t["state"] in ("full", "stopped", "screened", "repeat") for t in last["trials"]])


def test_cli_refuses_bad_values_in_one_line(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "edgeloop", "search", *args, "--out", str(tmp_path / "o")],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    bad = run("resnet")
    assert bad.returncode == 13 and "unknown search space 'resnet'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    neg = run("mobilenet", "--max-latency-ms", "-2")
    assert neg.returncode == 10 and "--max-latency-ms must be a positive number" in neg.stderr
    assert not (tmp_path / "o").exists()


def test_measure_times_candidates_on_this_machine(tmp_path: Path) -> None:
    doc = {
        "space": "mobilenet",
        "choices": {"width": [0.25], "depth": [1], "kernel": [3], "expansion": [2]},
    }
    result = search(
        _space(tmp_path, doc),
        out_dir=tmp_path / "o",
        target="local",
        dataset="digits",
        trials=1,
        epochs=1,
        train_samples=50,
        measure=True,
        threads=1,
    )
    (trial,) = result.trials
    assert trial.cost["source"] == "measured" and trial.cost["latency_ms"] > 0
    assert trial.cost["energy_mj"] is None  # no timing-based energy figure is invented


def test_a_bad_storage_url_is_refused_before_the_output_directory_exists(tmp_path: Path) -> None:
    doc = {
        "space": "mobilenet",
        "choices": {"width": [0.25], "depth": [1], "kernel": [3], "expansion": [2]},
    }
    space = _space(tmp_path, doc)
    with pytest.raises(InputError, match="--storage 'bogus://x'"):
        search(space, out_dir=tmp_path / "o", target="rpi4", dataset="digits", trials=1,
               epochs=1, train_samples=50, threads=1, storage="bogus://x")
    assert not (tmp_path / "o").exists()
