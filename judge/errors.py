"""Typed errors. Every user-facing failure is a :class:`JudgeError` whose message names
the thing, states the rule, shows the bad value and lists the options."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


class JudgeError(Exception):
    """Root of every error judge raises on purpose.

    ``exit_code`` is what the CLI exits with: 2 for a user error (bad input, unknown
    name), 1 for a failure of the work itself.
    """

    exit_code: int = 2


def did_you_mean(name: str, options: Iterable[str]) -> list[str]:
    """Close matches of ``name`` among ``options``, best first."""
    return difflib.get_close_matches(name, list(options), n=3, cutoff=0.6)


class UnknownNameError(JudgeError, KeyError):
    """A name (pack, rubric, job, judge model…) that does not exist."""

    def __init__(self, kind: str, name: str, options: Sequence[str]):
        self.kind = kind
        self.name = name
        self.options = sorted(options)
        super().__init__(self.__str__())

    def __str__(self) -> str:
        msg = f"Unknown {self.kind} '{self.name}'."
        close = did_you_mean(self.name, self.options)
        if close:
            msg += f" Did you mean: {', '.join(close)}?"
        if self.options:
            shown = self.options if len(self.options) <= 20 else [*self.options[:20], "…"]
            msg += f" Available: {', '.join(shown)}."
        else:
            msg += f" No {self.kind}s are available."
        return msg


class ConfigError(JudgeError):
    """A setting (environment variable, option) with a bad value."""


@dataclass(frozen=True)
class ValidationIssue:
    """One fault in a data file: where it is, which rule it broke, and the bad value."""

    file: str
    path: str
    rule: str
    message: str
    value: Any = None

    def __str__(self) -> str:
        value = repr(self.value)
        if len(value) > 80:
            value = value[:77] + "..."
        return f"{self.file}: at {self.path}: [{self.rule}] {self.message} (value: {value})"


class DataValidationError(JudgeError):
    """A data file (rubric, pack manifest) that breaks its schema; carries every issue."""

    def __init__(self, what: str, issues: Sequence[ValidationIssue]):
        self.what = what
        self.issues = list(issues)
        lines = [f"Invalid {what}: {len(self.issues)} problem(s)"]
        lines += [f"  - {issue}" for issue in self.issues]
        super().__init__("\n".join(lines))


class RubricError(DataValidationError):
    """A rubric file that does not validate."""


class PackError(JudgeError):
    """A pack that cannot be loaded, installed or removed."""


class PackValidationError(DataValidationError, PackError):
    """A pack whose manifest or rubrics do not validate."""


class DatasetError(JudgeError):
    """A dataset that cannot be read into items."""


class ProviderError(JudgeError):
    """A judge provider that failed after every retry."""

    exit_code = 1


class StoreError(JudgeError):
    """The store cannot be reached or holds something unexpected."""

    exit_code = 1


class JobError(JudgeError):
    """A job that cannot be created, run or read."""


class BudgetExceeded(JudgeError):
    """A job ran out of its cost or call budget."""

    exit_code = 1


class CalibrationError(JudgeError):
    """Calibration that cannot be computed from the data given."""


class AuthError(JudgeError):
    """A missing, unknown or insufficient API token."""
