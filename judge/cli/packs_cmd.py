"""``judge packs``: list, show, validate, install and remove domain packs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from judge.cli._output import console, emit_json, warn
from judge.errors import JudgeError, PackValidationError, ValidationIssue


@click.group()
def packs() -> None:
    """Domain packs: rubrics and data for a field (healthcare, legal, finance…)."""


def _registry() -> Any:
    from judge.packs import PackRegistry

    return PackRegistry.discover()


def _report_registry_problems(reg: Any) -> None:
    for conflict in reg.conflicts:
        warn(str(conflict))
    for broken in reg.broken.values():
        warn(str(broken))


@packs.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (shape in the help text).")
def list_cmd(as_json: bool) -> None:
    """List every pack judge can see.

    Packs come from the ``judge.packs`` entry points (built-in and pip-installed) and
    from the pack home ($JUDGE_HOME/packs). When a name comes from two sources the
    pack-home copy wins; the clash is shown as a warning and under ``conflicts``.

    \b
    --json prints one object:
      {"packs": [{"name", "version", "title", "domain", "source", "root",
                  "rubrics": <count>}],
       "conflicts": [{"name", "winner", "shadowed": [source, ...]}],
       "broken": [{"name", "source", "error"}]}
    """
    reg = _registry()
    rows = [
        {
            "name": p.name,
            "version": p.version,
            "title": p.manifest.title,
            "domain": p.manifest.domain,
            "source": p.source,
            "root": str(p.root),
            "rubrics": len(p.rubrics),
        }
        for p in (reg.packs[n] for n in sorted(reg.packs))
    ]
    if as_json:
        emit_json({
            "packs": rows,
            "conflicts": [
                {"name": c.name, "winner": c.winner, "shadowed": list(c.shadowed)}
                for c in reg.conflicts
            ],
            "broken": [
                {"name": b.name, "source": b.source, "error": str(b.error)}
                for b in reg.broken.values()
            ],
        })
        _report_registry_problems(reg)
        return
    if not rows:
        console.print("No packs found.")
    width = max([len(r["name"]) for r in rows] + [4])
    for r in rows:
        # Plain lines, not a table: ids and sources stay whole at any terminal width.
        console.print(f"{r['name']:<{width}}  {r['version']:<8} {r['rubrics']:>3} rubrics  "
                      f"{r['title']}  [{r['source']}]", highlight=False, markup=False, soft_wrap=True)
    _report_registry_problems(reg)


def calibration_status(rubric: Any, store: Any) -> list[dict[str, Any]]:
    """The newest stored calibration of each judge model on this exact rubric version."""
    newest: dict[str, Any] = {}
    for cal in store.list_calibrations(rubric.id):
        if cal.rubric_hash != rubric.content_hash:
            continue  # calibrated on another version of the rubric: does not carry over
        if cal.judge_model not in newest or cal.id > newest[cal.judge_model].id:
            newest[cal.judge_model] = cal
    out = []
    for model, cal in sorted(newest.items()):
        primary = cal.figures.get("primary") if isinstance(cal.figures, dict) else None
        out.append({"judge_model": model, "approved": cal.approved, "split": cal.split,
                    "prompt_hash": cal.prompt_hash, "created_at": cal.created_at.isoformat(),
                    "primary": primary})
    return out


def pack_detail(pack: Any, store: Any = None) -> dict[str, Any]:
    """The ``packs show --json`` object for a loaded pack (calibrations read from ``store``)."""
    from judge.packs import data_counts

    rubrics = []
    for r in pack.rubrics:
        rubrics.append({
            "id": r.id,
            "version": r.version,
            "title": r.title,
            "dimension": r.dimension,
            "scale": r.scale.type,
            "hash": r.content_hash,
            "origin": "own" if r.pack == pack.name else "core",
            "checks": [{"id": c.id, "type": c.type, "field": c.field,
                        "description": c.description} for c in r.checks],
            "calibration": calibration_status(r, store) if store is not None else [],
        })
    data = []
    for df in pack.data:
        entry: dict[str, Any] = {
            "file": df.file, "kind": df.kind, "rubric": df.rubric, "format": df.format,
            "provenance": df.provenance, "source": df.source, "license": df.license,
            "description": df.description,
            "items": None, "ratings": None, "raters": None, "error": None,
        }
        try:
            entry.update(data_counts(pack.data_path(df), df))
        except (JudgeError, ValueError, KeyError, TypeError, OSError) as exc:
            entry["error"] = str(exc)
        data.append(entry)
    m = pack.manifest
    return {
        "name": m.name, "version": m.version, "title": m.title, "domain": m.domain,
        "description": m.description, "requires": m.requires, "license": m.license,
        "source": pack.source, "root": str(pack.root), "sources": list(m.sources),
        "rubrics": rubrics, "data": data,
    }


@packs.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (shape in the help text).")
def show_cmd(name: str, as_json: bool) -> None:
    """Show a pack: its rubrics, checks, data files with counts, and sources.

    \b
    --json prints one object:
      {"name", "version", "title", "domain", "description", "requires", "license",
       "source", "root", "sources": [str],
       "rubrics": [{"id", "version", "title", "dimension", "scale", "hash",
                    "origin": "own"|"core",
                    "checks": [{"id", "type", "field", "description"}],
                    "calibration": [{"judge_model", "approved", "split",
                                     "prompt_hash", "created_at", "primary"}]}],
       "data": [{"file", "kind", "rubric", "format", "provenance", "source", "license",
                 "description", "items", "ratings", "raters", "error"}]}
    "calibration" lists, per judge model, the newest calibration stored for this exact
    rubric version (hash); empty when no judge has been calibrated on it. For an items file "items" is its item count; for a ratings
    file "items" is the number of items rated, "ratings" the number of ratings and
    "raters" the number of distinct raters (null where they do not apply). "error" is
    set, and the counts null, when the file does not parse.
    """
    from judge.store import Store

    reg = _registry()
    pack = reg.get(name)
    with Store.open() as store:
        detail = pack_detail(pack, store)
    if as_json:
        emit_json(detail)
        return
    def n(v: Any, unit: str) -> str:
        return "" if v is None else f"{v} {unit}"

    def line(text: str) -> None:
        console.print(text, highlight=False, markup=False, soft_wrap=True)

    line(f"{detail['title']} ({detail['name']} {detail['version']}, domain {detail['domain']})")
    line(f"source: {detail['source']}")
    line(f"root:   {detail['root']}")
    line(f"requires judge {detail['requires']}"
         + (f"; license: {detail['license']}" if detail["license"] else ""))
    line("")
    line(detail["description"])
    line("")
    line(f"rubrics ({len(detail['rubrics'])}):")
    width = max([len(r["id"]) for r in detail["rubrics"]] + [2])
    for r in detail["rubrics"]:
        calibrated = ", ".join(
            f"{c['judge_model']}: {'approved' if c['approved'] else 'not approved'}"
            for c in r["calibration"]) or "not calibrated"
        line(f"  {r['id']:<{width}}  {r['version']:<7} {r['scale']:<11} {r['origin']:<4}  "
             f"hash {r['hash'][:12]}  {calibrated}")
        if r["checks"]:
            line(f"  {'':<{width}}  checks: {', '.join(c['id'] for c in r['checks'])}")
    if detail["data"]:
        line("")
        line(f"data files ({len(detail['data'])}):")
        width = max(len(d["file"]) for d in detail["data"])
        for d in detail["data"]:
            if d["error"]:
                counts = f"error: {d['error']}"
            else:
                counts = ", ".join(x for x in (n(d["items"], "items"), n(d["ratings"], "ratings"),
                                               n(d["raters"], "raters")) if x)
            rated = f" of {d['rubric']}" if d["rubric"] else ""
            line(f"  {d['file']:<{width}}  {d['kind']}{rated} ({d['provenance']}): {counts}")
    if detail["sources"]:
        line("")
        line("sources:")
        for src in detail["sources"]:
            line(f"  - {src}")


def issues_json(issues: list[ValidationIssue]) -> list[dict[str, Any]]:
    """Validation issues as JSON objects (file, path, rule, message, value)."""
    out = []
    for i in issues:
        value = i.value
        try:
            import json

            json.dumps(value)
        except (TypeError, ValueError):
            value = repr(value)
        out.append({"file": i.file, "path": i.path, "rule": i.rule, "message": i.message,
                    "value": value})
    return out


@packs.command("validate")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON (shape in the help text).")
def validate_cmd(path: Path, as_json: bool) -> None:
    """Validate a pack directory: manifest, every rubric, data files, judge version.

    Exits 0 when valid, 2 listing every fault (file, JSON path, rule, value).

    \b
    --json prints {"path", "valid": bool,
                   "issues": [{"file", "path", "rule", "message", "value"}]}
    and exits 2 when "valid" is false.
    """
    from judge.packs import validate_pack

    issues = validate_pack(path)
    if as_json:
        emit_json({"path": str(path), "valid": not issues, "issues": issues_json(issues)})
        if issues:
            raise SystemExit(2)
        return
    if issues:
        raise PackValidationError(f"pack {path}", issues)
    console.print(f"ok: pack {path} is valid", highlight=False)


@packs.command("install")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Allow installing an older version over a newer.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (shape in the help text).")
def install_cmd(path: Path, force: bool, as_json: bool) -> None:
    """Install a data-only pack (directory, .tar.gz/.tgz or .zip) into the pack home.

    Nothing from the pack is executed. Unsafe members (absolute paths, '..', links,
    special files, oversized files) are refused before anything is written; the pack is
    validated in a staging directory and moved into place atomically.

    \b
    --json prints {"name", "version", "root", "rubrics": <count>}
    """
    from judge.packs import install_pack

    pack = install_pack(path, force=force)
    if as_json:
        emit_json({"name": pack.name, "version": pack.version, "root": str(pack.root),
                   "rubrics": len(pack.rubrics)})
    else:
        console.print(f"Installed pack {pack.name} {pack.version} into {pack.root} "
                      f"({len(pack.rubrics)} rubrics)", highlight=False)
    for conflict in _registry().conflicts:
        if conflict.name == pack.name:
            warn(str(conflict))


@packs.command("remove")
@click.argument("name")
def remove_cmd(name: str) -> None:
    """Remove a pack installed in the pack home (not a built-in or pip-installed one)."""
    from judge.packs import remove_pack

    root = remove_pack(name)
    console.print(f"Removed pack {name} from {root}", highlight=False)
