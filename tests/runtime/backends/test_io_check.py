"""A segment's I/O as a backend reports it against its manifest entry (pure: rows, no backend)."""

from mesc.package.schema import Segment
from mesc.runtime.backends.io_check import io_mismatch

SEG = Segment.from_dict({"name": "head0", "kind": "head", "file": "onnx/head0.onnx",
       "inputs": [{"name": "feat", "dtype": "float32", "shape": ["batch", 8, 16, 32]},
                  {"name": "exit0_th_pix", "dtype": "float32", "shape": [1]}],
       "outputs": [{"name": "exit0_logits", "dtype": "float32", "shape": ["batch", "Resize_dim_1", 32, 64]},
                   {"name": "exit0_labels", "dtype": "int32", "shape": ["batch", 32, 64]}]})
INPUTS = [("feat", "float32", [None, 8, 16, 32]), ("exit0_th_pix", "float32", [1])]
OUTPUTS = [("exit0_logits", "float32", [None, 5, 32, 64]), ("exit0_labels", "int32", [None, 32, 64])]


def _with(rows, name, **change):
    return [(n, change.get("dtype", d), change.get("shape", s)) if n == name else (n, d, s) for n, d, s in rows]


def test_matching_io_passes_and_open_dims_are_accepted():
    assert io_mismatch(SEG, INPUTS, OUTPUTS) is None
    # a named inner dim may be static in the graph; a fixed one may be open; an unknown shape passes
    assert io_mismatch(SEG, _with(INPUTS, "feat", shape=[None, None, 16, 32]), OUTPUTS) is None
    assert io_mismatch(SEG, INPUTS, _with(OUTPUTS, "exit0_labels", shape=None)) is None


def test_each_field_is_named():
    cases = [
        (_with(INPUTS, "feat", dtype="float16"), OUTPUTS,
         "input 'feat': manifest says dtype float32, the graph gives float16"),
        (INPUTS, _with(OUTPUTS, "exit0_labels", dtype="int64"),
         "output 'exit0_labels': manifest says dtype int32, the graph gives int64"),
        (_with(INPUTS, "feat", shape=[None, 8, 16, 64]), OUTPUTS,
         "input 'feat': manifest says shape ['batch', 8, 16, 32], the graph gives [None, 8, 16, 64] (dim 3)"),
        (_with(INPUTS, "feat", shape=[None, 8, 16]), OUTPUTS,
         "input 'feat': manifest says rank 4 ['batch', 8, 16, 32], the graph gives rank 3 [None, 8, 16]"),
        (_with(INPUTS, "feat", shape=[1, 8, 16, 32]), OUTPUTS,
         "input 'feat': manifest says dim 0 is dynamic ('batch'), the graph fixes it at 1"),
        ([("x", "float32", [None, 8, 16, 32]), INPUTS[1]], OUTPUTS,
         "input 'feat': the manifest lists it, the graph has no such input (it has ['exit0_th_pix', 'x'])"),
        (INPUTS + [("extra", "float32", [1])], OUTPUTS, "input 'extra': the graph has it, the manifest does not list it"),
        (INPUTS, OUTPUTS[:1], "output 'exit0_labels': the manifest lists it, the graph has no such output"),
    ]
    for inputs, outputs, want in cases:
        got = io_mismatch(SEG, inputs, outputs)
        assert got is not None and got.startswith(want), (got, want)
    assert io_mismatch(SEG, INPUTS, OUTPUTS[:1], what="the engine").endswith("the engine has no such output "
                                                                            "(it has ['exit0_logits'])")
