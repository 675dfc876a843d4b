"""Resolve a model spec to an ``nn.Module``: a registered name, ``module:factory`` or
``path/to/file.py:factory`` (a user's own file anywhere on disk)."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from contextlib import contextmanager
from pathlib import Path

from mesc.errors import ModelLoadError
from mesc.lazy import require


@contextmanager
def _user_code(failed: str):
    """Any failure of the user's code as a ModelLoadError that starts with ``failed``: sys.exit()
    too, which would otherwise end mesc without a word. Ctrl-C stays Ctrl-C."""
    try:
        yield
    except (KeyboardInterrupt, ModelLoadError):
        raise
    except BaseException as err:
        why = f"it called sys.exit({err.code!r})" if isinstance(err, SystemExit) else f"{type(err).__name__}: {err}"
        raise ModelLoadError(f"{failed}: {why}") from err


def _import_file(path: Path):
    if not path.is_file():
        raise ModelLoadError(f"model file {path} does not exist")
    # a unique module name, so two user files called model.py do not collide
    name = f"mesc_user_model_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"model file {path} cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    # the file may import its siblings
    sys.path.insert(0, str(path.resolve().parent))
    sys.modules[name] = module
    try:
        with _user_code(f"importing model file {path} failed"):
            spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        sys.path.pop(0)
    return module


def model_file(spec) -> Path | None:
    """The file a ``path/to/file.py:factory`` spec reads, else ``None`` (an input that outputs
    must not overlap)."""
    if not isinstance(spec, str):
        return None
    where, _, attr = spec.rpartition(":")
    if where and attr and (where.endswith(".py") or "/" in where or "\\" in where):
        return Path(where)
    return None


def _resolve_factory(spec: str):
    where, _, attr = spec.rpartition(":")
    if not where or not attr:
        raise ModelLoadError(
            f"model {spec!r} is neither a registered name nor 'module:factory' / 'path/to/file.py:factory'"
        )
    if model_file(spec) is not None:
        module = _import_file(model_file(spec))
    else:
        with _user_code(f"importing module {where!r} for model {spec!r} failed"):
            try:
                module = importlib.import_module(where)
            except ImportError as err:
                raise ModelLoadError(f"cannot import module {where!r} for model {spec!r}: {err}") from err
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise ModelLoadError(f"{where} has no callable {attr!r}; it defines: {', '.join(names[:12]) or 'nothing callable'}")
    return factory


def load_model(spec=None, weights=None, num_classes=None, **kwargs):
    """Build the model named by ``spec`` (or take an ``nn.Module`` as is) and load ``weights``.

    Returns ``(model, source)`` where ``source`` describes the model for the manifest.
    """
    torch = require("torch", purpose="exporting a PyTorch model")
    from mesc import models

    if isinstance(spec, torch.nn.Module):
        model, name = spec, f"{type(spec).__module__}.{type(spec).__qualname__}"
    else:
        name = spec or models.DEFAULT_MODEL
        if ":" not in name:
            model = models.create(name, num_classes=num_classes, **kwargs)
        else:
            factory = _resolve_factory(name)
            if num_classes is not None:
                params = inspect.signature(factory).parameters
                if "num_classes" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
                    kwargs["num_classes"] = num_classes
                else:
                    raise ModelLoadError(f"factory {name!r} takes no num_classes argument")
            with _user_code(f"factory {name!r} failed"):
                model = factory(**kwargs)
        if not isinstance(model, torch.nn.Module):
            raise ModelLoadError(f"factory {name!r} returned {type(model).__name__}, expected a torch.nn.Module")
    if weights is not None:
        models.load_checkpoint(model, weights)
    model.eval()
    source = {"model": name, "weights": str(weights) if weights else None}
    return model, source
