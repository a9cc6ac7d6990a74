"""``edgeloop registry``: push, list, show, alias, lineage, attach, eval, pull, verify, gc.

Where the registry lives: ``--db URL`` (default ``$EDGELOOP_DB``, else SQLite in the data dir)
and ``--data DIR`` (default ``$EDGELOOP_DATA``, else the user data dir), given before or after
the verb. SQLAlchemy loads only when a verb runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from edgeloop.errors import InputError

if TYPE_CHECKING:
    from edgeloop.registry import LineageNode, Registry, VersionInfo

app = typer.Typer(
    help="Model registry: versions, cards, bundles, evaluations, aliases and lineage.",
    no_args_is_help=True,
)

_DB_HELP = "Database URL (sqlite:///file.db, postgresql+psycopg://...); default: $EDGELOOP_DB."
_DATA_HELP = "Directory for the registry's blobs; default: $EDGELOOP_DATA or the user data dir."


@app.callback()
def _options(
    ctx: typer.Context,
    db: str | None = typer.Option(None, "--db", help=_DB_HELP),
    data: Path | None = typer.Option(None, "--data", help=_DATA_HELP),
) -> None:
    ctx.obj = {"db": db, "data": data}


def _open(ctx: typer.Context, db: str | None, data: Path | None) -> Registry:
    from edgeloop.registry import Registry

    given = ctx.obj or {}
    return Registry(db or given.get("db"), data or given.get("data"))


def _db_opt() -> Any:
    return typer.Option(None, "--db", help=_DB_HELP)


def _data_opt() -> Any:
    return typer.Option(None, "--data", help=_DATA_HELP)


def _requirements(items: list[str], where: str) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; a comma makes a list, and ``isa`` is always a list."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{where} {item!r}: expected KEY=VALUE, e.g. isa=avx512_vnni")
        key = key.strip()
        parts = [v.strip() for v in value.split(",") if v.strip()]
        out[key] = parts if key == "isa" or len(parts) > 1 else value.strip()
    return out


def _card_beside(model_file: Path) -> Path | None:
    """``kws.card.json`` or ``kws.onnx.card.json`` next to ``kws.onnx``, if there is one."""
    for candidate in (
        model_file.with_suffix(".card.json"),
        model_file.with_name(model_file.name + ".card.json"),
    ):
        if candidate.is_file():
            return candidate
    return None


@app.command()
def push(
    ctx: typer.Context,
    model_file: Path = typer.Argument(..., help="The model file (ONNX) to store."),
    name: str = typer.Option(..., "--name", "-n", help="Model name in the registry."),
    card: Path | None = typer.Option(
        None, "--card", help="ModelCard JSON; default: MODEL.card.json beside the model if any."
    ),
    version: int | None = typer.Option(
        None, "--version", "-v", help="Explicit version (must be above the newest); default next."
    ),
    bundle: list[Path] = typer.Option([], "--bundle", help="A bundle (.elb) of this version."),
    variant: list[str] = typer.Option(
        [], "--variant", help="Variant name of each --bundle, in order (e.g. int8-vnni)."
    ),
    require: list[str] = typer.Option(
        [], "--require", help="VARIANT:KEY=VALUE requirement added to a bundle variant."
    ),
    alias: str | None = typer.Option(None, "--alias", help="Point this alias at the new version."),
    reason: str = typer.Option("", "--reason", help="Why (recorded in the alias history)."),
    description: str = typer.Option("", "--description", help="Free text about this version."),
    as_json: bool = typer.Option(False, "--json", help="Print the version as JSON."),
    db: str | None = _db_opt(),
    data: Path | None = _data_opt(),
) -> None:
    """Store MODEL_FILE as the next version of --name, with its card and bundles."""
    if len(variant) > len(bundle) or (len(bundle) > 1 and len(variant) != len(bundle)):
        raise InputError(
            f"got {len(bundle)} --bundle and {len(variant)} --variant: give one --variant per "
            "--bundle (a single bundle may omit it: variant 'default')"
        )
    names = variant or ["default"] * len(bundle)
    per_variant: dict[str, list[str]] = {n: [] for n in names}
    for item in require:
        which, sep, pair = item.partition(":")
        if not sep or which not in per_variant:
            raise InputError(
                f"--require {item!r}: expected VARIANT:KEY=VALUE with VARIANT one of "
                f"{', '.join(names) or '(no bundles given)'}"
            )
        per_variant[which].append(pair)
    specs = [
        (path, n, _requirements(per_variant[n], "--require"))
        for path, n in zip(bundle, names, strict=True)
    ]
    card = card or _card_beside(model_file)
    with _open(ctx, db, data) as reg:
        same = _already_pushed(reg, model_file, name) if version is None else None
        if same is None:
            v = reg.push(
                model_file,
                name,
                card=card,
                version=version,
                bundles=specs,
                alias=alias,
                reason=reason,
                description=description,
            )
        else:
            v = _complete(reg, same, specs, alias, reason)
    if as_json:
        from edgeloop.cli._console import print_json

        print_json(v.to_dict())
        return
    from edgeloop.cli._console import console

    extra = [f"card {card.name}" if card else "no card"]
    extra += [f"{len(v.bundles)} bundle(s)"] if v.bundles else []
    extra += [f"alias {', '.join(v.aliases)}"] if v.aliases else []
    done = "pushed" if same is None else "already pushed, same sha256:"
    console.print(f"{done} [bold]{v.ref}[/] sha256 {v.artifact.sha256[:16]} ({'; '.join(extra)})")


def _already_pushed(reg: Any, model_file: Path, name: str) -> Any:
    """The newest version of ``name`` whose model file has ``model_file``'s bytes, or None.

    Pushing the same file again (a re-run script, the README tour twice) is not a new version:
    it would make digits@3 a copy of digits@1 and the bundles built for @2 fit no version.
    """
    from edgeloop.artifacts import sha256_file

    if not model_file.is_file():
        return None  # push reports the missing file
    digest = sha256_file(model_file)
    same = [v for v in reg.find(digest) if v.model == name and v.artifact.sha256 == digest]
    return max(same, key=lambda v: v.version) if same else None


def _complete(
    reg: Any, v: Any, specs: list[tuple[Path, str, dict[str, Any]]], alias: str | None, reason: str
) -> Any:
    """Attach the bundles and alias a re-push names that ``v`` lacks; then ``v`` as it is now."""
    from edgeloop.artifacts import sha256_file

    have = {b.sha256 for b in v.bundles}
    for path, variant, reqs in specs:
        if not (path.is_file() and sha256_file(path) in have):  # add_bundle reports a missing file
            reg.add_bundle(v.ref, path, variant, reqs)
    if alias is not None and alias not in v.aliases:
        reg.set_alias(v.ref, alias, reason=reason)
    return reg.resolve(v.ref)


@app.command("list")
def list_(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    db: str | None = _db_opt(),
    data: Path | None = _data_opt(),
) -> None:
    """Every model with its versions and aliases."""
    with _open(ctx, db, data) as reg:
        models = reg.list_models()
    if as_json:
        from edgeloop.cli._console import print_json

        print_json([{**m.to_dict(), "latest": m.latest} for m in models])
        return
    from edgeloop.cli._console import console, table

    if not models:
        console.print("the registry is empty: add a model with `edgeloop registry push`")
        return
    rows = [
        (
            m.name,
            m.latest,
            len(m.versions),
            ", ".join(f"{a}->{v}" for a, v in m.aliases.items()),
            m.created_at.strftime("%Y-%m-%d %H:%M"),
        )
        for m in models
    ]
    table("models", ["name", "latest", "versions", "aliases", "created"], rows)


def _show_version(v: VersionInfo) -> None:
    from edgeloop.cli._console import console, table

    console.print(f"[bold]{v.ref}[/]  pushed {v.created_at:%Y-%m-%d %H:%M} by {v.created_by}")
    a = v.artifact
    console.print(f"  artifact  sha256 {a.sha256}  {a.length} bytes  {a.media_type}")
    if v.aliases:
        console.print(f"  aliases   {', '.join(v.aliases)}")
    if v.description:
        console.print(f"  about     {v.description}")
    if v.card is not None:
        c = v.card
        metrics = ", ".join(f"{k}={val:g}" for k, val in sorted(c.metrics.items()))
        console.print(f"  card      {c.name} ({c.task}, {c.architecture or 'architecture ?'})")
        if metrics:
            console.print(f"  metrics   {metrics}")
        if c.lineage:
            console.print(f"  lineage   {len(c.lineage)} input(s): `edgeloop registry lineage`")
    if v.bundles:
        rows = [(b.variant, b.sha256[:16], b.length, _fmt_reqs(b.requirements)) for b in v.bundles]
        table("bundles", ["variant", "sha256", "bytes", "requirements"], rows)
    if v.evaluations:
        rows2 = [
            (e.metric, f"{e.value:g}", e.dataset or "", (e.dataset_sha256 or "")[:16], e.created_by)
            for e in v.evaluations
        ]
        table("evaluations", ["metric", "value", "dataset", "dataset sha256", "by"], rows2)


def _fmt_reqs(reqs: dict[str, Any]) -> str:
    return " ".join(
        f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in sorted(reqs.items())
    )


@app.command()
def show(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME (the model), NAME@VERSION or NAME@ALIAS."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    db: str | None = _db_opt(),
    data: Path | None = _data_opt(),
) -> None:
    """One version (NAME@VERSION, NAME@ALIAS) or a model and its versions (NAME)."""
    from edgeloop.cli._console import console, print_json, table

    with _open(ctx, db, data) as reg:
        if "@" in ref:
            v = reg.resolve(ref)
            if as_json:
                print_json(v.to_dict())
            else:
                _show_version(v)
            return
        model = reg.get_model(ref)
        versions = reg.list_versions(ref)
    if as_json:
        print_json({**model.to_dict(), "versions": [v.to_dict() for v in versions]})
        return
    console.print(f"[bold]{model.name}[/]  created {model.created_at:%Y-%m-%d %H:%M}")
    rows = [
        (
            v.version,
            v.artifact.sha256[:16],
            v.artifact.length,
            ", ".join(v.aliases),
            ", ".join(b.variant for b in v.bundles),
            f"{v.created_at:%Y-%m-%d %H:%M}",
            v.created_by,
        )
        for v in versions
    ]
    table(None, ["version", "sha256", "bytes", "aliases", "bundles", "pushed", "by"], rows)


@app.command()
def alias(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME@VERSION to point at (NAME with --history)."),
    name: str | None = typer.Argument(None, help="The alias: production, canary, any name."),
    reason: str = typer.Option("", "--reason", help="Why (kept in the history)."),
    history: bool = typer.Option(False, "--history", help="Show the alias's history instead."),
    remove: bool = typer.Option(False, "--remove", help="Remove the alias from the model NAME."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    db: str | None = _db_opt(),
    data: Path | None = _data_opt(),
) -> None:
    """Point ALIAS at NAME@VERSION; or --history NAME [ALIAS]; or --remove NAME ALIAS."""
    from edgeloop.cli._console import console, print_json, table

    if history and remove:
        raise InputError("--history and --remove cannot be used together")
    if (history or remove) and "@" in ref:
        raise InputError(f"--history and --remove take a model NAME, got {ref!r}")
    if not history and name is None:
        raise InputError("missing ALIAS: edgeloop registry alias NAME@VERSION ALIAS")
    with _open(ctx, db, data) as reg:
        if history:
            events = reg.alias_history(ref, name)
            if as_json:
                print_json([e.to_dict() for e in events])
                return
            rows = [
                (
                    f"{e.created_at:%Y-%m-%d %H:%M:%S}",
                    e.alias,
                    e.action,
                    "" if e.from_version is None else e.from_version,
                    "" if e.to_version is None else e.to_version,
                    e.actor,
                    e.reason,
                )
                for e in events
            ]
            title = f"{ref} {name or 'aliases'}: history"
            table(title, ["when", "alias", "action", "from", "to", "by", "reason"], rows)
            return
        assert name is not None
        if remove:
            event = reg.remove_alias(ref, name, reason=reason)
        else:
            event = reg.set_alias(ref, name, reason=reason)
    if as_json:
        print_json(event.to_dict())
        return
    before = "(none)" if event.from_version is None else event.from_version
    after = "(removed)" if event.to_version is None else event.to_version
    console.print(f"{event.model} {event.alias}: {before} -> {after} ({event.action})")


def _tree_label(node: LineageNode) -> str:
    from rich.markup import escape

    label = f"[cyan]{node.role}[/] {node.sha256[:16]}"
    if node.ref:
        label += f" [bold]{node.ref}[/]"
        if node.kind != "version":
            label += f" ({node.kind})"
    else:
        label += f" [dim]{node.kind}[/]"
    if node.name:
        label += f" {escape(node.name)}"
    if node.cycle:
        label += " [yellow](cycle: already shown above)[/]"
    return label


@app.command()
def lineage(
    ctx: typer.Context,
    ref: str = typer.Argument(
        ..., help="NAME@VERSION, NAME@ALIAS or NAME (newest); with --derived also a sha256."
    ),
    derived: bool = typer.Option(
        False, "--derived", help="Walk forward instead: the versions that came from REF."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the tree as JSON."),
    db: str | None = _db_opt(),
    data: Path | None = _data_opt(),
) -> None:
    """Everything a version came from, walked back through the registry (or --derived)."""
    if derived:
        with _open(ctx, db, data) as reg:
            is_hash = len(ref) == 64 and all(c in "0123456789abcdefABCDEF" for c in ref)
            target = ref if "@" in ref or is_hash else reg.resolve(ref).ref
            found = reg.derived_from(target)
        from edgeloop.cli._console import console, print_json, table

        if as_json:
            print_json([{"model": m, "version": v, "role": r} for m, v, r in found])
        elif not found:
            console.print(f"no registered version lists {target} in its lineage")
        else:
            table(
                f"derived from {target}", ["version", "as"], [(f"{m}@{v}", r) for m, v, r in found]
            )
        return
    with _open(ctx, db, data) as reg:
        root = reg.lineage(ref)
    if as_json:
        from edgeloop.cli._console import print_json

        print_json(root.to_dict())
        return
    from rich.tree import Tree

    from edgeloop.cli._console import console

    tree = Tree(_tree_label(root))
    stack = [(root, tree)]
    while stack:
        node, branch = stack.pop()
        for child in node.children:
            stack.append((child, branch.add(_tree_label(child))))
    console.print(tree)


@app.command()
def attach(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME@VERSION the bundle belongs to."),
    bundle: Path = typer.Argument(..., help="The bundle (.elb)."),
    variant: str = typer.Option("default", "--variant", help="Variant name, e.g. int8-vnni."),
    require: list[str] = typer.Option([], "--require", help="KEY=VALUE, e.g. isa=avx512_vnni."),
    db: str | None = _db_opt(),
    data: Path | None = _data_opt(),
) -> None:
    """Attach a bundle (a per-device variant) to an existing version."""
    from edgeloop.cli._console import console

    with _open(ctx, db, data) as reg:
        b = reg.add_bundle(ref, bundle, variant, _requirements(require, "--require"))
    console.print(
        f"attached {b.variant} to {b.model}@{b.version}: sha256 {b.sha256[:16]} "
        f"{_fmt_reqs(b.requirements)}".rstrip()
    )


@app.command("eval")
def eval_(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME@VERSION that was evaluated."),
    metric: str = typer.Argument(..., help="Metric name, e.g. accuracy."),
    value: float = typer.Argument(..., help="Its value."),
    dataset: str | None = typer.Option(None, "--dataset", help="Dataset name."),
    dataset_sha256: str | None = typer.Option(None, "--dataset-sha256", help="Dataset hash."),
    db: str | None = _db_opt(),
    data: Path | None = _data_opt(),
) -> None:
    """Record an evaluation result (metric, value, dataset) for a version."""
    from edgeloop.cli._console import console

    with _open(ctx, db, data) as reg:
        e = reg.add_evaluation(ref, metric, value, dataset=dataset, dataset_sha256=dataset_sha256)
    console.print(f"{e.model}@{e.version} {e.metric}={e.value:g} recorded")


@app.command()
def pull(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME@VERSION, NAME@ALIAS or NAME (newest)."),
    out: Path = typer.Argument(..., help="Where to write the model file."),
    variant: str | None = typer.Option(None, "--variant", help="Write this bundle instead."),
    db: str | None = _db_opt(),
    data: Path | None = _data_opt(),
) -> None:
    """Copy a version's model file (or one of its bundles) out of the registry, hash-checked."""
    from edgeloop.cli._console import console
    from edgeloop.errors import RegistryError

    with _open(ctx, db, data) as reg:
        v = reg.resolve(ref)
        sha = v.artifact.sha256
        if variant is not None:
            match = [b for b in v.bundles if b.variant == variant]
            if not match:
                have = ", ".join(b.variant for b in v.bundles) or "none"
                raise RegistryError(f"{v.ref} has no bundle variant {variant!r} (it has {have})")
            sha = match[0].sha256
        reg.blobs.export(sha, out)
    console.print(f"wrote {out} ({v.ref}, sha256 {sha[:16]})")


@app.command()
def verify(
    ctx: typer.Context,
    db: str | None = _db_opt(),
    data: Path | None = _data_opt(),
) -> None:
    """Re-hash every stored artifact; exit 44 if any is missing or corrupt."""
    from edgeloop.cli._console import console, err_console
    from edgeloop.errors import IntegrityError

    with _open(ctx, db, data) as reg:
        problems = reg.verify()
        total = len(reg.blobs.stored())
    if problems:
        for line in problems[:-1]:
            err_console.print(line, markup=False, highlight=False, soft_wrap=True)
        raise IntegrityError(f"{len(problems)} stored artifact(s) failed: {problems[-1]}")
    console.print(f"all {total} stored artifact(s) match their sha256")


@app.command()
def gc(
    ctx: typer.Context,
    min_age: float = typer.Option(
        3600.0, "--min-age", help="Keep unreferenced files younger than this (seconds)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would go; delete nothing."),
    db: str | None = _db_opt(),
    data: Path | None = _data_opt(),
) -> None:
    """Delete stored files no version refers to (left behind by refused pushes)."""
    from edgeloop.cli._console import console

    with _open(ctx, db, data) as reg:
        gone = reg.gc(min_age_s=min_age, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    console.print(f"{verb} {len(gone)} unreferenced file(s)")
    for sha in gone:
        console.print(f"  {sha}")


suite_app = typer.Typer(
    help="Evaluation suites: held-out data every pushed version is scored on.",
    no_args_is_help=True,
)
app.add_typer(suite_app, name="suite")


@suite_app.command("add")
def suite_add(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Model name."),
    data_file: Path = typer.Option(..., "--data-file", "-f", help=".npz with x, y (and segment)."),
    segment_key: str | None = typer.Option(
        None, "--segment-key", help="Array in the .npz naming each row's segment (e.g. region)."
    ),
    metric: str = typer.Option("accuracy", "--metric", help="accuracy or macro_f1."),
    max_drop: float = typer.Option(
        0.01, "--max-drop", help="Largest drop against production a rollout may show."
    ),
    db: str | None = _db_opt(),
    data: Path | None = _data_opt(),
) -> None:
    """Register MODEL's evaluation suite and score the versions its aliases point to."""
    from edgeloop.cli._console import console

    with _open(ctx, db, data) as reg:
        s = reg.set_suite(
            model, data_file, segment_key=segment_key, metric=metric, max_drop=max_drop
        )
    seg = f", segments by {s.segment_key}" if s.segment_key else ""
    console.print(
        f"suite of {s.model}: data sha256 {s.data_sha256[:16]}, {s.metric} may drop at most "
        f"{s.max_drop:g}{seg}"
    )


@suite_app.command("run")
def suite_run(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME@VERSION or NAME@ALIAS to score."),
    db: str | None = _db_opt(),
    data: Path | None = _data_opt(),
) -> None:
    """Score a version on its model's suite and record the result (push does this itself)."""
    from edgeloop.cli._console import console

    with _open(ctx, db, data) as reg:
        scores = reg.run_suite(ref)
    for slice_, (value, rows) in scores.items():
        console.print(f"{ref} {slice_}: {value:.4f} ({rows} rows)")
