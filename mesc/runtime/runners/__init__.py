"""Backends behind one interface (:class:`mesc.runtime.runners.base.Runner`)."""
