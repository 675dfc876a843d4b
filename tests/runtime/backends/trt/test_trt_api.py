"""mesc's TensorRT code against the real ``tensorrt`` module, no GPU needed (marked tensorrt).

PyPI's tensorrt 8.5.3.1 for CPython 3.8 (JetPack 5's TensorRT line) imports on a machine without
a GPU; `make test-trt85` runs this there. The names are read from mesc's source, so a new use is
checked too: every attribute taken from the tensorrt module (classes, enums and their members),
every method or property used on a TensorRT object (engines, execution contexts, the runtime,
the inspector, the builder config polygraphy hands over) and every keyword passed to one, and
every polygraphy loader mesc imports with the keywords it passes.

What a name's object is comes from the code (``trt.Runtime(...)`` is a Runtime; a method's result
is the class its binding's signature returns) or, for parameters and loop variables, from
mesc's names for them (:data:`CONVENTIONS`).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re

import pytest
from source_tree import syntax_trees

pytestmark = pytest.mark.tensorrt

# what mesc calls TensorRT objects where the code does not say (parameters, loop variables)
CONVENTIONS = {"engine": "ICudaEngine", "ctx": "IExecutionContext", "context": "IExecutionContext",
               "runtime": "Runtime", "inspector": "EngineInspector", "cfg": "IBuilderConfig",
               "builder": "Builder", "network": "INetworkDefinition", "parser": "OnnxParser",
               "layer": "ILayer", "tensor": "ITensor"}
# calls that return the tensorrt module (mesc.lazy.require and compat.tensorrt)
MODULE_CALLS = {"tensorrt", "require"}
MODULE = object()  # the type of a name bound to the tensorrt module


@pytest.fixture(scope="module")
def trt():
    return importlib.import_module("tensorrt")


def _returned_class(trt, method):
    """The TensorRT class a binding returns, read from its pybind11 signature
    ('deserialize_cuda_engine(self: ..., serialized_engine: buffer) -> tensorrt.tensorrt.ICudaEngine')."""
    m = re.search(r"->\s*tensorrt\.tensorrt\.(\w+)", getattr(method, "__doc__", None) or "")
    return getattr(trt, m.group(1), None) if m else None


def _keywords_of(fn) -> set[str] | None:
    """Keyword names ``fn`` accepts: from its signature, or its pybind11 docstring (every overload)."""
    try:
        params = inspect.signature(fn).parameters.values()
        if any(p.kind == p.VAR_KEYWORD for p in params):
            return None  # takes any keyword
        return {p.name for p in params}
    except (TypeError, ValueError):
        pass
    doc = getattr(fn, "__doc__", None) or ""
    names = set()
    for sig in re.findall(r"\w+\((.*?)\)\s*->", doc):
        names.update(part.split(":")[0].strip() for part in sig.split(",") if part.strip())
    return names or None


class _Uses(ast.NodeVisitor):
    """(what, object, attribute or keyword) for every TensorRT or polygraphy name a module uses."""

    def __init__(self, trt, module_name):
        self.trt, self.module_name, self.uses, self.types = trt, module_name, [], {}

    # what an expression is: the tensorrt module, a TensorRT/polygraphy class or enum, or unknown
    def type_of(self, node):
        trt = self.trt
        if isinstance(node, ast.Name):
            if node.id in self.types:
                return self.types[node.id]
            if node.id == "trt":
                return MODULE
            return getattr(trt, CONVENTIONS[node.id]) if node.id in CONVENTIONS else None
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "self" and node.attr == "trt":
                return MODULE
            owner = self.type_of(node.value)
            if owner is MODULE:
                return getattr(trt, node.attr, None)
            if inspect.isclass(owner):
                value = getattr(owner, node.attr, None)
                return value if inspect.isclass(value) else None
            return None
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            if name in MODULE_CALLS and (name == "tensorrt" or (node.args and isinstance(node.args[0], ast.Constant)
                                                                and node.args[0].value == "tensorrt")):
                return MODULE
            callee = self.type_of(node.func)
            if inspect.isclass(callee):
                return callee  # a constructor
            if isinstance(node.func, ast.Attribute):
                owner = self.type_of(node.func.value)
                if inspect.isclass(owner) and hasattr(owner, node.func.attr):
                    return _returned_class(trt, getattr(owner, node.func.attr))
        return None

    def visit_FunctionDef(self, node):
        outer = dict(self.types)
        for arg in node.args.args:
            self.types.pop(arg.arg, None)  # a parameter shadows; CONVENTIONS may still type it
        self.generic_visit(node)
        self.types = outer

    def visit_ImportFrom(self, node):
        if (node.module or "").startswith("polygraphy"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                self.uses.append(("polygraphy", module, alias.name))
                if hasattr(module, alias.name):
                    self.types[alias.asname or alias.name] = getattr(module, alias.name)
        self.generic_visit(node)

    def visit_Assign(self, node):
        self.generic_visit(node)
        kind = self.type_of(node.value)
        for target in node.targets:
            if isinstance(target, ast.Name) and kind is not None:
                self.types[target.id] = kind

    def visit_Attribute(self, node):
        owner = self.type_of(node.value)
        if owner is MODULE or (inspect.isclass(owner) and owner.__module__.startswith("tensorrt")):
            self.uses.append(("tensorrt", self.trt if owner is MODULE else owner, node.attr))
        self.generic_visit(node)

    def visit_Call(self, node):
        self.generic_visit(node)
        keywords = [k.arg for k in node.keywords if k.arg]
        if not keywords:
            return
        fn = None
        if isinstance(node.func, ast.Attribute):
            owner = self.type_of(node.func.value)
            if inspect.isclass(owner) and (owner.__module__.startswith(("tensorrt", "polygraphy"))):
                fn = getattr(owner, node.func.attr, None)
        elif isinstance(node.func, ast.Name):
            callee = self.type_of(node.func)
            if inspect.isclass(callee) and callee.__module__.startswith(("tensorrt", "polygraphy")):
                fn = callee
        if fn is not None:
            accepted = _keywords_of(fn)
            for k in keywords:
                self.uses.append(("keyword", (fn, accepted), k))


def _binds_tensorrt(name, tree) -> bool:
    """Does the module take the tensorrt module or polygraphy's TensorRT backend anywhere? Every
    module of the TensorRT backend counts (policy_precision is handed the module as ``trt``)."""
    if name.startswith("mesc.runtime.backends.trt."):
        return True
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("polygraphy.backend.trt"):
            return True
        if isinstance(node, ast.Import) and any(a.name == "tensorrt" for a in node.names):
            return True
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            if name == "tensorrt" or (name == "require" and node.args and isinstance(node.args[0], ast.Constant)
                                      and node.args[0].value in ("tensorrt", "polygraphy.cuda")):
                return True
    return False


@pytest.fixture(scope="module")
def uses(trt):
    trees = syntax_trees()
    found = {}
    for name, tree in trees.items():
        if _binds_tensorrt(name, tree):
            visitor = _Uses(trt, name)
            visitor.visit(tree)
            found[name] = visitor.uses
    return found


def test_the_tensorrt_code_is_found(uses):
    modules = set(uses)
    assert {"mesc.runtime.backends.trt.compat", "mesc.runtime.backends.trt.loader",
            "mesc.runtime.backends.trt.runner", "mesc.runtime.backends.trt.policy_precision"} <= modules, modules
    names = {attr for found in uses.values() for _, _, attr in found}
    # the ones the issue names, as a check that the reading works
    assert {"set_tensor_address", "execute_async_v3", "set_input_shape", "get_tensor_mode", "num_io_tensors",
            "deserialize_cuda_engine", "MemoryPoolType", "WORKSPACE", "TensorIOMode", "INPUT", "DLA_core",
            "create_engine_inspector", "LayerInformationFormat", "JSON", "ProfilingVerbosity", "DETAILED",
            "CreateConfig", "NetworkFromOnnxPath", "EngineBytesFromNetwork", "strongly_typed", "min",
            # the policy's layers pinned FP32 (policy_precision, compat.pin_policy)
            "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS", "set_device_type", "get_layer",
            "num_layers", "precision", "set_output_type", "get_output", "is_shape_tensor", "SHAPE",
            "CONSTANT", "float32"} <= names, names


def test_every_tensorrt_name_mesc_uses_exists(trt, uses):
    missing = []
    for module, found in uses.items():
        for what, owner, attr in found:
            if what == "tensorrt" and not hasattr(owner, attr):
                missing.append(f"{module}: {getattr(owner, '__name__', owner)}.{attr}")
            elif what == "polygraphy" and not hasattr(owner, attr):
                missing.append(f"{module}: {owner.__name__} has no {attr}")
            elif what == "keyword":
                fn, accepted = owner
                if accepted is not None and attr not in accepted:
                    missing.append(f"{module}: {getattr(fn, '__qualname__', fn)}() takes no '{attr}' "
                                   f"(it takes {sorted(accepted)})")
    assert not missing, f"TensorRT {trt.__version__}: " + "; ".join(sorted(set(missing)))


def test_mesc_never_calls_trt_nptype(uses):
    # TensorRT 8.5's nptype maps BOOL to np.bool, gone since numpy 1.24
    assert not [m for m, found in uses.items() for w, o, a in found if w == "tensorrt" and a == "nptype"]


def test_mesc_maps_every_tensorrt_85_dtype_itself(trt):
    import numpy as np

    from mesc.runtime.backends.trt.loader import numpy_dtype

    want = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "BOOL": np.bool_,
            "UINT8": np.uint8}
    members = {m for m in dir(trt.DataType) if m.isupper()}
    assert members <= set(want) | {"BF16", "INT64", "FP8", "INT4"}, members
    for member in members & set(want):
        assert numpy_dtype(getattr(trt.DataType, member)) == np.dtype(want[member])
    if tuple(int(x) for x in np.__version__.split(".")[:2]) >= (1, 24) and trt.__version__.startswith("8.5"):
        with pytest.raises(AttributeError), pytest.warns(FutureWarning):  # the trap mesc avoids
            trt.nptype(trt.DataType.BOOL)


def test_polygraphy_at_the_floor_builds_for_this_tensorrt(trt):
    import polygraphy

    from mesc.runtime.backends.trt import compat

    compat.check_polygraphy(trt.__version__)  # raises where polygraphy is too old
    from polygraphy.backend.trt import (Calibrator, CreateConfig, EngineBytesFromNetwork,  # noqa: F401
                                        EngineFromBytes, NetworkFromOnnxPath, PostprocessConfig, Profile)

    assert polygraphy.__version__


def test_mesc_reports_tensorrt_853_and_applies_its_85_rules(trt):
    """What tests/engines/test_targets.py claims with version strings, on the real 8.5.3."""
    from onnx import TensorProto, helper

    from mesc.engines.targets import check_build_request, check_onnx_ops, parse_version, plan_build
    from mesc.errors import MescError
    from mesc.runtime.backends.trt import compat

    version = compat.trt_version()
    assert version == trt.__version__ and parse_version(version)[:3] == (8, 5, 3)
    # weakly typed: the builder flags give the precision
    fp16 = plan_build("xavier", "fp16", version)
    assert not fp16.strongly_typed and fp16.fp16_flag and not fp16.int8_flag and fp16.source == "fp16"
    int8 = plan_build("xavier", "int8", version)
    assert int8.int8_flag and int8.fp16_flag and int8.source == "int8" and not int8.implicit_int8
    # DLA on 8.x: no explicit Q/DQ there, so INT8 is calibrated implicitly on the FP32 graph
    dla = plan_build("xavier", "int8", version, dla_core=1)
    assert dla.implicit_int8 and dla.source == "fp32" and dla.gpu_fallback and dla.variant == "int8-dla1"
    with pytest.raises(MescError, match="needs TensorRT >= 8.6"):  # Orin's JetPack 6
        check_build_request("orin", "fp16", version)
    # the 8.5 parser: opset 17 at most, no Equal on bool tensors
    x = helper.make_tensor_value_info("x", TensorProto.BOOL, [1])
    y = helper.make_tensor_value_info("y", TensorProto.BOOL, [1])
    graph = helper.make_graph([helper.make_node("Equal", ["x", "x"], ["y"], name="eq")], "g", [x], [y])
    with pytest.raises(MescError, match="Equal on bool"):
        check_onnx_ops(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), version)
    with pytest.raises(MescError, match="opset 18 is newer than TensorRT 8.5.3"):
        check_onnx_ops(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), version)
    assert compat.polygraphy_floor(version) == (0, 48, 1)


def test_polygraphy_takes_the_config_mesc_makes_for_85(trt):
    """The builder config's keywords for an 8.5 plan (a dict, so the source reading above does not
    see them), with the real enums, into polygraphy's CreateConfig at mesc's floor (building the
    config needs a GPU; making the loader does not)."""
    from polygraphy.backend.trt import CreateConfig, Profile

    from mesc.engines.targets import plan_build
    from mesc.runtime.backends.trt import compat

    plan = plan_build("xavier", "int8", compat.trt_version(), dla_core=0)
    kwargs = compat.config_kwargs(plan, trt, shapes={"image": ((1, 3, 32, 64), (4, 3, 32, 64), (8, 3, 32, 64))})
    assert kwargs["memory_pool_limits"] == {trt.MemoryPoolType.WORKSPACE: plan.workspace_mb << 20}
    assert kwargs["profiling_verbosity"] == trt.ProfilingVerbosity.DETAILED
    assert isinstance(kwargs["profiles"][0], Profile)
    CreateConfig(**kwargs)  # a keyword polygraphy does not take raises TypeError here


def test_the_policy_pinning_uses_what_tensorrt_85_has(trt):
    """What pinning the policy to FP32 relies on beyond the names: the precision is a settable
    property, set_output_type takes (index, dtype), OBEY and PREFER exist (8.2 added them and
    deprecated STRICT_TYPES, NvInfer.h), and trt.float32 is the FLOAT data type."""
    assert isinstance(trt.ILayer.precision, property) and trt.ILayer.precision.fset is not None
    assert "set_output_type(self: tensorrt.tensorrt.ILayer, index: int, dtype: tensorrt.tensorrt.DataType)" in (
        trt.ILayer.set_output_type.__doc__)
    assert trt.float32 == trt.DataType.FLOAT and trt.float16 == trt.DataType.HALF
    flags = trt.BuilderFlag.__members__
    assert {"OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS"} <= set(flags)
    if trt.__version__.startswith("8."):
        assert "STRICT_TYPES" in flags  # still there, deprecated: mesc does not use it
    assert isinstance(trt.ITensor.is_shape_tensor, property)
