"""A device without torch, onnx or Flower trains the head: ``edgeloop.federated.device`` imports
and trains with those three unimportable (what ``pip install edgeloop`` gives)."""

import json
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import json, sys
    class _Block:
        BLOCKED = ("torch", "onnx", "flwr", "fastapi", "sqlalchemy", "starlette", "sklearn")
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ImportError(f"{name} is blocked: a device has no {name}")
            return None
    sys.meta_path.insert(0, _Block())
    import numpy as np
    from edgeloop.federated.device import Head, TrainConfig, encode_update, train_head, wire_bytes
    from edgeloop.monitor.sketch import FeedbackStore
    from edgeloop.federated.device import feedback_features
    rng = np.random.default_rng(0)
    store = FeedbackStore(2)
    for i in range(40):
        store.record(f"p{i}", 0, inputs=rng.normal(size=3) + (i % 2) * 3)
        store.feedback(f"p{i}", i % 2)
    x, y = feedback_features(store)
    r = train_head(Head.zeros(3, 2), x, y, TrainConfig(epochs=20, lr=0.1))
    enc = encode_update(r.head.to_arrays(), "int8")
    loaded = sorted({m.split(".")[0] for m in sys.modules} & set(_Block.BLOCKED))
    print(json.dumps({"acc": r.head.evaluate(x, y)[1], "bytes": wire_bytes(enc),
                      "loaded": loaded}))
    """
)


def test_the_head_trainer_runs_without_torch_onnx_or_flower() -> None:
    child = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120
    )
    assert child.returncode == 0, child.stderr
    out = json.loads(child.stdout.strip().splitlines()[-1])
    assert out["loaded"] == [] and out["acc"] > 0.9 and out["bytes"] == 6 + 2 + 8
