"""Packs: loading, validation, the registry (entry points + pack home), install and remove."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import uuid
import zipfile
from pathlib import Path

import pytest
import yaml

from judge.errors import PackError, PackValidationError, UnknownNameError
from judge.packs import (
    MAX_FILE_BYTES,
    PackRegistry,
    all_rubrics,
    find_rubric,
    generate_pack_schema,
    get_pack,
    install_pack,
    load_pack,
    remove_pack,
    validate_pack,
)
from judge.rubrics import schema_text

FIXTURES = Path(__file__).parent / "data" / "packs"
ACME = FIXTURES / "acme"


# --- helpers ---------------------------------------------------------------------------


def tree_digest(root: Path) -> str:
    """A hash of every path, type and file content under root ('absent' if none)."""
    if not root.exists():
        return "absent"
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            h.update(str(p.relative_to(root)).encode() + b"\0")
            if p.is_symlink():
                h.update(b"L" + os.readlink(p).encode())
            elif p.is_file():
                h.update(b"F" + p.read_bytes())
            else:
                h.update(b"D")
    return h.hexdigest()


def copy_pack(tmp_path: Path, name: str = "acme", version: str | None = None) -> Path:
    dest = tmp_path / f"src-{uuid.uuid4().hex[:8]}" / name
    shutil.copytree(ACME, dest)
    if version is not None:
        manifest = yaml.safe_load((dest / "pack.yaml").read_text())
        manifest["version"] = version
        (dest / "pack.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    return dest


def make_tar(path: Path, src: Path, prefix: str = "acme") -> Path:
    with tarfile.open(path, "w:gz") as tf:
        tf.add(src, arcname=prefix)
    return path


def make_zip(path: Path, src: Path, prefix: str = "acme") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for p in sorted(src.rglob("*")):
            zf.write(p, f"{prefix}/{p.relative_to(src).as_posix()}")
    return path


def add_tar_member(path: Path, src: Path, extra: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "w:gz") as tf:
        tf.add(src, arcname="acme")
        tf.addfile(extra, io.BytesIO(data) if data else None)
    return path


@pytest.fixture
def pack_home(judge_home: Path) -> Path:
    return judge_home / "packs"


# --- loading and validation -------------------------------------------------------------


def test_load_fixture_pack_resolves_own_and_core_rubrics() -> None:
    pack = load_pack(ACME)
    assert pack.name == "acme" and pack.version == "1.2.0" and pack.kind == "path"
    assert [r.id for r in pack.rubrics] == ["acme/clarity", "acme/refusal", "safety"]
    assert pack.rubric("clarity").id == "acme/clarity"
    core_safety = find_rubric("safety")
    assert pack.rubric("safety").content_hash == core_safety.content_hash
    with pytest.raises(UnknownNameError, match="Did you mean: acme/clarity"):
        pack.rubric("acme/clarty")


def test_valid_fixture_has_no_issues() -> None:
    assert validate_pack(ACME) == []


def _write_rubric(pack: Path, name: str, change) -> None:
    doc = yaml.safe_load((ACME / "rubrics" / "clarity.yaml").read_text())
    doc["id"] = f"acme/{name}"
    change(doc)
    (pack / "rubrics" / f"{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    manifest = yaml.safe_load((pack / "pack.yaml").read_text())
    manifest["rubrics"].append({"file": f"rubrics/{name}.yaml"})
    (pack / "pack.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))


def test_validate_reports_every_rubric_fault_with_file_path_rule(tmp_path: Path) -> None:
    pack = copy_pack(tmp_path)

    def misspell(d):
        d["pass_treshold"] = d.pop("pass_threshold")

    def drop_anchor(d):
        del d["scale"]["anchors"][2]

    def min_over_max(d):
        d["scale"]["min"] = 5

    _write_rubric(pack, "misspelt", misspell)
    _write_rubric(pack, "unanchored", drop_anchor)
    _write_rubric(pack, "inverted", min_over_max)
    issues = validate_pack(pack)
    found = {(Path(i.file).name, i.path, i.rule) for i in issues}
    assert ("misspelt.yaml", "$.pass_treshold", "additionalProperties") in found
    assert ("unanchored.yaml", "$.scale", "semantic") in found
    assert ("inverted.yaml", "$.scale", "semantic") in found
    messages = " ".join(i.message for i in issues)
    assert "missing anchors for [2]" in messages
    assert "min (5) must be less than max (3)" in messages
    with pytest.raises(PackValidationError) as exc:
        load_pack(pack)
    assert len(exc.value.issues) == len(issues)


def test_validate_reports_manifest_data_prefix_core_and_requires_faults(tmp_path: Path) -> None:
    pack = copy_pack(tmp_path)
    manifest = yaml.safe_load((pack / "pack.yaml").read_text())
    manifest["requires"] = ">=99"
    manifest["rubrics"].append({"core": "safty"})
    manifest["rubrics"].append({"file": "rubrics/missing.yaml"})
    manifest["rubrics"].append({"file": "../outside.yaml"})
    manifest["data"].append({"file": "data/nope.jsonl", "kind": "items", "description": "x",
                             "source": "x", "provenance": "synthetic"})
    (pack / "pack.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    # a rubric whose id lacks the pack prefix
    (pack / "rubrics" / "refusal.yaml").write_text(
        (ACME / "rubrics" / "refusal.yaml").read_text().replace("acme/refusal", "refusal"))
    # a data file that does not parse
    (pack / "data" / "items.jsonl").write_text('{"id": "a1", "output": "x"}\n{broken\n')
    issues = validate_pack(pack)
    rules = {(i.path, i.rule) for i in issues}
    assert ("$.requires", "requires") in rules
    assert ("$.rubrics[3].core", "core-exists") in rules
    assert ("$.rubrics[4].file", "exists") in rules
    assert ("$.rubrics[5].file", "inside-pack") in rules
    assert ("$.data[2].file", "exists") in rules
    assert ("$.id", "id-prefix") in rules
    assert any(i.rule == "parse" and "line 2" in i.message for i in issues)
    core_issue = next(i for i in issues if i.rule == "core-exists")
    assert "Did you mean: safety?" in core_issue.message


def test_manifest_misspelled_key_is_reported(tmp_path: Path) -> None:
    pack = copy_pack(tmp_path)
    text = (pack / "pack.yaml").read_text().replace("domain:", "domian:")
    (pack / "pack.yaml").write_text(text)
    issues = validate_pack(pack)
    assert any(i.path == "$.domian" and i.rule == "additionalProperties" for i in issues)
    assert all(i.file.endswith("pack.yaml") for i in issues)


def test_pack_schema_in_sync_with_model() -> None:
    shipped = (Path(__file__).parent.parent / "judge" / "schemas" / "pack.schema.json")
    assert shipped.read_text() == schema_text(generate_pack_schema()), (
        "judge/schemas/pack.schema.json is stale: regenerate it with "
        "judge.rubrics.schema_text(judge.packs.generate_pack_schema())")


# --- install and remove -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dir", "tar.gz", "tgz", "zip"])
def test_install_list_remove(kind: str, tmp_path: Path, pack_home: Path) -> None:
    src = copy_pack(tmp_path)
    if kind == "dir":
        path = src
    elif kind == "zip":
        path = make_zip(tmp_path / "acme.zip", src)
    else:
        path = make_tar(tmp_path / f"acme.{kind}", src)
    pack = install_pack(path)
    assert pack.source == "pack-home" and pack.root == pack_home / "acme"
    assert (pack_home / "acme" / "rubrics" / "clarity.yaml").read_bytes() == (
        src / "rubrics" / "clarity.yaml").read_bytes()
    assert get_pack("acme").version == "1.2.0"
    assert find_rubric("acme/clarity").scale.type == "likert"
    assert "acme/refusal" in all_rubrics()
    # no staging leftovers
    assert sorted(p.name for p in pack_home.iterdir()) == ["acme"]
    remove_pack("acme")
    assert not (pack_home / "acme").exists()
    assert sorted(p.name for p in pack_home.iterdir()) == []
    with pytest.raises(UnknownNameError):
        get_pack("acme")


def test_install_archive_with_pack_yaml_at_top(tmp_path: Path, pack_home: Path) -> None:
    src = copy_pack(tmp_path)
    with tarfile.open(tmp_path / "flat.tar.gz", "w:gz") as tf:
        for p in sorted(src.iterdir()):
            tf.add(p, arcname=p.name)
    assert install_pack(tmp_path / "flat.tar.gz").name == "acme"


def _unsafe_archives(tmp_path: Path, src: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    dotdot = tarfile.TarInfo("acme/../../evil.txt")
    dotdot.size = 4
    out["dotdot-tar"] = add_tar_member(tmp_path / "dotdot.tar.gz", src, dotdot, b"evil")
    absolute = tarfile.TarInfo(str(tmp_path / "abs-evil.txt"))
    absolute.size = 4
    out["absolute-tar"] = add_tar_member(tmp_path / "abs.tar.gz", src, absolute, b"evil")
    link = tarfile.TarInfo("acme/data/passwd")
    link.type = tarfile.SYMTYPE
    link.linkname = "../../../../etc/passwd"
    out["symlink-tar"] = add_tar_member(tmp_path / "link.tar.gz", src, link)
    hard = tarfile.TarInfo("acme/data/hard")
    hard.type = tarfile.LNKTYPE
    hard.linkname = "/etc/passwd"
    out["hardlink-tar"] = add_tar_member(tmp_path / "hard.tar.gz", src, hard)
    dev = tarfile.TarInfo("acme/data/dev")
    dev.type = tarfile.CHRTYPE
    out["device-tar"] = add_tar_member(tmp_path / "dev.tar.gz", src, dev)
    z = make_zip(tmp_path / "dotdot.zip", src)
    with zipfile.ZipFile(z, "a") as zf:
        zf.writestr("acme/../../evil.txt", "evil")
    out["dotdot-zip"] = z
    z = make_zip(tmp_path / "abs.zip", src)
    with zipfile.ZipFile(z, "a") as zf:
        zf.writestr("/tmp/abs-evil.txt", "evil")
    out["absolute-zip"] = z
    z = make_zip(tmp_path / "link.zip", src)
    with zipfile.ZipFile(z, "a") as zf:
        info = zipfile.ZipInfo("acme/data/passwd")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "../../../../etc/passwd")
    out["symlink-zip"] = z
    escaping = copy_pack(tmp_path)
    (escaping / "data" / "passwd").symlink_to("/etc/passwd")
    out["symlink-dir"] = escaping
    big = tarfile.TarInfo("acme/data/big.bin")
    big.size = MAX_FILE_BYTES + 1
    out["oversized-tar"] = tmp_path / "big.tar.gz"
    with tarfile.open(out["oversized-tar"], "w:gz") as tf:
        tf.add(src, arcname="acme")
        tf.addfile(big, io.BytesIO(bytes(MAX_FILE_BYTES + 1)))
    return out


def test_unsafe_archives_are_refused_and_nothing_is_written(tmp_path: Path, pack_home: Path
                                                            ) -> None:
    src = copy_pack(tmp_path)
    archives = _unsafe_archives(tmp_path, src)
    # once with no pack home at all, once with a pack already installed
    for state in ("empty", "installed"):
        if state == "installed":
            install_pack(copy_pack(tmp_path, version="1.0.0"))
        before = tree_digest(pack_home)
        outside_before = tree_digest(tmp_path)
        for label, archive in archives.items():
            with pytest.raises(PackError, match="Refusing to install") as exc:
                install_pack(archive)
            assert "Nothing was written" in str(exc.value), label
            assert tree_digest(pack_home) == before, f"{label} changed the pack home"
            assert tree_digest(tmp_path) == outside_before, f"{label} wrote outside"
            assert not (tmp_path.parent / "evil.txt").exists()
    assert not Path("/tmp/abs-evil.txt").exists()


def test_directory_with_inside_link_is_copied_as_file(tmp_path: Path, pack_home: Path) -> None:
    src = copy_pack(tmp_path)
    (src / "data" / "items-link.jsonl").symlink_to("items.jsonl")
    install_pack(src)
    copied = pack_home / "acme" / "data" / "items-link.jsonl"
    assert not copied.is_symlink()
    assert copied.read_bytes() == (src / "data" / "items.jsonl").read_bytes()


def test_invalid_pack_install_leaves_pack_home_untouched(tmp_path: Path, pack_home: Path) -> None:
    install_pack(copy_pack(tmp_path, version="1.0.0"))
    before = tree_digest(pack_home)
    bad = copy_pack(tmp_path, version="2.0.0")
    text = (bad / "rubrics" / "clarity.yaml").read_text()
    (bad / "rubrics" / "clarity.yaml").write_text(text.replace("pass_threshold", "pass_treshold"))
    with pytest.raises(PackValidationError) as exc:
        install_pack(make_tar(tmp_path / "bad.tar.gz", bad))
    [issue] = [i for i in exc.value.issues if i.rule == "additionalProperties"]
    # reported where the file is in the archive, not in the staging directory
    assert issue.file == f"{tmp_path / 'bad.tar.gz'}!acme/rubrics/clarity.yaml"
    assert tree_digest(pack_home) == before
    assert get_pack("acme").version == "1.0.0"


def test_failed_install_into_missing_pack_home_leaves_none(tmp_path: Path, pack_home: Path) -> None:
    bad = copy_pack(tmp_path)
    (bad / "pack.yaml").write_text("name: acme\n")
    with pytest.raises(PackValidationError):
        install_pack(bad)
    assert not pack_home.exists()


def test_downgrade_needs_force_upgrade_does_not(tmp_path: Path, pack_home: Path) -> None:
    install_pack(copy_pack(tmp_path, version="1.2.0"))
    before = tree_digest(pack_home)
    with pytest.raises(PackError, match="older 1.1.0 needs --force"):
        install_pack(copy_pack(tmp_path, version="1.1.0"))
    assert tree_digest(pack_home) == before
    assert install_pack(copy_pack(tmp_path, version="1.1.0"), force=True).version == "1.1.0"
    assert install_pack(copy_pack(tmp_path, version="1.3.0")).version == "1.3.0"
    assert install_pack(copy_pack(tmp_path, version="1.3.0")).version == "1.3.0"  # reinstall
    assert sorted(p.name for p in pack_home.iterdir()) == ["acme"]


def test_remove_unknown_and_entry_point_packs(tmp_path: Path, pack_home: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    install_pack(copy_pack(tmp_path))
    with pytest.raises(UnknownNameError, match="Did you mean: acme"):
        remove_pack("acm")
    _third_party_dist(tmp_path, monkeypatch, "tpwidgets")
    with pytest.raises(PackError, match="pip uninstall"):
        remove_pack("tpwidgets")


def test_install_never_runs_pack_code(tmp_path: Path, pack_home: Path) -> None:
    src = copy_pack(tmp_path)
    marker = tmp_path / "executed"
    (src / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    (src / "setup.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    install_pack(make_zip(tmp_path / "code.zip", src))
    get_pack("acme")
    assert not marker.exists()


# --- registry: real entry points --------------------------------------------------------


def _third_party_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pack_name: str,
                      style: str = "callable", version: str = "0.5.0") -> str:
    """A throwaway installed distribution registering one pack in `judge.packs`."""
    site = tmp_path / f"site-{uuid.uuid4().hex[:8]}"
    module = f"tp_{pack_name}_{uuid.uuid4().hex[:8]}"
    pkg = site / module
    pack_dir = pkg / "pack"
    shutil.copytree(ACME, pack_dir)
    manifest = yaml.safe_load((pack_dir / "pack.yaml").read_text())
    manifest["name"] = pack_name
    manifest["version"] = version
    for rubric_file in (pack_dir / "rubrics").glob("*.yaml"):
        rubric_file.write_text(rubric_file.read_text().replace("acme/", f"{pack_name}/"))
    for df in manifest["data"]:
        if df.get("rubric"):
            df["rubric"] = df["rubric"].replace("acme/", f"{pack_name}/")
    (pack_dir / "pack.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    body = {
        "callable": "def pack_dir():\n    return Path(__file__).parent / 'pack'\n",
        "path": "pack_dir = Path(__file__).parent / 'pack'\n",
        "str": "pack_dir = str(Path(__file__).parent / 'pack')\n",
        "raises": "def pack_dir():\n    raise RuntimeError('plugin exploded')\n",
    }[style]
    (pkg / "__init__.py").write_text("from pathlib import Path\n\n" + body)
    dist = site / f"{module}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[judge.packs]\n{pack_name} = {module}:pack_dir\n")
    monkeypatch.syspath_prepend(str(site))
    return module


@pytest.mark.parametrize("style", ["callable", "path", "str"])
def test_third_party_pack_through_real_entry_point(style: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   judge_home: Path) -> None:
    module = _third_party_dist(tmp_path, monkeypatch, "widgets", style)
    pack = get_pack("widgets")
    assert pack.version == "0.5.0"
    assert pack.source == f"entry-point {module}:pack_dir (dist {module.replace('_', '-')})"
    assert pack.kind == "entry-point"
    assert find_rubric("widgets/clarity").id == "widgets/clarity"


def test_broken_entry_point_is_reported_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  judge_home: Path) -> None:
    _third_party_dist(tmp_path, monkeypatch, "gadgets", "raises")
    _third_party_dist(tmp_path, monkeypatch, "widgets")
    reg = PackRegistry.discover()
    assert "widgets" in reg.packs
    assert "gadgets" in reg.broken and "plugin exploded" in str(reg.broken["gadgets"])
    with pytest.raises(PackError, match="plugin exploded"):
        reg.get("gadgets")


def test_same_name_from_two_sources_is_reported_pack_home_wins(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pack_home: Path) -> None:
    module = _third_party_dist(tmp_path, monkeypatch, "acme", version="9.0.0")
    reg = PackRegistry.discover()
    assert reg.get("acme").kind == "entry-point"
    assert reg.conflicts == []
    install_pack(copy_pack(tmp_path, version="1.2.0"))
    reg = PackRegistry.discover()
    assert reg.get("acme").source == "pack-home" and reg.get("acme").version == "1.2.0"
    [conflict] = reg.conflicts
    assert conflict.name == "acme" and conflict.winner == "pack-home"
    assert conflict.shadowed == (f"entry-point {module}:pack_dir (dist {module.replace('_', '-')})",)
    remove_pack("acme")
    assert get_pack("acme").version == "9.0.0"


def test_entry_point_name_must_match_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              judge_home: Path) -> None:
    module = _third_party_dist(tmp_path, monkeypatch, "widgets")
    ep_file = next((tmp_path).glob(f"site-*/{module}-1.0.dist-info/entry_points.txt"))
    ep_file.write_text(f"[judge.packs]\nother = {module}:pack_dir\n")
    reg = PackRegistry.discover()
    assert "other" in reg.broken
    assert "has name 'widgets'" in str(reg.broken["other"].error)


def test_unknown_pack_and_rubric_did_you_mean(judge_home: Path, tmp_path: Path) -> None:
    install_pack(copy_pack(tmp_path))
    with pytest.raises(UnknownNameError) as exc:
        get_pack("acmee")
    assert "Unknown pack 'acmee'. Did you mean: acme?" in str(exc.value)
    with pytest.raises(UnknownNameError, match="Did you mean: acme/clarity"):
        find_rubric("acme/clarty")


def test_builtin_packs_register_through_entry_points(judge_home: Path) -> None:
    reg = PackRegistry.discover()
    for name in ("healthcare", "legal", "finance"):
        assert name in reg.names()
        if name in reg.packs:
            assert reg.packs[name].source.startswith("entry-point judge_packs:")


def test_data_counts(tmp_path: Path) -> None:
    from judge.packs import DataFile, data_counts

    pack = load_pack(ACME)
    counts = [data_counts(pack.data_path(df), df) for df in pack.data]
    assert counts == [{"items": 3, "ratings": None, "raters": None},
                      {"items": 3, "ratings": 6, "raters": 2}]
    # a wide ratings file: one column per rater, empty cells are missing ratings
    wide = tmp_path / "wide.csv"
    wide.write_text("id,r1,r2\n1,3,\n2,2,1\n")
    df = DataFile(file="wide.csv", kind="ratings", rubric="acme/clarity", format="wide",
                  description="x", source="x", provenance="synthetic",
                  mapping={"raters": "r1|r2"})
    assert data_counts(wide, df) == {"items": 2, "ratings": 3, "raters": 2}
    doc = tmp_path / "wide.json"
    doc.write_text(json.dumps({"instances": [{"id": 1, "a": {"s": ["Yes", "No"]}},
                                             {"id": 2, "a": {"s": ["No"]}}]}))
    df = df.model_copy(update={"file": "wide.json", "mapping": {
        "records": "instances", "item": "id", "values": "a.s"}})
    assert data_counts(doc, df) == {"items": 2, "ratings": 3, "raters": 2}
    # the manifest's format must be the form the mapping reads
    with pytest.raises(ValueError, match="format 'long'"):
        data_counts(doc, df.model_copy(update={"format": "long"}))


def test_cached_registry_sees_changed_rubric_files(tmp_path: Path, pack_home: Path) -> None:
    install_pack(copy_pack(tmp_path))
    before = find_rubric("acme/clarity")
    assert find_rubric("acme/clarity") is before  # cached: no reload
    installed = pack_home / "acme" / "rubrics" / "clarity.yaml"
    installed.write_text(installed.read_text().replace(
        "Rate how clearly", "Rate, strictly, how clearly"))
    after = find_rubric("acme/clarity")
    assert after.content_hash != before.content_hash
    assert "strictly" in after.instructions
