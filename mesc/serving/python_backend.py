"""The Triton Python-backend model of a ``mesc serve --model-repository`` repository.

The repository's ``model.py`` imports :class:`TritonPythonModel` from here, so the code that runs
inside ``tritonserver`` is mesc's own: the same request checks (:mod:`mesc.serving.requests`) and
the same batching by overrides (:class:`mesc.serving.model.ServedPipeline`) as ``mesc serve``.
Unlike PyTriton, the Python backend answers every request on its own, so a bad request gets its
own error and the requests Triton batched with it still run.

This module runs in the Python that Triton's Python-backend stub embeds: Python 3.8 on Triton for
JetPack 5, 3.10 in the Triton containers and on JetPack 6. It imports nothing newer, and
``triton_python_backend_utils`` (which only exists inside that stub) only when Triton calls in.
"""

from __future__ import annotations

import json
from pathlib import Path

from mesc.serving.requests import ENCODED, IMAGES, MAX_ENCODED_BYTES

# the model's config.pbtxt parameters (string values; mesc.serving.repository writes them)
PARAMETERS = ("backend", "target", "precision", "max_encoded_bytes", "max_images")


class _Request:
    """A Triton request as :class:`~mesc.serving.model.ServedPipeline` reads one: ``data``
    (the inputs sent) and ``parameters``."""

    def __init__(self, data: dict, parameters: dict):
        self.data = data
        self.parameters = parameters


def config_parameters(model_config: dict) -> dict:
    """The ``parameters`` of a model config (as Triton hands it over, in JSON) as name -> string."""
    return {k: (v or {}).get("string_value", "") for k, v in (model_config.get("parameters") or {}).items()}


def instance_device(kind: str, device_id) -> str:
    """mesc's device for a Triton model instance: its GPU for ``KIND_GPU``, else the CPU."""
    return f"cuda:{int(device_id)}" if str(kind).upper() in ("GPU", "KIND_GPU") else "cpu"


def _parameters(request) -> dict:
    """A request's parameters (a JSON string from the backend); none where the Python backend
    predates ``parameters()`` (triton-inference-server/python_backend pull request 213, merged in
    March 2023: older Triton releases for JetPack lack it), so plain requests still run there."""
    get = getattr(request, "parameters", None)
    return json.loads(get() or "{}") if get is not None else {}


class TritonPythonModel:
    """One Triton model instance: one pipeline of the package in ``<version>/package``."""

    def initialize(self, args: dict) -> None:
        from mesc.runtime import load
        from mesc.serving.model import ServedPipeline

        config = json.loads(args["model_config"])
        params = config_parameters(config)
        package = Path(args["model_repository"]) / str(args["model_version"]) / "package"
        device = instance_device(args.get("model_instance_kind", "CPU"), args.get("model_instance_device_id", 0))
        self.pipe = load(package, backend=params.get("backend") or "auto", device=device,
                         target=params.get("target") or None, precision=params.get("precision") or None)
        max_images = int(params["max_images"]) if params.get("max_images") else None
        if int(config.get("max_batch_size") or 0) > 0:
            max_images = None  # Triton refuses larger requests itself
        self.served = ServedPipeline(self.pipe, int(params.get("max_encoded_bytes") or MAX_ENCODED_BYTES),
                                     max_images=max_images)

    def execute(self, requests) -> list:
        import triton_python_backend_utils as pb_utils

        from mesc.serving.requests import RequestError

        wrapped = []
        for req in requests:
            data = {}
            for name in (IMAGES, ENCODED):
                tensor = pb_utils.get_input_tensor_by_name(req, name)
                if tensor is not None:
                    data[name] = tensor.as_numpy()
            wrapped.append(_Request(data, _parameters(req)))
        responses = []
        for out in self.served.answer_each(wrapped):
            if isinstance(out, RequestError):
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(out))))
            else:
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(name, value) for name, value in out.items()]))
        return responses

    def finalize(self) -> None:
        pipe = getattr(self, "pipe", None)
        if pipe is not None:
            pipe.close()
