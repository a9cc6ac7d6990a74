"""``rollout start`` refuses a version that regresses on its model's evaluation suite (409,
one line with the figure) and starts one that does not."""

from __future__ import annotations

from typing import Any

from edgeloop.artifacts import ModelCard
from edgeloop.bundle import load_public_key, load_signing_key, pack
from edgeloop.registry import Registry
from suite_models import linear_model, suite_file


def _release(fleet: Any, version: int, bias: tuple[float, float]) -> None:
    """Push ``kws@version`` (logits x + bias) with a signed bundle, then publish it."""
    keys = fleet.settings.keys_path
    onnx = linear_model(fleet.tmp / f"kws-{version}.onnx", bias)
    data = pack(
        onnx.read_bytes(),
        ModelCard(name="kws", sha256=""),
        version,
        load_signing_key(keys / "release.pem"),
        [load_public_key(keys / "fleet.pub.pem")],
        name="kws",
    )
    bundle = fleet.tmp / f"kws-{version}.elb"
    bundle.write_bytes(data)
    with Registry(fleet.settings.db_url, fleet.settings.registry_path) as reg:
        reg.push(onnx, "kws", version=version, bundles=[(bundle, "fp32", {})])
    r = fleet.client.post(
        "/v1/admin/releases", json={"model": "kws", "version": version}, headers=fleet.admin
    )
    assert r.status_code == 201, r.text


def test_rollout_start_refuses_a_regression_with_its_figure_and_starts_a_better_one(
    sqlite_fleet: Any,
) -> None:
    fleet = sqlite_fleet
    _release(fleet, 1, (0.05, 0.0))  # a few north rows of class 1 wrong
    r = fleet.client.put("/v1/admin/models/kws/desired", json={"version": 1}, headers=fleet.admin)
    assert r.status_code == 200, r.text
    with Registry(fleet.settings.db_url, fleet.settings.registry_path) as reg:
        reg.set_suite(
            "kws", suite_file(fleet.tmp / "suite.npz"), segment_key="region", max_drop=0.02
        )
        north_1 = reg.resolve("kws@1")
    _release(fleet, 2, (0.5, 0.0))  # half of north wrong
    _release(fleet, 3, (0.0, 0.0))  # all right
    acc = {e.dataset: e.value for e in north_1.evaluations if e.metric == "accuracy"}
    with Registry(fleet.settings.db_url, fleet.settings.registry_path) as reg:
        acc2 = {
            e.dataset: e.value for e in reg.resolve("kws@2").evaluations if e.metric == "accuracy"
        }
    drop = acc["suite:region=north"] - acc2["suite:region=north"]

    refused = fleet.client.post(
        "/v1/admin/rollouts", json={"model": "kws", "version": 2}, headers=fleet.admin
    )
    started = fleet.client.post(
        "/v1/admin/rollouts", json={"model": "kws", "version": 3}, headers=fleet.admin
    )

    assert refused.status_code == 409
    detail = refused.json()["detail"]
    assert "\n" not in detail
    assert "kws@2 regresses against kws@1 (production)" in detail
    assert f"accuracy on region=north {acc2['suite:region=north']:.4f}" in detail
    assert f"a drop of {drop:.4f} beyond the budget 0.0200" in detail
    assert started.status_code == 201, started.text
    assert started.json()["to_version"] == 3
