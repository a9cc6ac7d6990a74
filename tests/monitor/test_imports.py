"""The device side: ``edgeloop.monitor.sketch`` runs with torch and scipy unimportable."""

import json
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import json, sys
    class _Block:
        BLOCKED = ("torch", "scipy", "pandas", "sklearn", "fastapi", "sqlalchemy", "onnx")
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ImportError(f"{name} is blocked: a device has no {name}")
            return None
    sys.meta_path.insert(0, _Block())
    for name in ("torch", "scipy"):
        try:
            __import__(name)
        except ImportError:
            pass
        else:
            sys.exit(f"{name} imported")
    import numpy as np
    import edgeloop.monitor
    from edgeloop.monitor.sketch import (FeedbackStore, MonitorReference, WindowSketch,
                                         build_reference)
    rng = np.random.default_rng(0)
    ref = build_reference(rng.normal(size=(300, 4)), rng.random((300, 3)),
                          rng.integers(0, 3, 300))
    ref = MonitorReference.from_json(ref.to_json())
    s = WindowSketch(ref)
    p = s.update(rng.normal(size=(5, 4)), rng.random((5, 3)))
    FeedbackStore(3).record("a", 0, float(p[0]))
    loaded = sorted({m.split(".")[0] for m in sys.modules} & set(_Block.BLOCKED))
    print(json.dumps({"n": s.n, "bytes": s.size_bytes(), "loaded": loaded}))
    """
)


def test_sketch_runs_with_torch_and_scipy_unimportable() -> None:
    child = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120
    )
    assert child.returncode == 0, child.stderr
    out = json.loads(child.stdout.strip().splitlines()[-1])
    assert out["n"] == 5 and out["loaded"] == [] and out["bytes"] < 2000


def test_the_monitor_package_imports_neither_layer() -> None:
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, edgeloop.monitor; "
            "print(sorted(m for m in sys.modules if m.startswith('edgeloop.monitor.')))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "[]"
