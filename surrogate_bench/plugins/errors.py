"""Exceptions the suite turns into one clear line (exit code 2) or a run record."""

from __future__ import annotations


class SuiteError(Exception):
    """A user-facing error: bad names, bad values, bad files. Printed as one line, exit code 2."""


class DataUnavailable(SuiteError):
    """A task's data is missing and could not be fetched; the run is recorded as *skipped*."""


class DataCorrupt(SuiteError):
    """A data file exists but is truncated or malformed; the run is recorded as *failed*."""


class NonFiniteLoss(RuntimeError):
    """A training loss became NaN or infinite; the run fails with the epoch and step."""
