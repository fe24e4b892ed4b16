"""Domain packs: the ``pack.yaml`` manifest, loading and validation, the registry, and
installing data-only packs into the pack home.

Discovery. One registry is fed from two places:

- the entry-point group ``judge.packs``: each entry point names a directory holding a
  ``pack.yaml`` (a path-like object, or a zero-argument callable returning one). The
  built-in packs register this way (``judge_packs:healthcare``), exactly as a
  pip-installed third-party distribution would;
- data-only packs installed by :func:`install_pack` into the pack home
  (``$JUDGE_HOME/packs/<name>/``).

Precedence. When two sources provide the same pack name, the **pack-home** copy wins
over entry points (installing is an explicit, later act of the user, and
:func:`remove_pack` brings the entry-point pack back); between two entry points, the
one whose distribution name sorts first wins. Every such clash is recorded in
:attr:`PackRegistry.conflicts` and shown by ``judge packs list``; nothing is shadowed
silently.

Loading validates the manifest, every rubric (own and reused core ones), rubric id
prefixes, the ``requires`` range and that data files exist. :func:`validate_pack`
additionally parses every data file, and reports every fault, not the first.
Installing never imports or executes anything from a pack.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from judge.errors import (
    DataValidationError,
    JudgeError,
    PackError,
    PackValidationError,
    UnknownNameError,
    ValidationIssue,
)
from judge.rubrics import Rubric

PACK_SCHEMA_PATH = Path(__file__).parent / "schemas" / "pack.schema.json"
_NAME_RE = r"^[a-z0-9][a-z0-9_-]*$"
_SEMVER_RE = r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RubricRef(_Strict):
    """A rubric the pack provides: one of its own files, or a core rubric it reuses by id."""

    file: str | None = Field(default=None, description="Path inside the pack, e.g. rubrics/x.yaml.")
    core: str | None = Field(default=None, description="Id of a core rubric reused, e.g. safety.")

    @model_validator(mode="after")
    def _one_of(self) -> RubricRef:
        if (self.file is None) == (self.core is None):
            raise ValueError("a rubric entry names exactly one of 'file' or 'core'")
        return self


class DataFile(_Strict):
    """A data file shipped in the pack: items to judge, or human ratings for calibration."""

    file: str = Field(description="Path inside the pack, e.g. data/items.jsonl.")
    kind: Literal["items", "ratings"]
    description: str
    rubric: str | None = Field(default=None, description="For ratings: the rubric id rated.")
    format: Literal["long", "wide"] | None = Field(
        default=None, description="For ratings: one row per rating (long) or per item (wide)."
    )
    mapping: dict[str, str] = Field(
        default_factory=dict, description="Column mapping, item or rating field = column."
    )
    source: str = Field(description="Where the data comes from and who made it.")
    license: str | None = None
    provenance: Literal["public-human", "author-reference", "synthetic"] = Field(
        description="public-human: real ratings by people, published; author-reference: "
        "written by the pack authors, not an expert panel; synthetic: made up for testing."
    )

    @model_validator(mode="after")
    def _ratings_name_rubric(self) -> DataFile:
        if self.kind == "ratings" and (self.rubric is None or self.format is None):
            raise ValueError("a ratings file needs 'rubric' and 'format'")
        return self


class PackManifest(_Strict):
    """The ``pack.yaml`` of a domain pack."""

    name: str = Field(pattern=_NAME_RE)
    version: str = Field(pattern=_SEMVER_RE)
    title: str = Field(min_length=1)
    domain: str = Field(min_length=1)
    description: str = Field(min_length=1)
    rubrics: list[RubricRef] = Field(min_length=1)
    data: list[DataFile] = Field(default_factory=list)
    requires: str = Field(
        default=">=0.1", description="PEP 440 range of judge versions the pack works with."
    )
    sources: list[str] = Field(
        default_factory=list, description="Standards and references the rubrics derive from."
    )
    license: str | None = None

    @field_validator("requires")
    @classmethod
    def _specifier(cls, v: str) -> str:
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        try:
            SpecifierSet(v)
        except InvalidSpecifier as exc:
            raise ValueError(f"not a PEP 440 version range: {v!r}") from exc
        return v


def generate_pack_schema() -> dict[str, Any]:
    """The pack manifest JSON Schema, generated from the pydantic model."""
    schema = PackManifest.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://judge.dev/schemas/pack.schema.json"
    return schema


# --- Loading and validation ------------------------------------------------------------

ENTRY_POINT_GROUP = "judge.packs"
MANIFEST = "pack.yaml"


@dataclass(frozen=True)
class Pack:
    """A loaded, validated pack.

    Attributes:
        manifest: the parsed ``pack.yaml``.
        root: the directory holding ``pack.yaml``.
        source: where it was found, e.g. ``entry-point judge_packs:healthcare (dist
            judge)``, ``pack-home`` or ``path``.
        rubrics: every rubric the pack provides, in manifest order: its own files
            (ids ``<pack>/<x>``) and the core rubrics it reuses.
    """

    manifest: PackManifest
    root: Path
    source: str
    rubrics: tuple[Rubric, ...]

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def kind(self) -> str:
        """``entry-point``, ``pack-home`` or ``path``."""
        return self.source.split(" ", 1)[0]

    @property
    def data(self) -> list[DataFile]:
        return list(self.manifest.data)

    def data_path(self, data_file: DataFile | str) -> Path:
        """The absolute path of one of the pack's data files."""
        rel = data_file.file if isinstance(data_file, DataFile) else data_file
        return self.root / rel

    def rubric(self, rubric_id: str) -> Rubric:
        """One of the pack's rubrics by id; a bare own name (``triage``) also works."""
        for r in self.rubrics:
            if r.id in (rubric_id, f"{self.name}/{rubric_id}"):
                return r
        raise UnknownNameError(f"rubric in pack '{self.name}'", rubric_id,
                               [r.id for r in self.rubrics])


_PACK_SCHEMA_CACHE: dict[str, Any] = {}


def shipped_pack_schema() -> dict[str, Any]:
    """The pack manifest JSON Schema shipped in the package."""
    if "pack" not in _PACK_SCHEMA_CACHE:
        _PACK_SCHEMA_CACHE["pack"] = json.loads(PACK_SCHEMA_PATH.read_text())
    return _PACK_SCHEMA_CACHE["pack"]


def _inside(root: Path, rel: str) -> Path | None:
    """``root/rel`` if ``rel`` is a relative path that stays inside ``root``, else None."""
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or "\\" in rel or ":" in rel:
        return None
    target = (root / rel).resolve()
    try:
        target.relative_to(root.resolve())
    except ValueError:
        return None  # a symlink inside the pack that points outside it
    return target


def _check_pack(
    root: Path, *, parse_data: bool
) -> tuple[Pack | None, list[ValidationIssue]]:
    from packaging.specifiers import SpecifierSet

    from judge import __version__
    from judge.rubrics import check_rubric_file, load_core_rubrics, load_yaml, validate_data

    root = Path(root)
    manifest_path = root / MANIFEST
    mfile = str(manifest_path)
    if not manifest_path.is_file():
        what = "is not a directory" if not root.is_dir() else f"has no {MANIFEST}"
        return None, [ValidationIssue(mfile, "$", "exists", f"pack directory {root} {what}",
                                      str(root))]
    try:
        data = load_yaml(manifest_path)
    except DataValidationError as exc:
        return None, list(exc.issues)
    obj, issues = validate_data(data, shipped_pack_schema(), PackManifest, mfile)
    if not isinstance(obj, PackManifest):
        return None, issues
    manifest = obj

    if not SpecifierSet(manifest.requires).contains(__version__, prereleases=True):
        issues.append(ValidationIssue(
            mfile, "$.requires", "requires",
            f"the pack needs judge {manifest.requires}; this is judge {__version__}",
            manifest.requires))

    core: dict[str, Rubric] | None = None
    rubrics: list[Rubric] = []
    seen: dict[str, str] = {}
    for i, ref in enumerate(manifest.rubrics):
        where = f"$.rubrics[{i}]"
        if ref.core is not None:
            if core is None:
                try:
                    core = load_core_rubrics()
                except DataValidationError as exc:
                    issues.extend(exc.issues)
                    core = {}
            if ref.core not in core:
                from judge.errors import did_you_mean

                close = did_you_mean(ref.core, core)
                hint = f" Did you mean: {', '.join(close)}?" if close else ""
                issues.append(ValidationIssue(
                    mfile, f"{where}.core", "core-exists",
                    f"no core rubric '{ref.core}'.{hint} Core rubrics: "
                    f"{', '.join(sorted(core)) or '(none)'}", ref.core))
                continue
            rubric = core[ref.core]
        else:
            assert ref.file is not None
            path = _inside(root, ref.file)
            if path is None:
                issues.append(ValidationIssue(
                    mfile, f"{where}.file", "inside-pack",
                    "a rubric file must be a relative path inside the pack", ref.file))
                continue
            if not path.is_file():
                issues.append(ValidationIssue(
                    mfile, f"{where}.file", "exists", "rubric file not found", ref.file))
                continue
            loaded, rissues = check_rubric_file(path)
            issues.extend(rissues)
            if loaded is None:
                continue
            rubric = loaded
            if rubric.pack != manifest.name:
                issues.append(ValidationIssue(
                    str(path), "$.id", "id-prefix",
                    f"a rubric of pack '{manifest.name}' needs an id "
                    f"'{manifest.name}/<name>'", rubric.id))
                continue
        if rubric.id in seen:
            issues.append(ValidationIssue(
                mfile, where, "unique-rubric",
                f"rubric '{rubric.id}' is already provided by {seen[rubric.id]}", rubric.id))
            continue
        seen[rubric.id] = where
        rubrics.append(rubric)

    rubrics_ok = len(rubrics) == len(manifest.rubrics)
    for i, df in enumerate(manifest.data):
        where = f"$.data[{i}]"
        path = _inside(root, df.file)
        if path is None:
            issues.append(ValidationIssue(
                mfile, f"{where}.file", "inside-pack",
                "a data file must be a relative path inside the pack", df.file))
            continue
        if not path.is_file():
            issues.append(ValidationIssue(
                mfile, f"{where}.file", "exists", "data file not found", df.file))
            continue
        # Only when every rubric loaded: otherwise the id may be in a file that failed.
        if df.rubric is not None and rubrics_ok and df.rubric not in seen:
            issues.append(ValidationIssue(
                mfile, f"{where}.rubric", "rubric-in-pack",
                f"rated rubric is not one of the pack's rubrics: {', '.join(seen) or '(none)'}",
                df.rubric))
        if parse_data:
            try:
                data_counts(path, df)
            except (JudgeError, ValueError, KeyError, TypeError, OSError) as exc:
                issues.append(ValidationIssue(str(path), "$", "parse", str(exc), df.file))

    if issues:
        return None, issues
    return Pack(manifest, root, "path", tuple(rubrics)), []


def validate_pack(path: str | Path) -> list[ValidationIssue]:
    """Every fault of the pack directory at ``path`` (empty when it is valid).

    Checks the manifest against the pack schema and model, every rubric file, rubric id
    prefixes, that reused core rubrics exist, that ``requires`` admits this judge, and
    that every data file exists inside the pack and parses.
    """
    return _check_pack(Path(path), parse_data=True)[1]


def load_pack(path: str | Path, source: str = "path") -> Pack:
    """Load and validate the pack directory at ``path``.

    Data files are checked to exist, not parsed (see :func:`validate_pack`).

    Raises:
        PackValidationError: with every fault found.
    """
    pack, issues = _check_pack(Path(path), parse_data=False)
    if pack is None:
        raise PackValidationError(f"pack at {path}", issues)
    return Pack(pack.manifest, Path(path), source, pack.rubrics)


# --- Data file counts ------------------------------------------------------------------


def data_counts(path: Path, df: DataFile) -> dict[str, int | None]:
    """Item, rating and rater counts of one data file; raises when it does not parse.

    An items file is read through its column mapping (:func:`judge.datasets.read_items`):
    ``items`` is set, ``ratings`` and ``raters`` are None. A ratings file is read with
    :func:`judge.calibration.ratings_io.read_ratings` and its mapping: ``items`` is the
    number of distinct items rated, ``ratings`` the number of ratings, ``raters`` the
    number of distinct raters; its form (long/wide) must be the manifest's ``format``.
    """
    if df.kind == "items":
        from judge.datasets import read_items

        n = len(read_items(path, dict(df.mapping)))
        return {"items": n, "ratings": None, "raters": None}
    # Lazy: pandas and the calibration package are only needed to read ratings.
    from judge.calibration.ratings_io import read_ratings

    rf = read_ratings(path, dict(df.mapping))
    if df.format is not None and rf.form != df.format:
        raise ValueError(f"the manifest says format '{df.format}' but the mapping "
                         f"{dict(df.mapping)} reads it as '{rf.form}' form")
    return {"items": int(rf.ratings["item_id"].nunique()), "ratings": len(rf.ratings),
            "raters": int(rf.ratings["rater_id"].nunique())}


# --- Registry --------------------------------------------------------------------------


@dataclass(frozen=True)
class PackConflict:
    """Two or more sources providing the same pack name; ``winner`` is the one used."""

    name: str
    winner: str
    shadowed: tuple[str, ...]

    def __str__(self) -> str:
        return (f"pack '{self.name}' is provided by several sources; using {self.winner}, "
                f"ignoring {'; '.join(self.shadowed)}")


@dataclass(frozen=True)
class BrokenPack:
    """A discovered pack that failed to load, kept so that it is reported, not hidden."""

    name: str
    source: str
    error: JudgeError
    root: Path | None = None

    def __str__(self) -> str:
        lines = str(self.error).splitlines()
        if isinstance(self.error, DataValidationError) and self.error.issues:
            n = len(self.error.issues)
            detail = f"{n} problem(s), the first: {self.error.issues[0]}"
            if self.root is not None:
                detail += f". Run `judge packs validate {self.root}` to see all"
        else:
            detail = lines[0] if lines else type(self.error).__name__
        return f"pack '{self.name}' from {self.source} does not load: {detail}"


@dataclass
class PackRegistry:
    """Every pack judge can see, by name, with the name clashes and the broken packs."""

    packs: dict[str, Pack] = field(default_factory=dict)
    conflicts: list[PackConflict] = field(default_factory=list)
    broken: dict[str, BrokenPack] = field(default_factory=dict)
    pack_home: Path | None = None
    core: dict[str, Rubric] = field(default_factory=dict)
    fingerprint: tuple[Any, ...] = ()

    @classmethod
    def discover(cls, pack_home: Path | None = None) -> PackRegistry:
        """Load every pack from the ``judge.packs`` entry points and the pack home."""
        if pack_home is None:
            from judge.config import get_settings

            pack_home = get_settings().pack_home
        from judge.rubrics import load_core_rubrics

        fingerprint = _fingerprint(pack_home)
        # (name, priority, tie-break, source, locate): pack home (0) wins over entry
        # points (1); between entry points, the distribution name sorting first wins.
        candidates: list[tuple[str, int, str, str, Callable[[], Path]]] = []
        for ep in _entry_points():
            dist = ep.dist.name if ep.dist is not None else "?"
            source = f"entry-point {ep.value} (dist {dist})"
            candidates.append((ep.name, 1, f"{dist} {ep.value}", source, _ep_loader(ep, source)))
        for d in _pack_home_dirs(pack_home):
            candidates.append((d.name, 0, "", "pack-home", _fixed_path(d)))
        candidates.sort(key=lambda c: c[:3])
        reg = cls(pack_home=pack_home, core=load_core_rubrics(), fingerprint=fingerprint)
        by_name: dict[str, list[str]] = {}
        for name, _prio, _tie, source, locate in candidates:
            by_name.setdefault(name, []).append(source)
            if name in reg.packs or name in reg.broken:
                continue
            root: Path | None = None
            try:
                root = locate()
                pack = load_pack(root, source)
                if pack.name != name:
                    raise PackError(
                        f"Pack registered as '{name}' from {source} has name "
                        f"'{pack.name}' in its {MANIFEST}; the two must be equal.")
            except JudgeError as exc:
                reg.broken[name] = BrokenPack(name, source, exc, root)
                continue
            reg.packs[name] = pack
        for name, sources in sorted(by_name.items()):
            if len(sources) > 1:
                reg.conflicts.append(PackConflict(name, sources[0], tuple(sources[1:])))
        return reg

    def names(self) -> list[str]:
        return sorted(set(self.packs) | set(self.broken))

    def get(self, name: str) -> Pack:
        """The pack called ``name``.

        Raises:
            UnknownNameError: with did-you-mean and the available names.
            PackValidationError / PackError: when that pack exists but does not load.
        """
        if name in self.packs:
            return self.packs[name]
        if name in self.broken:
            raise self.broken[name].error
        raise UnknownNameError("pack", name, self.names())


def _entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: (ep.name, ep.value))


def _ep_loader(ep: Any, source: str) -> Callable[[], Path]:
    def locate() -> Path:
        try:
            obj = ep.load()
            if callable(obj) and not isinstance(obj, str | os.PathLike):
                obj = obj()
            return Path(os.fspath(obj))
        except JudgeError:
            raise
        except Exception as exc:  # a third-party plugin may fail in any way
            raise PackError(
                f"Pack entry point '{ep.name}' ({source}) does not give a directory: "
                f"{type(exc).__name__}: {exc}. It must name a path-like object or a "
                "zero-argument callable returning one.") from exc

    return locate


def _fixed_path(path: Path) -> Callable[[], Path]:
    # A function per candidate binds its own path; a loop lambda would see the last one.
    return lambda: path


def _pack_home_dirs(pack_home: Path) -> list[Path]:
    if not pack_home.is_dir():
        return []
    # Dot-directories are install staging and swap areas, never packs.
    return sorted(d for d in pack_home.iterdir() if d.is_dir() and not d.name.startswith("."))


def _fingerprint(pack_home: Path) -> tuple[Any, ...]:
    """What discovery read, cheaply: entry points and every file's stat under each root.

    Taken before loading, so a change made during discovery is seen next time.
    """
    from judge.rubrics import core_rubrics_dir

    roots: list[Path] = [core_rubrics_dir(), *_pack_home_dirs(pack_home)]
    eps = []
    for ep in _entry_points():
        eps.append((ep.name, ep.value, ep.dist.name if ep.dist is not None else None))
        # Built-in and most third-party packs live inside their top-level package: stat
        # that too. find_spec of a top-level name locates it without importing it.
        try:
            spec = importlib.util.find_spec(ep.value.split(":", 1)[0].split(".", 1)[0])
        except (ImportError, ValueError):
            spec = None
        # (Only packages: a single-file module's directory may be all of site-packages.)
        if spec is not None and spec.submodule_search_locations:
            roots += [Path(p) for p in spec.submodule_search_locations]
    stats = []
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                if name.endswith((".yaml", ".yml")):
                    try:
                        st = os.stat(os.path.join(dirpath, name))
                    except OSError:
                        continue
                    stats.append((dirpath, name, st.st_mtime_ns, st.st_size, st.st_ino))
    home = [(d.name, d.stat().st_ino, d.stat().st_mtime_ns) for d in _pack_home_dirs(pack_home)]
    return (str(pack_home), tuple(eps), tuple(home), tuple(sorted(stats)))


_REGISTRY_CACHE: dict[str, PackRegistry] = {}


def get_registry(refresh: bool = False) -> PackRegistry:
    """The packs of the current pack home and entry points, cached.

    The cache is dropped when an entry point, a pack-home directory or any pack or core
    rubric YAML file changes (by stat), or with ``refresh=True``. The CLI always calls
    :meth:`PackRegistry.discover` directly.
    """
    from judge.config import get_settings

    pack_home = get_settings().pack_home
    key = str(pack_home)
    cached = _REGISTRY_CACHE.get(key)
    if not refresh and cached is not None and cached.fingerprint == _fingerprint(pack_home):
        return cached
    reg = PackRegistry.discover(pack_home)
    _REGISTRY_CACHE[key] = reg
    return reg


def list_packs() -> list[Pack]:
    """Every pack that loads, sorted by name."""
    reg = get_registry()
    return [reg.packs[n] for n in sorted(reg.packs)]


def get_pack(name: str) -> Pack:
    """The pack called ``name``; UnknownNameError with did-you-mean if there is none."""
    return get_registry().get(name)


def all_rubrics(registry: PackRegistry | None = None) -> dict[str, Rubric]:
    """Every rubric by id: the core ones, then each loaded pack's own ones."""
    reg = registry or get_registry()
    out = dict(reg.core)
    for name in sorted(reg.packs):
        for r in reg.packs[name].rubrics:
            out.setdefault(r.id, r)
    return out


def find_rubric(rubric_id: str, registry: PackRegistry | None = None) -> Rubric:
    """A rubric by id (``safety``, ``healthcare/triage-escalation``), core or from a pack.

    Raises:
        UnknownNameError: with did-you-mean and the available ids.
    """
    reg = registry or get_registry()
    pack_name = rubric_id.split("/", 1)[0] if "/" in rubric_id else None
    if pack_name is not None and pack_name in reg.broken:
        raise reg.broken[pack_name].error
    rubrics = all_rubrics(reg)
    if rubric_id in rubrics:
        return rubrics[rubric_id]
    raise UnknownNameError("rubric", rubric_id, list(rubrics))


# --- Install and remove ----------------------------------------------------------------

MAX_FILE_BYTES = 20 * 1024 * 1024
"""Largest single file a pack may hold."""
MAX_TOTAL_BYTES = 100 * 1024 * 1024
"""Largest total size of a pack's files."""
MAX_MEMBERS = 5000
"""Most files and directories a pack may hold."""

_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip")


def _refuse(src: Path, member: str, rule: str) -> PackError:
    return PackError(f"Refusing to install {src}: member '{member}' {rule}. Nothing was written.")


def _safe_member(src: Path, name: str) -> PurePosixPath:
    """The member's relative path, or a PackError for absolute paths and ``..``."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise _refuse(src, name, "has an absolute path")
    if "\\" in name:
        raise _refuse(src, name, "contains a backslash (not a portable relative path)")
    pure = PurePosixPath(name)
    if ".." in pure.parts:
        raise _refuse(src, name, "has a '..' component (it would escape the pack)")
    return PurePosixPath(*[p for p in pure.parts if p not in ("", ".")])


@dataclass
class _Plan:
    """What will be written: directories and files (relative path -> opener)."""

    dirs: set[PurePosixPath] = field(default_factory=set)
    files: dict[PurePosixPath, Callable[[], Any]] = field(default_factory=dict)
    total: int = 0

    def add_file(self, src: Path, rel: PurePosixPath, size: int, opener: Callable[[], Any]) -> None:
        if rel in self.files or rel in self.dirs:
            raise _refuse(src, str(rel), "appears twice")
        if size > MAX_FILE_BYTES:
            raise _refuse(src, str(rel), f"is {size} bytes, over the {MAX_FILE_BYTES}-byte "
                                         "limit per file (MAX_FILE_BYTES)")
        self.total += size
        if self.total > MAX_TOTAL_BYTES:
            raise PackError(f"Refusing to install {src}: its files exceed the "
                            f"{MAX_TOTAL_BYTES}-byte limit per pack (MAX_TOTAL_BYTES). "
                            "Nothing was written.")
        self.files[rel] = opener
        self._count(src)

    def add_dir(self, src: Path, rel: PurePosixPath) -> None:
        if rel.parts:
            self.dirs.add(rel)
            self._count(src)

    def _count(self, src: Path) -> None:
        if len(self.files) + len(self.dirs) > MAX_MEMBERS:
            raise PackError(f"Refusing to install {src}: more than {MAX_MEMBERS} members "
                            "(MAX_MEMBERS). Nothing was written.")

    def pack_root(self, src: Path) -> PurePosixPath:
        """Where pack.yaml is: at the top, or inside a single top-level directory."""
        if PurePosixPath(MANIFEST) in self.files:
            return PurePosixPath()
        tops = {p.parts[0] for p in [*self.files, *self.dirs] if p.parts}
        if len(tops) == 1:
            top = PurePosixPath(next(iter(tops)))
            if top / MANIFEST in self.files:
                return top
        raise PackError(f"Cannot install {src}: no {MANIFEST} at its top level or inside a "
                        "single top-level directory. Nothing was written.")


def _plan_tar(src: Path) -> tuple[_Plan, Callable[[], None]]:
    try:
        tf = tarfile.open(src, "r:gz")
        members = tf.getmembers()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise PackError(f"Cannot read {src} as a .tar.gz archive: {exc}") from exc
    plan = _Plan()
    try:
        for m in members:
            _plan_tar_member(src, plan, tf, m)
    except BaseException:
        tf.close()
        raise
    return plan, tf.close


def _plan_tar_member(src: Path, plan: _Plan, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
    rel = _safe_member(src, m.name)
    if m.issym() or m.islnk():
        raise _refuse(src, m.name, f"is a link (to '{m.linkname}'); pack archives may not "
                                   "contain links")
    if m.isdir():
        plan.add_dir(src, rel)
    elif m.isfile():
        plan.add_file(src, rel, m.size, lambda: tf.extractfile(m))
    else:
        raise _refuse(src, m.name, "is a device, FIFO or other special file")


def _plan_zip(src: Path) -> tuple[_Plan, Callable[[], None]]:
    try:
        zf = zipfile.ZipFile(src)
        infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise PackError(f"Cannot read {src} as a .zip archive: {exc}") from exc
    plan = _Plan()
    try:
        for info in infos:
            _plan_zip_member(src, plan, zf, info)
    except BaseException:
        zf.close()
        raise
    return plan, zf.close


def _plan_zip_member(src: Path, plan: _Plan, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    rel = _safe_member(src, info.filename)
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise _refuse(src, info.filename, "is a link; pack archives may not contain links")
    if mode and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise _refuse(src, info.filename, "is a device, FIFO or other special file")
    if info.is_dir():
        plan.add_dir(src, rel)
    else:
        plan.add_file(src, rel, info.file_size, lambda: zf.open(info))


def _plan_dir(src: Path) -> tuple[_Plan, Callable[[], None]]:
    plan = _Plan()
    root = src.resolve()
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        here = Path(dirpath)
        for name in sorted(dirnames + filenames):
            path = here / name
            rel = PurePosixPath(path.relative_to(src).as_posix())
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                target = path.resolve()
                try:
                    target.relative_to(root)
                except ValueError:
                    raise _refuse(src, str(rel), f"is a link pointing outside the pack "
                                                 f"(to {os.readlink(path)})") from None
                if not target.is_file():
                    raise _refuse(src, str(rel), "is a link to a directory or to nothing; "
                                                 "only links to files inside the pack are "
                                                 "copied")
                # An in-pack link to a file is copied as a regular file.
                st = target.stat()
                if name in dirnames:
                    dirnames.remove(name)
            if stat.S_ISDIR(st.st_mode):
                plan.add_dir(src, rel)
            elif stat.S_ISREG(st.st_mode):
                plan.add_file(src, rel, st.st_size, _file_opener(path))
            else:
                raise _refuse(src, str(rel), "is a device, FIFO or other special file")
    return plan, lambda: None


def _file_opener(path: Path) -> Callable[[], IO[bytes]]:
    # Opened lazily, only when the plan is carried out; bound per file, not per loop.
    return lambda: path.open("rb")


def _copy_limited(reader: IO[bytes], dest: Path, src: Path, rel: PurePosixPath) -> int:
    # Count the bytes actually written: archive headers can lie about sizes.
    written = 0
    with dest.open("xb") as out:
        for block in iter(lambda: reader.read(1 << 16), b""):
            written += len(block)
            if written > MAX_FILE_BYTES:
                raise _refuse(src, str(rel), f"expands past the {MAX_FILE_BYTES}-byte limit "
                                             "per file (MAX_FILE_BYTES)")
            out.write(block)
    return written


def _materialise(plan: _Plan, close: Callable[[], None], src: Path, top: PurePosixPath,
                 dest: Path) -> None:
    total = 0
    try:
        for d in sorted(plan.dirs):
            if d == top or (top.parts and d.parts[: len(top.parts)] != top.parts):
                continue
            (dest / d.relative_to(top)).mkdir(parents=True, exist_ok=True)
        for rel, opener in sorted(plan.files.items()):
            if top.parts and rel.parts[: len(top.parts)] != top.parts:
                continue  # outside the pack directory of the archive: not part of the pack
            out = dest / rel.relative_to(top)
            out.parent.mkdir(parents=True, exist_ok=True)
            with opener() as reader:
                total += _copy_limited(reader, out, src, rel)
            if total > MAX_TOTAL_BYTES:
                raise PackError(f"Refusing to install {src}: its files expand past the "
                                f"{MAX_TOTAL_BYTES}-byte limit (MAX_TOTAL_BYTES).")
    finally:
        close()


def _installed_version(target: Path) -> str | None:
    from judge.rubrics import load_yaml

    try:
        data = load_yaml(target / MANIFEST)
    except DataValidationError:
        return None
    version = data.get("version") if isinstance(data, dict) else None
    return str(version) if version is not None else None


def install_pack(path: str | Path, force: bool = False) -> Pack:
    """Install a data-only pack (directory, ``.tar.gz``/``.tgz`` or ``.zip``) into the pack
    home, atomically.

    Every member is checked before anything is written (no absolute paths, no ``..``,
    no links in archives, no links escaping a directory, no special files, size and
    count limits). The pack is then written to a staging directory inside the pack home,
    its manifest and every rubric and data file are validated there, and it is moved
    into place with ``os.replace``; an existing version is moved aside first and put
    back if the swap fails. Nothing from the pack is imported or executed.

    Args:
        path: the pack directory or archive.
        force: allow installing a version older than the one installed.

    Returns:
        The installed pack, loaded from the pack home.

    Raises:
        PackError: unsafe or unreadable archive, or a downgrade without ``force``.
        PackValidationError: the pack does not validate (every fault listed).
    """
    from packaging.version import Version

    from judge.config import get_settings

    src = Path(path)
    if src.is_dir():
        plan, close = _plan_dir(src)
    elif src.is_file() and src.name.lower().endswith((".tar.gz", ".tgz")):
        plan, close = _plan_tar(src)
    elif src.is_file() and src.name.lower().endswith(".zip"):
        plan, close = _plan_zip(src)
    else:
        what = "does not exist" if not src.exists() else "is not a directory or archive"
        raise PackError(f"Cannot install '{src}': it {what}. A pack is a directory, a "
                        f"{', '.join(_ARCHIVE_SUFFIXES)} archive.")
    try:
        top = plan.pack_root(src)
    except PackError:
        close()
        raise

    pack_home = get_settings().pack_home
    created_home = not pack_home.exists()
    pack_home.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=pack_home))
    try:
        staged = staging / "pack"
        staged.mkdir()
        _materialise(plan, close, src, top, staged)
        pack, issues = _check_pack(staged, parse_data=True)
        if pack is None:
            raise PackValidationError(f"pack {src}", _as_in_source(issues, staged, src, top))
        target = pack_home / pack.name
        if target.exists():
            old = _installed_version(target)
            try:
                older = old is not None and Version(pack.version) < Version(old)
            except ValueError:
                older = False
            if older and not force:
                raise PackError(
                    f"Pack '{pack.name}' {old} is installed; installing the older "
                    f"{pack.version} needs --force (force=True).")
            _swap(staged, target, staging)
        else:
            os.replace(staged, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created_home:
            _rmdir_if_empty(pack_home)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return load_pack(pack_home / pack.name, "pack-home")


def _as_in_source(issues: list[ValidationIssue], staged: Path, src: Path,
                  top: PurePosixPath) -> list[ValidationIssue]:
    """Issues with staging paths replaced by where the file is in what the user gave."""
    from dataclasses import replace

    out = []
    for issue in issues:
        try:
            rel = Path(issue.file).relative_to(staged).as_posix()
        except ValueError:
            out.append(issue)
            continue
        inner = (top / rel).as_posix() if top.parts else rel
        where = f"{src}/{inner}" if src.is_dir() else f"{src}!{inner}"
        out.append(replace(issue, file=where))
    return out


def _swap(staged: Path, target: Path, staging: Path) -> None:
    aside = staging / "previous"
    os.replace(target, aside)
    try:
        os.replace(staged, target)
    except BaseException:
        os.replace(aside, target)  # put the old version back
        raise


def _rmdir_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def remove_pack(name: str) -> Path:
    """Remove a pack installed in the pack home; return the directory removed.

    Raises:
        PackError: the pack comes from an entry point (uninstall its distribution).
        UnknownNameError: there is no pack of that name.
    """
    import re

    from judge.config import get_settings

    pack_home = get_settings().pack_home
    target = pack_home / name
    if re.match(_NAME_RE, name) and target.is_dir():
        aside = Path(tempfile.mkdtemp(prefix=".removing-", dir=pack_home))
        # Rename first so the pack disappears at once, then delete at leisure.
        os.replace(target, aside / name)
        shutil.rmtree(aside, ignore_errors=True)
        return target
    for ep in _entry_points():
        if ep.name == name:
            dist = ep.dist.name if ep.dist is not None else "?"
            raise PackError(
                f"Pack '{name}' is not installed in the pack home ({pack_home}); it comes "
                f"from entry-point {ep.value} (dist {dist}). Remove it with "
                f"`pip uninstall {dist}`, or not at all if it is built in.")
    raise UnknownNameError("installed pack", name, [d.name for d in _pack_home_dirs(pack_home)])
