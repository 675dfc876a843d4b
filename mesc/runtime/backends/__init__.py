"""Backends, one folder each: a loader that turns a package into what the backend runs, and a
runner behind one interface (:class:`mesc.runtime.backends.base.Runner`)."""

from __future__ import annotations
