"""``pack``: model bytes + card -> one signed, encrypted ``.elb`` bundle (bytes)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from edgeloop.artifacts import Manifest, ModelCard, sha256_bytes
from edgeloop.bundle._crypto import DEFAULT_CHUNK, encrypt_payload
from edgeloop.bundle._format import build_container, canonical_json, sign_envelope
from edgeloop.bundle._selftest import encode_array, synthesize_inputs
from edgeloop.errors import EdgeloopError, InputError, SelfTestError

if TYPE_CHECKING:
    from edgeloop.monitor.sketch import MonitorReference

__all__ = ["DEFAULT_MIN_ORT", "pack"]

DEFAULT_MIN_ORT = "1.17"


def pack(
    model: bytes,
    card: ModelCard,
    version: int,
    signing_keys: Ed25519PrivateKey | Sequence[Ed25519PrivateKey],
    recipients: Sequence[X25519PublicKey],
    *,
    name: str | None = None,
    selftest_inputs: Mapping[str, np.ndarray[Any, Any]] | None = None,
    rtol: float = 1e-3,
    atol: float = 1e-5,
    requirements: Mapping[str, Any] | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    created_at: str | None = None,
    reference: MonitorReference | None = None,
) -> bytes:
    """Sign and encrypt ``model`` (ONNX bytes) into a bundle.

    Expected self-test outputs are computed here with onnxruntime; inputs default to
    deterministic tensors synthesized from the model's input specs. ``reference``: the
    monitoring reference (``edgeloop.monitor.sketch.build_reference``) signed into the manifest,
    so a device sketches its windows against it and the server tests them against it.
    """
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise InputError(f"bundle version must be an integer >= 0, got {version!r}")
    keys = [signing_keys] if isinstance(signing_keys, Ed25519PrivateKey) else list(signing_keys)
    if not keys:
        raise InputError("a bundle needs at least one signing key")
    digest = sha256_bytes(model)
    if card.sha256 and card.sha256 != digest:
        raise InputError(
            f"model card {card.name!r} describes sha256 {card.sha256[:16]}, "
            f"but the model's sha256 is {digest[:16]}"
        )
    from edgeloop.runtime import Session

    # the runtime's own loader: a model it cannot load is a ModelFormatError naming the cause
    sess = Session(model, providers=["CPUExecutionProvider"], model_sha256=digest)
    inputs, outputs = sess.inputs, sess.outputs
    card = dataclasses.replace(
        card,
        sha256=digest,
        size_bytes=len(model),
        inputs=card.inputs or inputs,
        outputs=card.outputs or outputs,
    )
    feeds = dict(selftest_inputs or synthesize_inputs({s.name: (s.dtype, s.shape) for s in inputs}))
    missing = sorted({s.name for s in inputs} - set(feeds))
    if missing:
        raise InputError(f"self-test data lacks input(s) {', '.join(missing)}")
    try:
        results = sess.run_unchecked(feeds)
    except EdgeloopError as e:
        raise SelfTestError(f"the model cannot run its self-test inputs: {e}") from e
    selftest = {
        "inputs": {k: encode_array(np.asarray(v)) for k, v in feeds.items()},
        "outputs": {o.name: encode_array(results[o.name]) for o in outputs},
        "rtol": rtol,
        "atol": atol,
    }
    del sess
    if reference is not None:
        _check_reference(reference, results, [o.name for o in outputs])
    encryption, ciphertext = encrypt_payload(model, recipients, chunk_size)
    reqs: dict[str, Any] = {"min_onnxruntime": DEFAULT_MIN_ORT, "isa": []}
    reqs.update(requirements or {})
    manifest = Manifest(
        name=name or card.name,
        version=version,
        model_card=card,
        parts={
            "model": {"sha256": digest, "length": len(model), "format": card.format},
            "payload": {"sha256": sha256_bytes(ciphertext), "length": len(ciphertext)},
        },
        inputs=inputs,
        outputs=outputs,
        selftest=selftest,
        requirements=reqs,
        encryption=encryption,
        created_at=created_at or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        monitor=None if reference is None else reference.to_dict(),
    )
    body = canonical_json(manifest.to_dict())
    return build_container(body, sign_envelope(body, keys), ciphertext)


def _check_reference(
    reference: MonitorReference, results: Mapping[str, Any], outputs: Sequence[str]
) -> None:
    """The reference must fit the model: its classes are the width of an output, and an
    embedding view names an output of the graph."""
    k = len(reference.classes)
    widths = {n: np.asarray(results[n]).reshape(len(np.asarray(results[n])), -1).shape[1]
              for n in outputs if np.asarray(results[n]).ndim >= 1}
    if k not in widths.values():
        raise InputError(f"monitoring reference has {k} classes; no model output has that "
                         f"width ({', '.join(f'{n}: {w}' for n, w in widths.items())})")
    proj = reference.projection
    if proj is not None and proj.source == "embedding" and proj.output not in widths:
        raise InputError(f"monitoring reference watches embedding output {proj.output!r}; the "
                         f"model's outputs are {', '.join(outputs)}")
