"""``edgeloop pack``, ``verify`` and ``release``: signed, encrypted bundles and their channel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from edgeloop.cli._secrets import PASSPHRASE_ENV_OPTION, PASSPHRASE_OPTION, read_passphrase
from edgeloop.errors import DataError, FileError, InputError


def _load_card(path: Path, model: Path) -> Any:
    from edgeloop._io import read_bytes
    from edgeloop.artifacts import ModelCard

    try:
        data = json.loads(read_bytes(path, "model card"))
    except (ValueError, UnicodeDecodeError) as e:
        raise FileError(f"model card {str(path)!r} is not JSON ({e})") from e
    if not isinstance(data, dict):
        raise InputError(f"model card {str(path)!r}: expected a JSON object")
    data.setdefault("name", model.stem)
    data.setdefault("sha256", "")  # pack fills it in from the model
    return ModelCard.from_dict(data)


def _same_bundle(
    out: Path,
    model: bytes,
    name: str,
    version: int,
    key: Any,
    recipients: list[Any],
    requirements: dict[str, Any],
) -> bool:
    """Whether ``out`` is already this release: the same model bytes, name and version, signed
    by ``key``, encrypted to the same recipients, with the same ISA/ORT requirements.

    Packing again would write different bytes (fresh data key and nonces), which `release`
    rightly refuses under a published version; keeping the file makes a re-run harmless.
    """
    from edgeloop._io import read_bytes
    from edgeloop.artifacts import sha256_bytes
    from edgeloop.bundle import Trust, key_id, verify
    from edgeloop.errors import EdgeloopError

    if not out.is_file():
        return False
    try:
        manifest = verify(read_bytes(out, "bundle"), Trust.from_keys([key.public_key()]))
    except EdgeloopError:  # not a bundle, or not signed by this key: pack anew
        return False
    have = manifest.requirements
    kids = {r.get("kid") for r in manifest.encryption.get("recipients", [])}
    return (
        manifest.name == name
        and manifest.version == version
        and manifest.parts.get("model", {}).get("sha256") == sha256_bytes(model)
        and kids == {key_id(r) for r in recipients}
        and sorted(have.get("isa", [])) == requirements.get("isa", [])
        and requirements.get("min_onnxruntime", have.get("min_onnxruntime"))
        == have.get("min_onnxruntime")
    )


def _card_for(card: Path | None, model: Path) -> Any:
    """``--card``, else the card ``edgeloop card``/``export`` left beside the model, else a new
    one made from the model itself (inputs, outputs, hash, params, MACs; no metrics)."""
    from edgeloop.cli._console import err_console
    from edgeloop.runtime import card_path, describe_model

    if card is not None:
        return _load_card(card, model)
    beside = card_path(model)
    if beside.is_file():
        err_console.print(f"card: {beside}", highlight=False)
        return _load_card(beside, model)
    err_console.print(
        f"no --card and no {beside.name}: made a card from the model itself, without metrics"
        f" (edgeloop card {model} --dataset DATA scores it)",
        highlight=False,
        soft_wrap=True,
    )
    from edgeloop.cli.run import graph_reader

    return describe_model(model, graph_stats=graph_reader())


def _load_npz(path: Path) -> dict[str, Any]:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except FileNotFoundError as e:
        raise FileError(f"self-test data {str(path)!r} does not exist") from e
    except (OSError, ValueError) as e:
        raise DataError(f"self-test data {str(path)!r} is not an .npz of arrays ({e})") from e


WIDE = 32  # inputs wider than this are watched through a projection


def _reference(model: bytes, path: Path) -> tuple[bytes, Any]:
    """The model to pack and its monitoring reference from the .npz at ``path``: for wide
    inputs the penultimate activations become a graph output (needs onnx; without it, or when
    the graph has no MatMul/Gemm head, the reference watches a PCA of the raw input)."""
    import numpy as np

    from edgeloop.bundle import model_reference

    arrays = _load_npz(path)
    if "x" not in arrays:
        raise DataError(f"reference data {str(path)!r}: expected an array 'x' (and 'y'), got "
                        f"{sorted(arrays)}")
    x, y = arrays["x"], arrays.get("y")
    embedding = None
    if int(np.prod(x.shape[1:])) > WIDE:
        try:
            from edgeloop.optimize import add_embedding_output

            model, embedding = add_embedding_output(model)
        except (ImportError, InputError):
            embedding = None  # the reference falls back to a PCA of the raw input
    return model, model_reference(model, x, y, embedding_output=embedding)


def pack(
    model: Path = typer.Argument(..., help="The ONNX model to bundle."),
    card: Path | None = typer.Option(
        None,
        "--card",
        help="ModelCard JSON (default: MODEL.card.json if there, else one made from the model).",
    ),
    version: int = typer.Option(..., "--version", help="Monotonic bundle version."),
    sign: Path = typer.Option(..., "--sign", help="Ed25519 release key (KEYS/release.pem)."),
    encrypt_to: list[Path] = typer.Option(
        ..., "--encrypt-to", help="X25519 public key of a recipient (repeatable)."
    ),
    out: Path = typer.Option(..., "--out", help="Bundle file to write (.elb)."),
    selftest_data: Path | None = typer.Option(
        None, "--selftest-data", help=".npz of self-test inputs (default: synthesized)."
    ),
    name: str | None = typer.Option(None, "--name", help="Bundle name (default: the card's)."),
    require_isa: list[str] = typer.Option(
        [], "--require-isa", help="ISA flag the device must have (repeatable), e.g. avx2."
    ),
    min_onnxruntime: str | None = typer.Option(
        None, "--min-onnxruntime", help="Oldest onnxruntime that may load it."
    ),
    rtol: float = typer.Option(1e-3, "--rtol", help="Self-test relative tolerance."),
    atol: float = typer.Option(1e-5, "--atol", help="Self-test absolute tolerance."),
    reference: Path | None = typer.Option(
        None,
        "--reference",
        help=".npz of held-out inputs 'x' (and labels 'y'): sign a monitoring reference in.",
    ),
    passphrase: bool = PASSPHRASE_OPTION,
    passphrase_env: str | None = PASSPHRASE_ENV_OPTION,
) -> None:
    """Sign and encrypt MODEL into one bundle file."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

    from edgeloop._io import atomic_write_bytes, read_bytes
    from edgeloop.bundle import load_public_key, load_signing_key
    from edgeloop.bundle import pack as pack_bundle
    from edgeloop.cli._console import console
    from edgeloop.errors import KeyError_

    secret = read_passphrase(passphrase, passphrase_env)
    key = load_signing_key(sign, secret)
    recipients = []
    for p in encrypt_to:
        pub = load_public_key(p)
        if not isinstance(pub, X25519PublicKey):
            raise KeyError_(f"--encrypt-to {str(p)!r} is an Ed25519 key, expected X25519")
        recipients.append(pub)
    reqs: dict[str, Any] = {}
    if require_isa:
        reqs["isa"] = sorted(set(require_isa))
    if min_onnxruntime:
        reqs["min_onnxruntime"] = min_onnxruntime
    model_bytes = read_bytes(model, "model")
    ref = None
    if reference is not None:
        model_bytes, ref = _reference(model_bytes, reference)
        console.print(
            f"monitoring reference: {len(ref.features)} feature(s)"
            + (f" ({ref.projection.source} view)" if ref.projection else ""),
            highlight=False,
        )
    model_card = _card_for(card, model)
    if _same_bundle(out, model_bytes, name or model_card.name, version, key, recipients, reqs):
        console.print(
            f"{out} already holds {name or model_card.name} v{version} of this model, signed by"
            " this key for these recipients: kept it (delete it to pack again)",
            markup=False,
            highlight=False,
        )
        return
    data = pack_bundle(
        model_bytes,
        model_card,
        version,
        key,
        recipients,
        name=name,
        selftest_inputs=_load_npz(selftest_data) if selftest_data else None,
        rtol=rtol,
        atol=atol,
        requirements=reqs,
        reference=ref,
    )
    atomic_write_bytes(out, data, mode=0o644)  # signed and encrypted: fine to publish
    console.print(
        f"wrote {out} ({len(data)} bytes), version {version}, {len(recipients)} recipient(s)"
    )


def verify(
    bundle: Path = typer.Argument(..., help="The bundle (.elb) to check."),
    trust: Path = typer.Option(
        ..., "--trust", help="root.json, a keys directory, or a release public key."
    ),
    installed_version: int | None = typer.Option(
        None, "--installed-version", help="Refuse versions older than this one."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Check a bundle's signature, hashes and version; print its manifest."""
    from edgeloop._io import read_bytes
    from edgeloop.bundle import load_trust
    from edgeloop.bundle import verify as verify_bundle
    from edgeloop.cli._console import print_json, table

    m = verify_bundle(
        read_bytes(bundle, "bundle"), load_trust(trust), installed_version=installed_version
    )
    if as_json:
        print_json(m.to_dict())
        return
    card = m.model_card
    rows = [
        ("name", m.name),
        ("version", m.version),
        ("model sha256", m.parts["model"]["sha256"]),
        ("model bytes", m.parts["model"]["length"]),
        ("inputs", ", ".join(f"{s.name}:{s.dtype}{list(s.shape)}" for s in m.inputs)),
        ("outputs", ", ".join(f"{s.name}:{s.dtype}{list(s.shape)}" for s in m.outputs)),
        ("recipients", ", ".join(r["kid"][:16] for r in m.encryption.get("recipients", []))),
        ("requirements", json.dumps(m.requirements, sort_keys=True)),
        ("lineage", ", ".join(f"{r.role}:{r.sha256[:12]}" for r in card.lineage) or "-"),
        ("created", m.created_at),
    ]
    table(f"verified bundle {bundle.name}", ["field", "value"], rows)


def release(
    bundle: Path | None = typer.Argument(None, help="The bundle (.elb) to publish."),
    repo: Path = typer.Option(..., "--repo", help="TUF repository directory (created if new)."),
    keys: Path = typer.Option(..., "--keys", help="The keys directory (edgeloop keys init)."),
    target: str | None = typer.Option(
        None, "--target", help="Target path (default NAME/VERSION/FILE)."
    ),
    revoke: str | None = typer.Option(
        None,
        "--revoke",
        help="NAME@VERSION: remove that release from the signed targets; no device runs it.",
    ),
    deltas: bool = typer.Option(
        False,
        "--deltas",
        help="Also write and list deltas to this bundle from the model's other listed versions "
        "(needs KEYS/release.pem and KEYS/fleet.pem).",
    ),
    field: Path | None = typer.Option(
        None,
        "--field",
        help="Device inventory JSON (edgeloop fleet devices --json): write deltas only from "
        "the bundles devices run (implies --deltas).",
    ),
    passphrase: bool = PASSPHRASE_OPTION,
    passphrase_env: str | None = PASSPHRASE_ENV_OPTION,
) -> None:
    """Add a verified bundle to the TUF repository (or --revoke a release); re-sign.

    Both sign the targets metadata with the targets key: run them where the offline release
    keys are (the build side), against the repository the fleet server serves. With
    --deltas/--field the release also lists a delta (.eld) from each version in the field.
    """
    from edgeloop.cli._console import console
    from edgeloop.errors import InputError
    from edgeloop.update import KeyRing, Repository

    if (bundle is None) == (revoke is None):
        raise InputError("give a BUNDLE to release or --revoke NAME@VERSION, not both or neither")
    secret = read_passphrase(passphrase, passphrase_env)
    if revoke is not None:
        name, sep, version = revoke.partition("@")
        if not sep or not name or not version.isdigit():
            raise InputError(f"--revoke {revoke!r}: expected NAME@VERSION, e.g. kws@3")
        gone = Repository(repo, KeyRing(keys, secret)).revoke(name, int(version))
        console.print(f"revoked {revoke}: {', '.join(gone)} no longer in the signed targets")
        return
    assert bundle is not None
    installed = None if field is None else _field_bundles(field)
    repository = Repository(repo, KeyRing(keys, secret))
    if deltas or field is not None:  # the keys first: a missing key leaves the repo untouched
        from edgeloop.bundle import load_encryption_key, load_signing_key

        sign_key = load_signing_key(keys / "release.pem", secret)
        fleet_key = load_encryption_key(keys / "fleet.pem", secret)
    published = repository.release(bundle, target)
    console.print(
        f"released {published.path} ({published.name} v{published.version}, sha256 "
        f"{published.sha256[:16]}) as targets version {published.targets_version}"
    )
    if deltas or field is not None:
        written = repository.write_deltas(
            published.path, sign_key, fleet_key, from_bundles=installed
        )
        for d in written:
            console.print(f"delta {d.path}: {d.length} bytes (the bundle: {published.length})")
        if not written:
            console.print("no delta written: no other listed version of this model in the field")


def _field_bundles(path: Path) -> set[str]:
    """The bundle sha256s devices run (installed or known good), from an inventory JSON list."""
    from edgeloop._io import read_bytes

    try:
        rows = json.loads(read_bytes(path, "device inventory"))
    except (ValueError, UnicodeDecodeError) as e:
        raise FileError(f"--field {str(path)!r} is not JSON ({e})") from e
    if isinstance(rows, dict):
        rows = rows.get("devices")
    if not isinstance(rows, list):
        raise InputError(f"--field {str(path)!r}: expected a JSON list of device rows")
    out: set[str] = set()
    for row in rows:
        for key in ("installed", "known_good"):
            entry = row.get(key) if isinstance(row, dict) else None
            if isinstance(entry, dict) and isinstance(entry.get("sha256"), str):
                out.add(entry["sha256"])
    return out
