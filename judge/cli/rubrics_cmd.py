"""``judge rubrics``: list, show and validate rubrics (core and from packs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from judge.cli._output import console, emit_json, warn
from judge.errors import RubricError, ValidationIssue


@click.group()
def rubrics() -> None:
    """Rubrics: what a judge grades, on which scale, with which instructions."""


def _row(r: Any) -> dict[str, Any]:
    return {"id": r.id, "version": r.version, "dimension": r.dimension, "title": r.title,
            "scale": r.scale.type, "pack": r.pack, "hash": r.content_hash}


@rubrics.command("list")
@click.option("--pack", "-p", "pack_name", help="Only the rubrics this pack provides.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (shape in the help text).")
def list_cmd(pack_name: str | None, as_json: bool) -> None:
    """List rubrics: the core ones and every pack's, or those one pack provides.

    \b
    --json prints {"rubrics": [{"id", "version", "dimension", "title", "scale",
                                "pack", "hash"}]}
    "pack" is the pack part of the id (null for a core rubric); with --pack the list
    includes the core rubrics the pack reuses. "scale" is likert, binary,
    categorical or pairwise; "hash" is the rubric's sha256 content hash.
    """
    from judge.packs import PackRegistry, all_rubrics

    reg = PackRegistry.discover()
    if pack_name is not None:
        found = list(reg.get(pack_name).rubrics)
    else:
        for broken in reg.broken.values():
            warn(str(broken))
        found = sorted(all_rubrics(reg).values(), key=lambda r: r.id)
    rows = [_row(r) for r in found]
    if as_json:
        emit_json({"rubrics": rows})
        return
    width = max([len(r["id"]) for r in rows] + [2])
    for r in rows:
        # Plain lines, not a table: ids stay whole at any terminal width.
        console.print(f"{r['id']:<{width}}  {r['version']:<7} {r['scale']:<11} "
                      f"{r['hash'][:12]}  {r['dimension']}", highlight=False, markup=False,
                      soft_wrap=True)


@rubrics.command("show")
@click.argument("rubric_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (shape in the help text).")
def show_cmd(rubric_id: str, as_json: bool) -> None:
    """Show one rubric in full.

    \b
    --json prints the rubric document (every field of the rubric file, as in
    judge/schemas/rubric.schema.json) plus "hash", its content hash.
    """
    from judge.packs import find_rubric

    rubric = find_rubric(rubric_id)
    doc = rubric.model_dump(mode="json", by_alias=True)
    doc["hash"] = rubric.content_hash
    if as_json:
        emit_json(doc)
        return
    import yaml

    console.print(f"# {rubric.id} {rubric.version}  hash {rubric.content_hash}", highlight=False)
    body = {k: v for k, v in doc.items() if k != "hash"}
    console.print(yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=88),
                  highlight=False, markup=False)


def _rubric_files(paths: tuple[Path, ...]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
        else:
            files.append(p)
    return files


@rubrics.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON (shape in the help text).")
def validate_cmd(paths: tuple[Path, ...], as_json: bool) -> None:
    """Validate rubric files (a directory means every *.yaml in it).

    Exits 0 when all are valid, 2 listing every fault (file, JSON path, rule, value).

    \b
    --json prints {"valid": bool, "files": [{"file", "valid", "id", "hash",
                   "issues": [{"file", "path", "rule", "message", "value"}]}]}
    """
    from judge.cli.packs_cmd import issues_json
    from judge.rubrics import check_rubric_file

    results = []
    all_issues: list[ValidationIssue] = []
    for f in _rubric_files(paths):
        rubric, issues = check_rubric_file(f)
        all_issues += issues
        results.append({
            "file": str(f), "valid": not issues,
            "id": rubric.id if rubric else None,
            "hash": rubric.content_hash if rubric else None,
            "issues": issues_json(issues),
        })
    if as_json:
        emit_json({"valid": not all_issues, "files": results})
        if all_issues:
            raise SystemExit(2)
        return
    if all_issues:
        raise RubricError(f"rubric file(s) {', '.join(map(str, paths))}", all_issues)
    for r in results:
        console.print(f"ok: {r['file']} ({r['id']})", highlight=False)
