"""Federated rounds on real SuperNodes: a run submitted to a SuperLink over TLS with node
authentication, the ServerApp in Flower's serverapp process, each device's ClientApp in its
SuperNode on its own delayed-label samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("onnx")

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from edgeloop.errors import DataError, InputError  # noqa: E402
from edgeloop.federated.device import SuperNode, bind_node_key  # noqa: E402
from edgeloop.federated.server import (  # noqa: E402
    DeployPlan,
    SuperLink,
    deploy,
    read_head,
    with_embedding,
)
from edgeloop.runtime import Session  # noqa: E402
from fl_model import blobs, model_bytes  # noqa: E402
from tls_certs import make_ca  # noqa: E402


def device_samples(model: bytes, path: Path, seed: int, n: int = 300) -> Path:
    """What an agent writes for its SuperNode: its labelled samples' embeddings."""
    x, y = blobs(n, seed)
    feats = Session(with_embedding(model)).run({"x": x})["edgeloop_embedding"]
    np.savez(path, x=np.asarray(feats, np.float32).reshape(n, -1), y=y)
    return path


def test_the_plan_is_checked() -> None:
    with pytest.raises(InputError, match="rounds"):
        DeployPlan(rounds=0)
    with pytest.raises(InputError, match="strategy"):
        DeployPlan(strategy="magic")
    with pytest.raises(InputError, match="dp"):
        DeployPlan(dp_noise=1.0)


def test_hostile_samples_files_are_refused(tmp_path: Path) -> None:
    from edgeloop.federated.device._deployed import load_samples

    np.savez(tmp_path / "nan.npz", x=np.full((3, 2), np.nan, np.float32), y=np.zeros(3, int))
    np.savez(tmp_path / "neg.npz", x=np.zeros((3, 2), np.float32), y=-np.ones(3, int))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    for name in ("nan", "neg", "junk", "missing"):
        with pytest.raises(DataError):
            load_samples(tmp_path / f"{name}.npz")


@pytest.mark.slow
def test_a_deployed_run_trains_on_enrolled_supernodes_and_refuses_a_revoked_one(
        tmp_path: Path) -> None:
    from edgeloop.errors import AgentError, AuthError

    base = model_bytes()
    ca = make_ca(tmp_path / "ca")
    keys = {f"dev-{i}": Ed25519PrivateKey.generate() for i in range(4)}
    nodes: list[SuperNode] = []
    with SuperLink(ca.cert_pem, ca.key_pem, ca.ca_pem, tmp_path / "sl") as link:
        for i, (dev, key) in enumerate(keys.items()):
            revoked = dev == "dev-3"
            if revoked:
                with pytest.raises(AuthError):
                    link.register_device(key.public_key(), bind_node_key(key, dev), dev,
                                         revoked=True)
            else:
                link.register_device(key.public_key(), bind_node_key(key, dev), dev,
                                     revoked=False)
            samples = device_samples(base, tmp_path / f"{dev}.npz", seed=10 + i)
            nodes.append(SuperNode(key, f"127.0.0.1:{link.port}", ca.ca_pem, tmp_path / dev,
                                   node_config={"edgeloop-samples": str(samples)}))
        try:
            for node in nodes[:3]:
                node.start(timeout_s=60)
            with pytest.raises(AgentError):
                nodes[3].start(timeout_s=60)
            seen: list[int] = []
            result = deploy(link, base, DeployPlan(rounds=2, epochs=3, min_nodes=3,
                                                   round_timeout=60), tmp_path / "runs",
                            on_round=lambda r: seen.append(r.round))
        finally:
            for node in nodes:
                node.stop()
    assert seen == [1, 2]
    assert all(r.aggregated and r.answered == 3 for r in result.rounds)
    assert result.gate.accepted and result.gate.nodes == 3, result.gate.reason
    assert result.extra["nodes"] == 3 and result.extra["runtime"] == "deployment"
    assert not np.allclose(read_head(result.model).weight,
                           read_head(with_embedding(base)).weight)


def _enrol(db_url: str, devices: dict[str, Ed25519PrivateKey], revoked: set[str]) -> None:
    from datetime import datetime, timezone

    from cryptography.hazmat.primitives import serialization

    from edgeloop.db import DeviceRow, make_engine, upgrade, write_session

    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    engine = make_engine(db_url)
    upgrade(engine)
    with write_session(engine) as s:
        for i, (dev, key) in enumerate(devices.items()):
            s.add(DeviceRow(id=dev, signing_key=key.public_key().public_bytes(*raw).hex(),
                            encryption_key=f"{i:064x}", labels={"site": "lab"},
                            enrolled_at=datetime.now(timezone.utc), health="ok",
                            revoked=dev in revoked))
    engine.dispose()


@pytest.mark.slow
def test_cli_fl_start_registers_the_deployed_result_with_its_lineage(tmp_path: Path) -> None:
    """fleet database + SuperLink + three agents' SuperNodes over TLS on loopback; the revoked
    fourth is left out and its SuperNode refused; the accepted candidate lands in the registry."""
    import json
    import os
    import socket
    import subprocess
    import sys

    from conftest import run_edgeloop
    from edgeloop.errors import AgentError

    base = model_bytes()
    (tmp_path / "base.onnx").write_bytes(base)
    x, y = blobs(600)
    np.savez(tmp_path / "feed.npz", x=x, y=y)
    reg = ["--db", "sqlite:///reg.db", "--data", "store"]
    assert run_edgeloop(["registry", "push", "base.onnx", "--name", "blobs", *reg],
                        cwd=tmp_path).returncode == 0
    ca = make_ca(tmp_path / "ca")
    keys = {f"dev-{i}": Ed25519PrivateKey.generate() for i in range(4)}
    _enrol(f"sqlite:///{tmp_path / 'fleet.db'}", keys, revoked={"dev-3"})
    (tmp_path / "bindings").mkdir()
    for dev, key in keys.items():
        (tmp_path / "bindings" / f"{dev}.json").write_text(json.dumps(bind_node_key(key, dev)))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeloop", "fl", "start", "blobs@1", "--rounds", "2",
         "--cohort", "site=lab", "--bindings", "bindings", "--fleet-db",
         f"sqlite:///{tmp_path / 'fleet.db'}", "--tls-cert", str(ca.cert_pem), "--tls-key",
         str(ca.key_pem), "--tls-ca", str(ca.ca_pem), "--port", str(port), "--min-nodes", "3",
         "--epochs", "3", "--round-timeout", "60", "--dataset", "feed.npz", "--out", "run",
         *reg], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    nodes = []
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "3 node keys registered" not in line:
            proc.kill()
            pytest.fail(line + proc.communicate()[1])
        assert "1 revoked" in line, line
        for i, (dev, key) in enumerate(keys.items()):
            samples = device_samples(base, tmp_path / f"{dev}.npz", seed=20 + i)
            nodes.append(SuperNode(key, f"127.0.0.1:{port}", ca.ca_pem, tmp_path / dev,
                                   node_config={"edgeloop-samples": str(samples)}))
        for node in nodes[:3]:
            node.start(timeout_s=60)
        with pytest.raises(AgentError):
            nodes[3].start(timeout_s=60)
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        for node in nodes:
            node.stop()
        from edgeloop.federated.device import stop_tree

        stop_tree(proc, timeout_s=10)  # with its SuperLink (a session of its own), if left
    assert proc.returncode == 0, stderr
    assert "registered blobs@2" in stdout, stdout
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["runtime"] == "deployment" and record["nodes"] == 3
    assert record["node_keys_registered"] == 3 and record["revoked_left_out"] == 1
    lineage = run_edgeloop(["registry", "lineage", "blobs@2", *reg, "--json"], cwd=tmp_path)
    assert "federated_round" in lineage.stdout and record["run_id"] in lineage.stdout


def test_cli_fl_start_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    from conftest import run_edgeloop

    ca = make_ca(tmp_path / "ca")
    tls = ["--tls-cert", str(ca.cert_pem), "--tls-key", str(ca.key_pem), "--tls-ca",
           str(ca.ca_pem)]
    r = run_edgeloop(["fl", "start", "m@1", "--bindings", "nope", *tls], cwd=tmp_path)
    assert r.returncode != 0 and "--bindings" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "b").mkdir()
    r = run_edgeloop(["fl", "start", "m@1", "--bindings", "b", "--cohort", "nolabel", *tls,
                      "--fleet-db", f"sqlite:///{tmp_path / 'f.db'}"], cwd=tmp_path)
    assert r.returncode != 0 and "LABEL=VALUE" in r.stderr
    r = run_edgeloop(["fl", "start", "m@1", "--bindings", "b", "--rounds", "0", *tls],
                     cwd=tmp_path)
    assert r.returncode != 0 and "rounds" in r.stderr
    r = run_edgeloop(["fl", "start", "m@1", "--bindings", "b", "--dp", "sideways",
                      "--dp-noise", "1", "--dp-clip", "1", *tls], cwd=tmp_path)
    assert r.returncode != 0 and "--dp" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    for bad, says in ((["--secagg", "--compression", "int8"], "dense update"),
                      (["--secagg", "--strategy", "krum"], "SecAgg+ with krum"),
                      (["--secagg", "--dp-noise", "1", "--dp-clip", "1"], "--dp client"),
                      (["--superlink-restarts", "-1"], "--superlink-restarts")):
        r = run_edgeloop(["fl", "start", "m@1", "--bindings", "b", *bad, *tls], cwd=tmp_path)
        assert r.returncode != 0 and says in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "superlink").exists()


def test_client_side_clipping_bounds_the_update_norm() -> None:
    from edgeloop.federated.device._clientapp import clip_update

    delta = {"w": np.full((3, 4), 2.0, np.float32), "b": np.ones(4, np.float32)}
    out = clip_update(delta, 1.0)
    norm = np.sqrt(sum(float(np.sum(v ** 2)) for v in out.values()))
    assert abs(norm - 1.0) < 1e-5 and np.allclose(out["w"] / out["w"].max(), 1)
    assert clip_update(delta, 100.0) is delta  # within the norm: unchanged
    with pytest.raises(InputError):
        clip_update(delta, float("nan"))


def test_the_deployed_privacy_plan_reports_epsilon_and_refuses_what_flower_lacks() -> None:
    rec = DeployPlan(rounds=5, dp_noise=1.0, dp_clip=1.0, dp_mode="client").privacy_record()
    assert rec["epsilon"] > 0 and "on the device" in rec["mechanism"]
    assert DeployPlan().privacy_record() == {"mechanism": "none"}
    with pytest.raises(InputError, match="robust|DP with"):
        DeployPlan(dp_noise=1.0, dp_clip=1.0, strategy="krum")
    with pytest.raises(InputError, match="--dp"):
        DeployPlan(dp_noise=1.0, dp_clip=1.0, dp_mode="sideways")


@pytest.mark.slow
def test_a_device_dropping_out_mid_run_leaves_the_run_going_above_quorum_with_client_dp(
        tmp_path: Path) -> None:
    import os
    import signal

    base = model_bytes()
    ca = make_ca(tmp_path / "ca")
    keys = {f"dev-{i}": Ed25519PrivateKey.generate() for i in range(3)}
    nodes: list[SuperNode] = []
    with SuperLink(ca.cert_pem, ca.key_pem, ca.ca_pem, tmp_path / "sl") as link:
        for i, (dev, key) in enumerate(keys.items()):
            link.register_device(key.public_key(), bind_node_key(key, dev), dev, revoked=False)
            samples = device_samples(base, tmp_path / f"{dev}.npz", seed=30 + i)
            nodes.append(SuperNode(key, f"127.0.0.1:{link.port}", ca.ca_pem, tmp_path / dev,
                                   node_config={"edgeloop-samples": str(samples)}))

        def drop_one(log: Any) -> None:
            proc = nodes[2].process
            if log.round == 1 and proc is not None:  # the third device vanishes after round 1
                os.killpg(proc.pid, signal.SIGKILL)

        try:
            for node in nodes:
                node.start(timeout_s=60)
            result = deploy(link, base, DeployPlan(rounds=3, epochs=3, min_nodes=3,
                                                   round_timeout=20, quorum=0.5,
                                                   dp_noise=0.05, dp_clip=5.0,
                                                   dp_mode="client"),
                            tmp_path / "runs", on_round=drop_one)
        finally:
            for node in nodes:
                node.stop()
    first, *later = result.rounds
    assert first.answered == 3 and first.aggregated
    assert later and all(r.aggregated and r.answered - r.failed == 2 for r in later)
    assert all("no longer connected" in r.note or "did not answer" in r.note for r in later)
    privacy = result.record()["privacy"]
    assert "on the device" in privacy["mechanism"] and privacy["epsilon"] > 0


@pytest.mark.slow
def test_a_deployed_run_under_secagg_with_client_dp_trains_on_three_supernodes(
        tmp_path: Path) -> None:
    """Flower's SecAgg+ across real SuperNodes over TLS: four stages a round, the mean applied,
    the record says what the server saw; a plan SecAgg+ cannot serve is refused before any
    run."""
    base = model_bytes()
    ca = make_ca(tmp_path / "ca")
    keys = {f"dev-{i}": Ed25519PrivateKey.generate() for i in range(3)}
    nodes: list[SuperNode] = []
    with pytest.raises(InputError, match="server-side clipping"):
        DeployPlan(secagg=True, dp_noise=0.1, dp_clip=5.0)
    with pytest.raises(InputError, match="dense"):
        DeployPlan(secagg=True, compression="int8")
    with SuperLink(ca.cert_pem, ca.key_pem, ca.ca_pem, tmp_path / "sl") as link:
        for i, (dev, key) in enumerate(keys.items()):
            link.register_device(key.public_key(), bind_node_key(key, dev), dev, revoked=False)
            samples = device_samples(base, tmp_path / f"{dev}.npz", seed=40 + i)
            nodes.append(SuperNode(key, f"127.0.0.1:{link.port}", ca.ca_pem, tmp_path / dev,
                                   node_config={"edgeloop-samples": str(samples)}))
        try:
            for node in nodes:
                node.start(timeout_s=60)
            result = deploy(link, base, DeployPlan(rounds=2, epochs=3, min_nodes=3,
                                                   round_timeout=60, secagg=True,
                                                   dp_noise=0.01, dp_clip=5.0,
                                                   dp_mode="client"),
                            tmp_path / "runs")
        finally:
            for node in nodes:
                node.stop()
    assert all(r.aggregated and r.answered == 3 and r.failed == 0 for r in result.rounds), \
        [r.note for r in result.rounds]
    assert result.gate.accepted and result.gate.nodes == 3, result.gate.reason
    privacy = result.record()["privacy"]
    assert "SecAgg+" in privacy["mechanism"] and "on the device" in privacy["mechanism"]
    assert privacy["epsilon"] > 0 and result.record()["deploy_plan"]["secagg"] is True


def _three_nodes(tmp_path: Path, link: SuperLink, base: bytes, ca: Any) -> list[SuperNode]:
    nodes = []
    for i in range(3):
        dev, key = f"dev-{i}", Ed25519PrivateKey.generate()
        link.register_device(key.public_key(), bind_node_key(key, dev), dev, revoked=False)
        samples = device_samples(base, tmp_path / f"{dev}.npz", seed=50 + i)
        nodes.append(SuperNode(key, f"127.0.0.1:{link.port}", ca.ca_pem, tmp_path / dev,
                               node_config={"edgeloop-samples": str(samples)}))
    return nodes


@pytest.mark.slow
@pytest.mark.parametrize("restarts", [1, 0])
def test_a_superlink_crash_mid_run_is_restarted_and_the_run_resumed_or_fails_in_one_line(
        tmp_path: Path, restarts: int) -> None:
    """The SuperLink is killed after round 1. Flower's run dies with it (its ServerApp loses the
    SuperLink); deploy starts the SuperLink again on its database and resubmits the run from
    round 1's checkpoint, so all rounds are done and the record says what happened. Allowed no
    restart, deploy fails saying after which round the SuperLink stopped."""
    from edgeloop.errors import FleetError

    base = model_bytes()
    ca = make_ca(tmp_path / "ca")
    with SuperLink(ca.cert_pem, ca.key_pem, ca.ca_pem, tmp_path / "sl") as link:
        nodes = _three_nodes(tmp_path, link, base, ca)

        def crash(log: Any) -> None:
            if log.round == 1 and link.process is not None and link.restarts == 0:
                link.process.kill()
                link.process.wait()

        plan = DeployPlan(rounds=3, epochs=2, min_nodes=3, round_timeout=30)
        try:
            for node in nodes:
                node.start(timeout_s=60)
            if restarts == 0:
                with pytest.raises(FleetError, match="stopped .* after round 1; not restarted"):
                    deploy(link, base, plan, tmp_path / "runs", on_round=crash, restarts=0)
                return
            seen: list[int] = []
            result = deploy(link, base, plan, tmp_path / "runs", restarts=restarts,
                            on_round=lambda r: (seen.append(r.round), crash(r)))
        finally:
            for node in nodes:
                node.stop()
    assert link.restarts == 1 and seen == [1, 2, 3]
    assert [r.round for r in result.rounds] == [1, 2, 3]
    assert all(r.aggregated and r.answered == 3 for r in result.rounds)
    events = result.record()["superlink_events"]
    assert "stopped" in events[0] and "after round 1" in events[0] and "restarted" in events[0]
    assert "resumed as run" in events[1]
    assert result.gate.accepted, result.gate.reason


def test_a_keyed_run_that_finished_is_read_back_not_run_again(tmp_path: Path) -> None:
    """A submitter that died after the run finished (its outcome on disk) is followed by one
    that reads the outcome back: no second Flower run (the SuperLink is never started)."""
    import json

    ca = make_ca(tmp_path / "ca")
    link = SuperLink(ca.cert_pem, ca.key_pem, ca.ca_pem, tmp_path / "link")
    model = model_bytes()
    out = tmp_path / "runs" / "fl-job-7"
    out.mkdir(parents=True)
    (out / "base.onnx").write_bytes(model)
    head = read_head(with_embedding(model))
    arrays = {k: np.asarray(v) * 1.5 for k, v in head.to_arrays().items()}
    np.savez(out / "arrays.npz", **arrays)  # type: ignore[arg-type]
    gate = {"accepted": True, "reason": "better", "candidate_accuracy": 0.8,
            "base_accuracy": 0.5, "candidate_loss": 0.4, "base_loss": 0.9, "nodes": 3,
            "samples": 90}
    (out / "outcome.json").write_text(json.dumps({
        "nodes": 3, "round_accuracy": {"1": 0.7, "2": 0.8}, "gate": gate,
        "rounds": [{"round": r, "sampled": 3, "answered": 3, "aggregated": True}
                   for r in (1, 2)]}))
    plan = DeployPlan(rounds=2, min_nodes=3)
    res = deploy(link, model, plan, tmp_path / "runs", run_key="job-7")
    assert not link.running and res.run_id == "fl-job-7" and res.gate.accepted
    assert [r.round for r in res.rounds] == [1, 2] and res.extra["flower_run_id"] is None
    assert "not run again" in res.extra["superlink_events"][0]
    got = res.head.to_arrays()
    assert all(np.allclose(got[k], arrays[k]) for k in arrays)
    with pytest.raises(InputError, match="run key"):
        deploy(link, model, plan, tmp_path / "runs", run_key="../x")
