"""Benchmark scenarios (mesc bench and the recorded project results)."""

from __future__ import annotations
