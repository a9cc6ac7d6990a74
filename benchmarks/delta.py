"""Delta updates: bytes a device downloads for an update, full bundle vs delta, and the cost of
applying the delta on the device.

Models: the zoo CNN (``cnn``) and a zoo MobileNet of >= 1 MB (``mobilenet``, width 0.5,
10 classes, 96x96 input), random weights (bytes, not accuracy, are measured). Changes:

* ``head``: version 2 re-initialises the classifier only (a fine-tuned head);
* ``requant``: version 1 is the model quantized to int8 per tensor (onnxruntime dynamic
  quantization), version 2 the same fp32 weights quantized again with per-channel scales.
  onnxruntime's dynamic quantization applies per-channel scales to MatMul/Gemm weights only,
  so this re-quantizes one layer, the classifier (the issue's "a re-quantized layer");
* ``round`` (worst case, not in the goal): every weight moves a little, as after a federated
  round or a full fine-tune: nearly every byte changes and the delta is close to the bundle.

For each case a real TUF repository is written (``edgeloop.update.Repository``): release v1,
release v2 with ``write_deltas`` (what ``edgeloop release --deltas`` does). Bytes downloaded
per device, everything counted: the TUF metadata a device fetches for an update (timestamp,
snapshot, targets; the same for both paths, and the targets listing includes the delta
entries), the wrapped data key (the ``/v1/keys`` answer), and the bundle or the delta.
``ratio`` = delta_bytes / full_bytes. Goal (issue 16): ratio < 5 % for a head-only update of a
model >= 1 MB.

On the device, in a fresh child process (so peak RSS is its own): decrypt the running bundle,
apply the delta (``bundle.apply_delta``: rebuild, check hashes, re-encrypt), report wall time
and peak RSS (``VmHWM``); and as a baseline the same child only decrypting the base bundle
(``load_base_s``, ``load_base_peak_rss_mb``): the difference is what applying costs.

    python benchmarks/delta.py            # about 1 minute on a quiet 2-core machine

Prints a table and writes ``benchmarks/results/delta.json`` (keys per case: model,
model_bytes, change, full_bytes, delta_bytes, ratio, and more).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "delta.json"
MiB = 1 << 20


def export(model: Any, shape: tuple[int, ...]) -> bytes:
    import torch

    from edgeloop.zoo import torch_to_onnx

    buf = io.BytesIO()
    model.eval()
    torch_to_onnx(model, (torch.zeros(shape),), buf, input_names=["x"], output_names=["y"])
    return buf.getvalue()


def head_versions(arch: str) -> tuple[bytes, bytes, bytes]:
    """(v1, v2, v3) ONNX bytes: v2 has a new classifier, v3 every weight of v2 nudged."""
    import torch

    from edgeloop.zoo import build_model

    if arch == "cnn":
        kw: dict[str, Any] = {"in_channels": 1, "num_classes": 10}
        shape: tuple[int, ...] = (1, 1, 28, 28)
    else:
        kw = {"in_channels": 3, "num_classes": 10, "width": 0.5, "input_size": 96}
        shape = (1, 3, 96, 96)
    torch.manual_seed(0)
    m = build_model(arch, **kw)
    v1 = export(m, shape)
    torch.manual_seed(1)
    head = m.classifier if hasattr(m, "classifier") else m.fc
    for p in head.modules():
        if hasattr(p, "reset_parameters"):
            p.reset_parameters()
    v2 = export(m, shape)
    with torch.no_grad():
        for w in m.parameters():
            w.add_(1e-3 * torch.randn_like(w))
    return v1, v2, export(m, shape)


def requant_versions(fp32: bytes) -> tuple[bytes, bytes]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = []
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "m.onnx"
        src.write_bytes(fp32)
        for per_channel in (False, True):
            dst = Path(d) / f"q{int(per_channel)}.onnx"
            quantize_dynamic(src, dst, per_channel=per_channel, weight_type=QuantType.QInt8)
            out.append(dst.read_bytes())
    return out[0], out[1]


def measure(
    name: str, change: str, v1: bytes, v2: bytes, work: Path, keys_dir: Path
) -> dict[str, Any]:
    from edgeloop.artifacts import ModelCard
    from edgeloop.bundle import (
        generate_encryption_key,
        load_encryption_key,
        load_signing_key,
        load_trust,
        pack,
        save_private_key,
        unwrap_data_key,
        verify,
        wrap_data_key,
    )
    from edgeloop.protocol import WrappedKey
    from edgeloop.update import Repository

    sign = load_signing_key(keys_dir / "release.pem")
    fleet = load_encryption_key(keys_dir / "fleet.pem")
    case = work / f"{name}-{change}"
    case.mkdir()
    paths = []
    for version, model in ((1, v1), (2, v2)):
        b = pack(model, ModelCard(name=name, sha256=""), version, sign, [fleet.public_key()])
        p = case / f"{name}-{version}.elb"
        p.write_bytes(b)
        paths.append(p)
    repo = Repository(case / "repo", keys_dir)
    r1 = repo.release(paths[0])
    r2 = repo.release(paths[1])
    t0 = time.perf_counter()
    deltas = repo.write_deltas(r2.path, sign, fleet)
    make_s = time.perf_counter() - t0
    meta = repo.metadata_dir
    tgt, snap, ts = repo.current()
    metadata = (
        (meta / "timestamp.json").stat().st_size
        + (meta / f"{snap.signed.version}.snapshot.json").stat().st_size
        + (meta / f"{tgt.signed.version}.targets.json").stat().st_size
    )
    device = generate_encryption_key()
    save_private_key(case / "device.pem", device)
    m2 = verify(paths[1].read_bytes(), load_trust(keys_dir))
    rcpt = wrap_data_key(unwrap_data_key(m2.encryption, fleet), device.public_key())
    key_json = len(json.dumps(WrappedKey(target=r2.path, recipient=rcpt).to_dict()).encode())
    m1 = verify(paths[0].read_bytes(), load_trust(keys_dir))
    r1cpt = wrap_data_key(unwrap_data_key(m1.encryption, fleet), device.public_key())
    (case / "recipient1.json").write_text(json.dumps(r1cpt))
    (case / "recipient2.json").write_text(json.dumps(rcpt))
    full = r2.length + metadata + key_json
    row: dict[str, Any] = {
        "model": name,
        "model_bytes": len(v2),
        "change": change,
        "bundle_bytes": r2.length,
        "metadata_bytes": metadata,
        "key_bytes": key_json,
        "full_bytes": full,
        "delta_file_bytes": None,
        "delta_bytes": full,
        "ratio": 1.0,
        "make_delta_s": round(make_s, 3),
    }
    if deltas:
        d = deltas[0]
        delta_path = case / "delta.eld"
        delta_path.write_bytes(repo.target_bytes(d.path))
        row["delta_file_bytes"] = d.length
        row["delta_bytes"] = d.length + metadata + key_json
        row["ratio"] = round(row["delta_bytes"] / full, 4)
        row.update(child(case, keys_dir, paths[0], delta_path, apply=True))
        base = child(case, keys_dir, paths[0], delta_path, apply=False)
        row["load_base_s"], row["load_base_peak_rss_mb"] = base["apply_s"], base["peak_rss_mb"]
    else:
        row["note"] = "no delta smaller than the bundle: devices take the full bundle"
    _ = r1
    return row


def child(case: Path, keys_dir: Path, base: Path, delta: Path, apply: bool) -> dict[str, Any]:
    args = [sys.executable, __file__, "--child", str(case), str(keys_dir), str(base), str(delta)]
    if not apply:
        args.append("--load-only")
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    data: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return data


def run_child(case: Path, keys_dir: Path, base: Path, delta: Path, load_only: bool) -> None:
    """On the device: decrypt the running bundle, apply the delta (timed, peak RSS)."""
    from edgeloop.bundle import apply_delta, load_encryption_key, load_trust, open_bundle

    trust = load_trust(keys_dir)
    key = load_encryption_key(case / "device.pem")
    r1 = json.loads((case / "recipient1.json").read_text())
    r2 = json.loads((case / "recipient2.json").read_text())
    t0 = time.perf_counter()
    _, model, _ = open_bundle(base, trust, key, recipient=r1)
    if not load_only:
        rebuilt = apply_delta(
            delta.read_bytes(), base.read_bytes(), model, trust, key, recipient=r2,
            installed_version=1,
        )  # fmt: skip
        assert len(rebuilt) > 0
    dt = time.perf_counter() - t0
    print(json.dumps({"apply_s": round(dt, 3), "peak_rss_mb": round(peak_rss_mb(), 1)}))


def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM (``ru_maxrss`` would report the parent's peak, which a
    forked child inherits across exec on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def table(rows: list[dict[str, Any]]) -> str:
    head = "| model | model bytes | change | full bytes | delta bytes | ratio | apply s | peak MB |"
    lines = [head, "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['model_bytes']:,} | {r['change']} | {r['full_bytes']:,} | "
            f"{r['delta_bytes']:,} | {100 * r['ratio']:.2f} % | {r.get('apply_s', '-')} | "
            f"{r.get('peak_rss_mb', '-')} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="cnn,mobilenet")
    ap.add_argument("--changes", default="head,requant,round")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--child", nargs=4, metavar=("CASE", "KEYS", "BASE", "DELTA"))
    ap.add_argument("--load-only", action="store_true")
    args = ap.parse_args()
    if args.child:
        case, keys_dir, base, delta = map(Path, args.child)
        run_child(case, keys_dir, base, delta, args.load_only)
        return
    from edgeloop.update import init_keys

    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime.quantization's pre-processing hint
    start = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgeloop-delta-bench-") as tmp:
        work = Path(tmp)
        init_keys(work / "keys")
        for arch in args.models.split(","):
            v1, v2, v3 = head_versions(arch)
            for change in args.changes.split(","):
                if change == "head":
                    rows.append(measure(arch, "head", v1, v2, work, work / "keys"))
                elif change == "requant":
                    q1, q2 = requant_versions(v1)
                    rows.append(measure(arch, "requant", q1, q2, work, work / "keys"))
                elif change == "round":
                    rows.append(measure(arch, "round", v2, v3, work, work / "keys"))
                else:
                    raise SystemExit(f"--changes: unknown change {change!r} (head, requant, round)")
                print(rows[-1], flush=True)
    out = {
        "benchmark": "delta",
        "rows": rows,
        "cases": rows,
        "goal": "head-only update of a model >= 1 MB: delta_bytes < 5 % of full_bytes",
        "seconds": round(time.perf_counter() - start, 1),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_before": os.environ.get("BENCH_LOAD_BEFORE"),
        "load_after": os.getloadavg()[0],
    }
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
