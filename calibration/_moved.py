"""Old import paths of the calibration modules, kept working for one release.

``calibration/`` held both calibrations side by side until they moved into ``exits/`` and
``precision/``. Each old module is now a stub whose names resolve, with a DeprecationWarning
that names the new path, to the objects where they live now (the same objects, not copies).
"""

from __future__ import annotations

import importlib
import warnings


def forwarding(old: str, *modules: str, renamed: dict | None = None):
    """``(__getattr__, __dir__)`` for the module ``old`` (PEP 562): a name resolves to the first
    of ``modules`` that has it, or through ``renamed`` (``{name: "module:new_name"}``)."""
    renamed = dict(renamed or {})

    def __getattr__(name: str):
        # dunders are the import system's and tools' probes, not names a user moved
        if name.startswith("__"):
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        if name in renamed:
            module, _, new_name = renamed[name].partition(":")
            target = importlib.import_module(module)
        else:
            for module in modules:
                target, new_name = importlib.import_module(module), name
                if hasattr(target, name):
                    break
            else:
                raise AttributeError(f"module {old!r} has no attribute {name!r}")
        warnings.warn(f"{old}.{name} moved to {module}.{new_name}; the old path goes away in the next release",
                      DeprecationWarning, stacklevel=2)
        return getattr(target, new_name)

    def __dir__():
        return sorted(set(renamed).union(*(dir(importlib.import_module(m)) for m in modules)))

    return __getattr__, __dir__
