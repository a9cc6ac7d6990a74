"""``edgeloop heal``: the closed loop's worker: claim a ``finetune`` job an alert queued, fine-tune
over the cohort's devices with Flower, gate, register, re-fit, release with deltas, roll out.

``heal worker`` runs on the build side, where the release keys are (``--keys``) and the TUF
repository the server serves (``--repo``) and the registry (``--db``/``--registry-data``).
The cohort's devices are simulated here from a labelled data set (``--dataset``: the cohort's
inputs shifted by ``--severity``, ``--label-share`` of them labelled by delayed feedback).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer

from edgeloop.cli._admin import admin_options, admin_token, server, verify

app = typer.Typer(help="The closed loop: heal the cohort an alert names.", no_args_is_help=True)
app.callback()(admin_options)


def worker(
    ctx: typer.Context,
    dataset: str = typer.Option(..., "--dataset", help="Built-in dataset or data file whose "
                                "train split the cohort's simulated devices hold."),
    db: str = typer.Option(..., "--db", help="Registry database URL."),
    registry_data: Path = typer.Option(..., "--registry-data", help="Registry data directory."),
    keys: Path = typer.Option(..., "--keys", help="Release keys: release.pem, fleet.pem, "
                              "fleet.pub.pem, root.json."),
    repo: Path = typer.Option(..., "--repo", help="The TUF repository the server serves."),
    devices: int = typer.Option(10, "--devices", help="Simulated devices in the cohort."),
    severity: float = typer.Option(1.0, "--severity", help="The cohort's input shift (0..3)."),
    label_share: float = typer.Option(0.5, "--label-share", help="Share of predictions that "
                                      "get a delayed label."),
    rounds: int = typer.Option(5, "--rounds", help="Federated rounds."),
    calibration: str | None = typer.Option(None, "--calibration", help="Dataset for the "
                                           "re-fit with the base's recipe (default: none, the "
                                           "fine-tuned model ships as it is)."),
    stages: str = typer.Option("25,50,100", "--stages", help="Rollout stages in percent."),
    soak: float = typer.Option(10.0, "--soak", help="Seconds each stage soaks."),
    wait: float = typer.Option(900.0, "--wait", help="Seconds to wait for the rollout's end "
                               "(0: start it and finish the job)."),
    once: bool = typer.Option(False, "--once", help="Heal at most one job, then exit."),
    idle: float = typer.Option(10.0, "--idle", help="Seconds between looks for a job."),
    name: str = typer.Option("heal", "--worker", help="This worker's name on the jobs."),
    samples: int | None = typer.Option(None, "--samples", help="Use at most this many "
                                       "samples of the data set."),
    json_out: bool = typer.Option(False, "--json", help="Print each result as JSON."),
) -> None:
    """Claim queued fine-tune jobs and heal each one's cohort."""
    import time

    import numpy as np

    from edgeloop.cli._console import console, print_json
    from edgeloop.data import load_dataset
    from edgeloop.errors import InputError
    from edgeloop.loop import DatasetCohort, FleetAccess, HealPlan, heal_next

    try:
        pcts = tuple(float(s) for s in stages.split(","))
    except ValueError:
        raise InputError(f"--stages {stages!r}: expected percents, e.g. 25,50,100") from None
    plan = HealPlan(rounds=rounds, refit="base" if calibration else None,
                    dataset=calibration, stages=pcts, soak_s=soak, wait_s=wait)
    if not (math.isfinite(idle) and 0 < idle <= 86400):  # NaN fails it too
        raise InputError(f"--idle {idle}: expected seconds > 0 and at most 86400")
    for what, path in (("--keys", keys), ("--repo", repo)):
        if not path.is_dir():
            raise InputError(f"{what} {str(path)!r}: expected an existing directory")
    train = load_dataset(dataset, "train")
    if not isinstance(train.x, np.ndarray) or train.y is None:
        raise InputError(f"--dataset {dataset!r}: expected array inputs with labels")
    x, y = train.x, np.asarray(train.y)
    if samples is not None:
        if samples < 4 * devices:
            raise InputError(f"--samples {samples}: expected at least 4 per device "
                             f"({4 * devices})")
        keep = np.random.default_rng(0).permutation(len(y))[:samples]
        x, y = x[keep], y[keep]
    cohort = DatasetCohort(x, y, devices_n=devices, severity=severity, label_share=label_share)
    fleet = FleetAccess(server(ctx), admin_token(ctx), db, registry_data, keys=keys, repo=repo,
                        verify=verify(ctx))

    def say(step: str, text: str) -> None:
        if not json_out:
            console.print(f"{step:<9} {text}", markup=False, highlight=False, soft_wrap=True)

    def cohort_of(job: Any) -> DatasetCohort:
        return cohort

    while True:
        res = heal_next(fleet, cohort_of, plan, worker=name, on_step=say)
        if res is not None:
            if json_out:
                print_json(res.to_dict())
            else:
                console.print(f"job {res.job_id}: {'healed' if res.ok else 'not healed'}: "
                              f"{res.reason}", markup=False, highlight=False, soft_wrap=True)
        elif once and not json_out:
            console.print("no queued finetune job")
        if once:
            if res is not None and not res.ok:
                raise typer.Exit(1)
            return
        time.sleep(idle)


app.command("worker")(worker)
