"""Errors that reach users.

Every error raised for bad user input derives from :class:`MescError`; the CLI prints its
message without a traceback and exits with status 2. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class MescError(Exception):
    """A user-facing error: the message says what is wrong and what was expected."""


class PackageError(MescError):
    """A mesc package on disk is missing, incomplete, altered or malformed."""


class ExportError(MescError):
    """The model cannot be split or exported as asked."""


class ModelLoadError(MescError):
    """The model spec, factory or checkpoint cannot be loaded."""


class MissingDependencyError(MescError, ImportError):
    """An optional heavy dependency is not installed; the message names the extra."""


class TrainError(MescError):
    """Training cannot start as configured (settings, output file) or its loss diverged."""


class CalibrationError(MescError):
    """Calibration cannot give trustworthy thresholds as asked (options, too few or unlabelled
    images, a bound no configuration meets)."""
