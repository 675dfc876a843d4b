"""`mesc serve PKG --model-repository DIR`: what the Triton model folder holds, the output rules it
goes through, and its Python-backend model run against a stand-in for Triton's
`triton_python_backend_utils` (the real tritonserver loads it in test_tritonserver.py)."""

import ast
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import mesc
from mesc.errors import MescError
from mesc.package.schema import EngineBuild
from mesc.serving.repository import MODEL_PY, RepositoryOptions, config_pbtxt, engine_batch_ceiling, model_shape, \
    write_repository
from mesc.serving.requests import CONFIDENCES, ENCODED, EXIT, EXIT_NAME, IMAGES, LABELS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def static_pkg(tmp_path_factory):
    pytest.importorskip("torch")
    from toys import three_exits

    from mesc.exporters.export import ExportOptions, export

    out = tmp_path_factory.mktemp("static") / "toy-static"
    return export(three_exits(), out, options=ExportOptions(input_shape=(2, 3, 32, 64), strides=[2, 4, 4],
                                                            policy="top1", verify=False)).root


def _quiet(_):
    pass


def test_a_dynamic_batch_package_gets_the_dynamic_batcher(served_pkg, tmp_path):
    model = write_repository(served_pkg, tmp_path / "repo", RepositoryOptions(instances=2, max_batch=8), echo=_quiet)
    assert model == tmp_path / "repo" / "toy"
    assert sorted(p.name for p in model.iterdir()) == ["1", "README.md", "config.pbtxt", "mesc-model.json"]
    config = (model / "config.pbtxt").read_text()
    assert 'name: "toy"' in config and 'backend: "python"' in config
    assert "max_batch_size: 8" in config and "max_queue_delay_microseconds: 1000" in config
    assert "dims: [ 32, 64, 3 ]" in config and "dims: [ 3 ]" in config  # images; confidences per exit
    assert "count: 2\n    kind: KIND_CPU" in config and "gpus" not in config
    assert "from mesc.serving.python_backend import TritonPythonModel" in (model / "1" / "model.py").read_text()
    copy = mesc.open_package(model / "1" / "package")  # checksums verified
    assert [ex.name for ex in copy.exits] == ["exit0", "exit1", "exit2"]
    assert json.loads((model / "mesc-model.json").read_text())["written_by"] == "mesc serve --model-repository"
    readme = (model / "README.md").read_text()
    assert "nvcr.io/nvidia/tritonserver" in readme and "JetPack 6" in readme and "JetPack 5" in readme


def test_a_static_batch_package_gets_max_batch_size_0(static_pkg, tmp_path):
    model = write_repository(static_pkg, tmp_path / "repo", RepositoryOptions(device="cuda:1"), echo=_quiet)
    config = (model / "config.pbtxt").read_text()
    assert "max_batch_size: 0" in config and "dynamic_batching" not in config
    assert "dims: [ -1, 32, 64, 3 ]" in config and "dims: [ -1, 1 ]" in config
    assert "kind: KIND_GPU\n    gpus: [ 1 ]" in config
    assert 'key: "max_images"\n  value: { string_value: "16" }' in config


def test_instances_on_every_gpu_and_bad_devices():
    shape = model_shape(types.SimpleNamespace(input=types.SimpleNamespace(shape=("batch", 3, 8, 8), static_batch=None),
                                              exits=[types.SimpleNamespace(name="e0")], engines={}),
                        RepositoryOptions(device="cuda"))
    config = config_pbtxt("m", shape, RepositoryOptions(device="cuda", instances=3))
    assert "count: 3\n    kind: KIND_GPU\n  }" in config
    with pytest.raises(MescError, match="--device gpu0: expected cpu, cuda or cuda:N"):
        config_pbtxt("m", shape, RepositoryOptions(device="gpu0"))


def _engines(**builds):
    return {"host": {v: EngineBuild("host", v, {"precision": v.split("-")[0], "batch": {"min": 1, "opt": m, "max": m}})
                     for v, m in builds.items()}}


def test_the_tensorrt_engines_bound_the_max_batch():
    pkg = types.SimpleNamespace(input=types.SimpleNamespace(shape=("batch", 3, 8, 8), static_batch=None),
                                exits=[types.SimpleNamespace(name="e0")], engines=_engines(fp16=8, int8=4))
    gpu = RepositoryOptions(device="cuda:0")
    assert engine_batch_ceiling(pkg, gpu) == 4
    assert model_shape(pkg, gpu).max_batch == 4
    assert model_shape(pkg, RepositoryOptions(device="cuda:0", precision="fp16")).max_batch == 8
    assert model_shape(pkg, RepositoryOptions(device="cpu")).max_batch == 16  # ONNX Runtime: no engines
    assert model_shape(pkg, RepositoryOptions(device="cuda:0", backend="onnxruntime")).max_batch == 16
    with pytest.raises(MescError, match="--max-batch 6: the package's TensorRT engines take at most 4"):
        model_shape(pkg, RepositoryOptions(device="cuda:0", max_batch=6))


def test_output_rules(served_pkg, tmp_path):
    repo = tmp_path / "repo"
    write_repository(served_pkg, repo, echo=_quiet)
    with pytest.raises(MescError, match="already exists; pass --force"):
        write_repository(served_pkg, repo, echo=_quiet)
    (repo / "toy" / "config.pbtxt").write_text("stale")
    write_repository(served_pkg, repo, RepositoryOptions(force=True, instances=3), echo=_quiet)
    assert "count: 3" in (repo / "toy" / "config.pbtxt").read_text()
    assert not [p for p in repo.iterdir() if p.name.startswith(".")]  # staged and renamed: nothing left
    # another model of the repository is left alone, and a folder mesc did not write is never replaced
    other = repo / "other"
    other.mkdir()
    (other / "config.pbtxt").write_text('name: "other"')
    write_repository(served_pkg, repo, RepositoryOptions(name="other2"), echo=_quiet)
    assert (other / "config.pbtxt").read_text() == 'name: "other"'
    with pytest.raises(MescError, match="--force replaces only a Triton model folder mesc wrote"):
        write_repository(served_pkg, repo, RepositoryOptions(name="other", force=True), echo=_quiet)
    assert (other / "config.pbtxt").read_text() == 'name: "other"'
    # never onto the input: the model folder would be the package, or the repository inside it
    with pytest.raises(MescError, match="contains the input PACKAGE"):
        write_repository(served_pkg, served_pkg.parent, RepositoryOptions(force=True), echo=_quiet)
    with pytest.raises(MescError, match="lies inside the input PACKAGE"):
        write_repository(served_pkg, served_pkg / "triton", echo=_quiet)
    assert mesc.open_package(served_pkg)  # untouched


def test_the_cli_writes_the_repository_and_refuses_server_options(served_pkg, tmp_path):
    cmd = [sys.executable, "-m", "mesc.cli", "serve", str(served_pkg), "--model-repository", str(tmp_path / "r")]
    res = subprocess.run(cmd + ["--http-port", "9000"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "--http-port: tritonserver sets its own address and ports" in res.stderr
    res = subprocess.run(cmd + ["--max-batch", "4"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "wrote model 'toy'" in res.stderr and "max_batch_size: 4" in (tmp_path / "r/toy/config.pbtxt").read_text()
    res = subprocess.run([sys.executable, "-m", "mesc.cli", "serve", str(served_pkg), "--force"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "--force goes with --model-repository" in res.stderr


# --- the Python-backend model against a stand-in for triton_python_backend_utils -------------

class _Tensor:
    def __init__(self, name, array):
        self.name, self.array = name, array

    def as_numpy(self):
        return self.array


class _Error:
    def __init__(self, message):
        self.message = message


class _Response:
    def __init__(self, output_tensors, error=None):
        self.outputs = {t.name: t.array for t in output_tensors}
        self.error = error


class _TritonRequest:
    def __init__(self, params=None, **inputs):
        self.inputs, self.params = inputs, params or {}

    def parameters(self):
        return json.dumps(self.params)


@pytest.fixture
def pb_utils(monkeypatch):
    fake = types.ModuleType("triton_python_backend_utils")
    fake.Tensor, fake.TritonError, fake.InferenceResponse = _Tensor, _Error, _Response
    fake.get_input_tensor_by_name = lambda req, name: _Tensor(name, req.inputs[name]) if name in req.inputs else None
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake)
    return fake


def _args(model_dir, config_json):
    return {"model_config": json.dumps(config_json), "model_repository": str(model_dir), "model_version": "1",
            "model_instance_kind": "CPU", "model_instance_device_id": "0", "model_name": model_dir.name}


def _config_json(static, max_images):
    # the JSON form Triton hands over (parameters as {"string_value": ...})
    return {"max_batch_size": 0 if static else 8,
            "parameters": {"backend": {"string_value": "onnxruntime"}, "max_images": {"string_value": str(max_images)},
                           "target": {"string_value": ""}, "precision": {"string_value": ""},
                           "max_encoded_bytes": {"string_value": "1000000"}}}


def test_the_python_backend_answers_each_request_on_its_own(served_pkg, uint8_images, tmp_path, pb_utils):
    from mesc.serving.python_backend import TritonPythonModel

    model_dir = write_repository(served_pkg, tmp_path / "repo", echo=_quiet)
    instance = TritonPythonModel()
    instance.initialize(_args(model_dir, _config_json(False, 16)))
    try:
        with mesc.load(served_pkg) as pipe:
            want = pipe(uint8_images[:3])
            want_budgeted = pipe(uint8_images[3:5], exit="exit1")
        out = instance.execute([_TritonRequest(images=uint8_images[:3]),
                                _TritonRequest({"th_pix": "0.1,0.2"}, images=uint8_images[:1]),
                                _TritonRequest({"exit": "exit1"}, images=uint8_images[3:5]),
                                _TritonRequest(encoded=np.array([[b"not a png"]], dtype=object))])
        assert out[1].error.message.startswith("parameter 'th_pix'") and out[1].outputs == {}
        assert "input 'encoded'[0]" in out[3].error.message
        for resp, results in ((out[0], want), (out[2], want_budgeted)):
            assert resp.error is None
            assert sorted(resp.outputs) == sorted([LABELS, EXIT, EXIT_NAME, CONFIDENCES])
            for j, r in enumerate(results):
                np.testing.assert_array_equal(resp.outputs[LABELS][j], r.labels)
                assert resp.outputs[EXIT][j, 0] == r.exit_index and resp.outputs[EXIT_NAME][j, 0] == r.exit.encode()
    finally:
        instance.finalize()


def test_the_python_backend_bounds_a_static_models_requests(static_pkg, uint8_images, tmp_path, pb_utils):
    from mesc.serving.python_backend import TritonPythonModel

    model_dir = write_repository(static_pkg, tmp_path / "repo", echo=_quiet)
    instance = TritonPythonModel()
    instance.initialize(_args(model_dir, _config_json(True, 4)))
    try:
        out = instance.execute([_TritonRequest(images=uint8_images[:5]), _TritonRequest(images=uint8_images[:3])])
        assert "5 images in one request, more than the 4 this model takes" in out[0].error.message
        assert out[1].error is None and out[1].outputs[LABELS].shape[0] == 3  # 3 on a batch-2 package: padded
    finally:
        instance.finalize()


# --- what Triton's Python backend imports must parse on a Jetson's Python 3.8 ----------------

@pytest.mark.parametrize("module", ["python_backend", "model", "requests"])
def test_the_modules_triton_imports_keep_to_python_3_8(module):
    path = ROOT / "mesc" / "serving" / f"{module}.py"
    source = path.read_text()
    tree = ast.parse(source, feature_version=(3, 8))
    first = next(n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)))
    assert isinstance(first, ast.ImportFrom) and first.module == "__future__", f"{path}: no postponed annotations"


def test_the_generated_model_py_keeps_to_python_3_8():
    ast.parse(MODEL_PY, feature_version=(3, 8))


def test_requests_from_a_python_backend_without_parameters_still_run():
    from mesc.serving.python_backend import _parameters

    assert _parameters(_TritonRequest({"exit": "exit1"})) == {"exit": "exit1"}
    assert _parameters(types.SimpleNamespace(inputs={})) == {}  # before python_backend's parameters()
