"""Exceptions with messages that name the file, the field and the fix."""

from __future__ import annotations


class DcrError(Exception):
    """Base class for user-facing errors (the CLI prints these without a traceback)."""


class DataError(DcrError):
    """A data file is missing, empty or malformed."""

    def __init__(self, path: object, problem: str, fix: str, row: int | None = None) -> None:
        where = f"{path}" + (f", row {row}" if row is not None else "")
        super().__init__(f"{where}: {problem}. Fix: {fix}")
        self.path = path
        self.row = row


class ConfigError(DcrError):
    """A configuration value is invalid."""


class ModelError(DcrError):
    """A model could not be resolved or loaded."""
