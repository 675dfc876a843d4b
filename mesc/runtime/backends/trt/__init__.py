"""TensorRT backend, and the only place that knows TensorRT's API: :mod:`.loader` picks, checks
and deserialises a package's plans, :mod:`.runner` runs them, :mod:`.compat` builds them."""

from __future__ import annotations

from mesc.runtime.backends.trt.loader import Engines, EnginesFromPlans, PlansFromPackage
from mesc.runtime.backends.trt.runner import TrtRunner

__all__ = ["Engines", "EnginesFromPlans", "PlansFromPackage", "TrtRunner"]
