"""The one exception hierarchy of latentdiag.

The core raises these for anything a user can cause (a missing file, a bad shape, a NaN, a
model that does not fit the data). The command line turns them, in one place, into a single
``Error: ...`` line on stderr and exit status 1. Anything else is a bug and keeps its traceback.

Messages follow one pattern: what was expected, what was found, and what to do about it.
"""

from __future__ import annotations


class LatentDiagError(Exception):
    """Base class of every error a user can cause."""


class StoreError(LatentDiagError):
    """A latents file is missing, unreadable, incomplete or inconsistent."""


class DataError(LatentDiagError):
    """A data source is missing, empty, of an unknown kind or inconsistent."""


class ModelError(LatentDiagError):
    """A model file is missing, of an unknown kind, or does not fit the data."""


class MetricInputError(LatentDiagError, ValueError):
    """Arrays given to a metric have the wrong shape, values or labels.

    Also a ``ValueError`` so that code written against scikit-learn's conventions keeps working.
    """


class ConfigError(LatentDiagError):
    """A configuration file or option has a bad value."""


class ReportError(LatentDiagError):
    """A report cannot be written."""


__all__ = [
    "ConfigError",
    "DataError",
    "LatentDiagError",
    "MetricInputError",
    "ModelError",
    "ReportError",
    "StoreError",
]
