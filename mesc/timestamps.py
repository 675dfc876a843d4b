"""Timestamps written into manifests, reports and benchmark results."""

from __future__ import annotations

import datetime


def utc_now() -> str:
    """The current UTC time as ISO 8601 to the second, e.g. ``2024-05-01T12:00:00Z``."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
