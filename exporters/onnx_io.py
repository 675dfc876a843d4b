"""Write one segment's GraphModule as ONNX and read back its tensor specs."""

from __future__ import annotations

import contextlib
import io
import warnings

from mesc.errors import ExportError
from mesc.exporters.policy.graph import MIN_OPSET
from mesc.exporters.torch_output import captured_output, detail
from mesc.lazy import require

onnx = require("onnx", extra="core")

_DTYPES = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.INT8: "int8",
    onnx.TensorProto.UINT8: "uint8",
    onnx.TensorProto.BOOL: "bool",
}


# the newest opset of the TorchScript exporter (torch.onnx's ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)
MAX_OPSET = 20


def check_opset(opset) -> None:
    """Refuse an opset the exporter cannot write, saying which TensorRT parses which."""
    if not isinstance(opset, int) or isinstance(opset, bool) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"--opset {opset} is not supported: mesc exports opsets {MIN_OPSET} to {MAX_OPSET}; "
                          f"TensorRT 8.5/8.6 parse up to 17 (the default), TensorRT 10 and later up to {MAX_OPSET}")


def export_module(gm, args, input_names, output_names, opset: int, dynamic_batch: bool, where: str,
                  verbose: bool = False):
    """Export ``gm`` with the TorchScript-based exporter (opset <= 17 for TensorRT 8.5/8.6).

    What torch prints meanwhile (warnings, and on failure the whole TorchScript graph, from C++)
    is shown only when ``verbose``; otherwise a failure's message carries it if it is short.
    """
    torch = require("torch")
    axes = {n: {0: "batch"} for n in list(input_names) + list(output_names)} if dynamic_batch else None
    buf = io.BytesIO()
    with warnings.catch_warnings(), contextlib.ExitStack() as stack:
        warnings.simplefilter("ignore")
        printed = (lambda: "") if verbose else stack.enter_context(captured_output())
        try:
            torch.onnx.export(
                gm, tuple(args), buf, input_names=list(input_names), output_names=list(output_names),
                opset_version=opset, dynamic_axes=axes, do_constant_folding=True, dynamo=False,
            )
        except Exception as err:
            raise ExportError(f"ONNX export of {where} failed (opset {opset}): {type(err).__name__}: {err}"
                              f"{detail(printed())}") from err
    return onnx.load_from_string(buf.getvalue())


def check(model, where: str):
    """onnx.checker plus strict shape inference; returns the inferred model."""
    try:
        onnx.checker.check_model(model, full_check=False)
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as err:
        raise ExportError(f"the ONNX graph of {where} does not check: {err}") from err


def _spec(value_info) -> dict:
    t = value_info.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
    return {"name": value_info.name, "shape": dims, "dtype": _DTYPES.get(t.elem_type, str(t.elem_type))}


def io_specs(model) -> tuple[list[dict], list[dict]]:
    """Input and output tensor specs of a graph (initializers excluded)."""
    inits = {i.name for i in model.graph.initializer}
    ins = [_spec(v) for v in model.graph.input if v.name not in inits]
    outs = [_spec(v) for v in model.graph.output]
    return ins, outs
