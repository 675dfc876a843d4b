"""A failed graph capture as one ExportError that names the construct, the user's source line
and what to change.

Both captures fail on the same four kinds of code, with different exceptions: torch.export's
GuardOnDataDependentSymNode / UserError / dynamo's Unsupported, and torch.fx's TraceError or a
TypeError on a Proxy. The message tells them apart, since only the first kind (a branch or a
size that depends on tensor values) is a property of the model: the others have a rewrite.
"""

from __future__ import annotations

import linecache
import re
import traceback
from pathlib import Path

from mesc.errors import ExportError

# (kind, what to change), checked in this order against the exception's type and message
_DATA_DEPENDENT = ("data-dependent control flow (a branch or a size computed from tensor values)",
                   "mesc splits a graph fixed at export time, so this cannot be split statically: compute both "
                   "branches and select with torch.where, or decide outside forward")
_BATCH_FIXED = ("shape arithmetic that fixes the batch size",
                "--dynamic-batch needs sizes taken from the input (x.shape[0], or -1 in view/reshape) instead "
                "of constants; or export without --dynamic-batch")
_FX_SHAPES = ("shape arithmetic torch.fx cannot trace (unpacking, iterating or indexing a shape or a tensor "
              "as Python values)", "capture with torch.export (--capture export, the default)")
_SIDE_EFFECT = ("a side effect (state changed outside the returned tensors)",
                "keep forward free of in-place updates of module attributes and globals, or capture "
                "non-strict (without --strict)")
_UNSUPPORTED = ("an operation the capture does not support",
                "use torch operations on tensors (no .numpy(), .tolist(), .item() or Python-side math on "
                "tensor values); without --strict, torch.export runs Python code as it is")


def _kind(err: BaseException, capture: str) -> tuple[str, str]:
    name, text = type(err).__name__, str(err)
    low = text.lower()
    if name == "GuardOnDataDependentSymNode" or "data-dependent" in low or "data dependent" in low \
            or "symbolically traced variables cannot be used as inputs to control flow" in low:
        return _DATA_DEPENDENT
    # a size written as a constant meets the symbolic batch (s0, s77: torch's size symbols)
    if "constraints violated" in low or "specialized it to be a constant" in low or (
            "shape" in low and re.search(r"\bs\d+\b", text)):
        return _BATCH_FIXED
    if capture == "fx" and ("proxy" in low or name == "TraceError"):
        return _FX_SHAPES
    if "side effect" in low or "side-effect" in low or "mutat" in low:
        return _SIDE_EFFECT
    if name in ("Unsupported", "NotImplementedError") or "not supported" in low or "unsupported" in low:
        return _UNSUPPORTED
    return ("", "")


_TORCH_DIR = None
_FILE_LINE = re.compile(r'File "([^"]+)", line (\d+), in (\w+)')


def _outside_torch(filename: str) -> bool:
    global _TORCH_DIR
    if _TORCH_DIR is None:
        import torch

        _TORCH_DIR = str(Path(torch.__file__).parent)
    return not filename.startswith(_TORCH_DIR) and not filename.startswith("<")


def user_line(err: BaseException) -> str:
    """The innermost source line outside torch that the capture stopped at: from the traceback
    (non-strict export, fx), else from the user stack strict export puts in its message."""
    here = str(Path(__file__).parent)
    # the capture's own frame is where the error was caught, not where the model failed
    frames = [(f.filename, f.lineno, f.name) for f in traceback.extract_tb(err.__traceback__)
              if _outside_torch(f.filename) and not f.filename.startswith(here)]
    if not frames:
        frames = [(m[0], int(m[1]), m[2]) for m in _FILE_LINE.findall(str(err)) if _outside_torch(m[0])]
    if not frames:
        return ""
    filename, lineno, func = frames[-1]
    code = linecache.getline(filename, lineno).strip()
    return f"{filename}:{lineno} in {func}: {code}"


def capture_error(err: BaseException, capture: str, module: str) -> ExportError:
    """The ExportError for ``err``, raised while capturing with ``capture`` ("export" or "fx")
    inside ``module`` (the submodule being traced, where known)."""
    kind, advice = _kind(err, capture)
    where = user_line(err)
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    tool = "torch.export" if capture == "export" else "torch.fx"
    msg = f"cannot capture the model with {tool}: "
    msg += f"{kind}" if kind else "capture failed"
    msg += f" in {module}" + (f", at {where}" if where else "")
    msg += f" ({type(err).__name__}: {first[:200]})."
    if advice:
        msg += f" To fix: {advice}."
    return ExportError(msg)
