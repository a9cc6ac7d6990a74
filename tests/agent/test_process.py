"""The agent in child processes: killed mid-install, and running with torch unimportable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from edgeloop.agent import Agent

STEPS = ("begin", "staged", "loaded", "selftested", "switched")

# Blocks the build- and service-layer packages the way a device without them would.
BLOCK = textwrap.dedent(
    """
    import sys
    class _Block:
        BLOCKED = ("torch", "onnx", "fastapi", "sqlalchemy", "starlette", "uvicorn")
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ImportError(f"{name} is blocked: a device has no {name}")
            return None
    sys.meta_path.insert(0, _Block())
    """
)


def _run(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-c", BLOCK + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _write_trust(path: Path, release_key) -> Path:
    pem = release_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path.write_bytes(pem)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("step", STEPS)
def test_killed_at_each_install_step_still_serves(
    step, tmp_path, agent_dir, release_key, trust, make_bundle, assignment_for
):
    agent = Agent(None, agent_dir, trust=trust)
    pub = agent.encryption_key.public_key()
    b1, b2 = make_bundle(pub, 1), make_bundle(pub, 2)
    agent.install(b1, assignment_for(b1, 1))
    agent.close()
    (tmp_path / "b2.elb").write_bytes(b2)
    (tmp_path / "a2.json").write_text(assignment_for(b2, 2).to_json())
    trust_file = _write_trust(tmp_path / "release.pub.pem", release_key)
    child = _run(
        f"""
        import os
        from pathlib import Path
        from edgeloop.agent import Agent
        from edgeloop.bundle import load_trust
        from edgeloop.protocol import Assignment

        def die(name):
            if name == {step!r}:
                os._exit(9)   # no clean-up, no finally: like a power cut or SIGKILL

        agent = Agent(None, {str(agent_dir)!r}, trust=load_trust({str(trust_file)!r}),
                      on_step=die)
        a = Assignment.from_json(Path({str(tmp_path / "a2.json")!r}).read_text())
        agent.install(Path({str(tmp_path / "b2.elb")!r}).read_bytes(), a)
        print("completed")
        """
    )
    assert child.returncode == 9, child.stderr
    restarted = Agent(None, agent_dir, trust=trust)
    assert restarted.model is not None
    y = restarted.predict({"x": [[1.0, 1.0, 1.0, 1.0]]})["y"]
    assert float(y[0, 0]) == (2.0 if step == "switched" else 1.0)


@pytest.mark.slow
def test_agent_serves_with_torch_unimportable(
    tmp_path, agent_dir, release_key, trust, make_bundle, assignment_for
):
    agent = Agent(None, agent_dir, trust=trust)
    b1 = make_bundle(agent.encryption_key.public_key(), 3)
    agent.install(b1, assignment_for(b1, 3))
    agent.close()
    trust_file = _write_trust(tmp_path / "release.pub.pem", release_key)
    child = _run(
        f"""
        import json, sys, httpx
        try:
            import torch
        except ImportError as e:
            print("torch:", e)
        else:
            sys.exit("torch imported")
        from edgeloop.agent import Agent, LocalServer
        from edgeloop.bundle import load_trust

        agent = Agent(None, {str(agent_dir)!r}, trust=load_trust({str(trust_file)!r}))
        y = agent.predict({{"x": [[1.0, 2.0, 3.0, 4.0]]}})["y"]
        server = LocalServer(agent.predict_with_version, agent.status).start()
        r = httpx.post(server.url + "/v1/predict", json={{"inputs": {{"x": [[1, 1, 1, 1]]}}}})
        server.close()
        bad = sorted(m for m in sys.modules if m.split(".")[0] in
                     ("torch", "onnx", "fastapi", "sqlalchemy"))
        print(json.dumps({{"y": y.tolist(), "http": r.json(), "loaded": bad}}))
        """
    )
    assert child.returncode == 0, child.stderr
    assert "torch is blocked" in child.stdout
    out = json.loads(child.stdout.strip().splitlines()[-1])
    assert out["y"] == [[3.0, 6.0, 9.0, 12.0]]
    assert len(out["http"].pop("prediction_id")) == 16
    assert out["http"] == {"model": "m", "version": 3, "outputs": {"y": [[3.0, 3.0, 3.0, 3.0]]}}
    assert out["loaded"] == []


@pytest.mark.slow
def test_agent_monitors_with_torch_unimportable(
    tmp_path, agent_dir, release_key, trust, assignment_for
):
    """Monitoring on: the child installs a bundle with a reference (verify, decrypt, self-test),
    sketches inferences and takes a delayed label over the local endpoint, with torch
    unimportable and onnx, scipy and the server stack never loaded."""
    from classifier_model import classifier_bytes, reference
    from edgeloop.artifacts import ModelCard, sha256_bytes
    from edgeloop.bundle import pack

    agent = Agent(None, agent_dir, trust=trust)  # keys only; the child installs
    model = classifier_bytes()
    b = pack(model, ModelCard(name="m", sha256=sha256_bytes(model)), 3, release_key,
             [agent.encryption_key.public_key()], reference=reference())
    agent.close()
    (tmp_path / "m.elb").write_bytes(b)
    (tmp_path / "assignment.json").write_text(json.dumps(assignment_for(b, 3).to_dict()))
    trust_file = _write_trust(tmp_path / "release.pub.pem", release_key)
    child = _run(
        f"""
        import json, sys, httpx
        from pathlib import Path
        from edgeloop.agent import Agent, LocalServer
        from edgeloop.bundle import load_trust
        from edgeloop.protocol import Assignment

        agent = Agent(None, {str(agent_dir)!r}, trust=load_trust({str(trust_file)!r}))
        assignment = Assignment.from_dict(json.loads(Path({str(tmp_path / "assignment.json")!r}
                                                          ).read_text()))
        assert agent.install(Path({str(tmp_path / "m.elb")!r}).read_bytes(), assignment)
        server = LocalServer(agent.predict_with_version, agent.status,
                             feedback=agent.feedback).start()
        for i in range(20):
            r = httpx.post(server.url + "/v1/predict",
                           json={{"inputs": {{"x": [[i / 10, 0.0, -i / 20, 1.0]]}}}})
        fb = httpx.post(server.url + "/v1/feedback",
                        json={{"prediction_id": r.json()["prediction_id"], "label": 1}})
        server.close()
        sketch = agent.report().sketch
        bad = sorted(m for m in sys.modules if m.split(".")[0] in
                     ("torch", "onnx", "scipy", "fastapi", "sqlalchemy"))
        print(json.dumps({{"fb": fb.json(), "n": sketch["n"], "fb_n": sketch["fb_n"],
                          "loaded": bad}}))
        """
    )
    assert child.returncode == 0, child.stderr
    out = json.loads(child.stdout.strip().splitlines()[-1])
    assert out == {"fb": {"matched": True}, "n": 20, "fb_n": 1, "loaded": []}
