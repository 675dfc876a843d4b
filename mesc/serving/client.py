"""A small client for a ``mesc serve`` model over HTTP or gRPC (``tritonclient``, in the
``[serve]`` extra)::

    from mesc.serving.client import Client
    with Client("grpc://gpu-node:8001", model="demo") as client:   # or http://gpu-node:8000
        for r in client.infer(images_nhwc_uint8, exit=None, th_img="0.8,0.9,0"):
            print(r.exit_name, r.confidences, r.labels.shape)
        client.infer(encoded=[open("scene.png", "rb").read()])
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mesc.errors import MescError
from mesc.serving.requests import CONFIDENCES, ENCODED, EXIT, EXIT_NAME, IMAGES, LABELS


@dataclasses.dataclass
class Served:
    """One image's answer from the server."""

    labels: np.ndarray  # H x W int32
    exit: int  # position among the package's exits
    exit_name: str
    confidences: np.ndarray  # c_img per exit, NaN where not evaluated


def split_url(url: str) -> tuple[str, str]:
    """(``"http"`` or ``"grpc"``, ``host:port``) from ``http://host:port``, ``grpc://host:port``
    or a bare ``host:port`` (HTTP)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "http", url
    if scheme not in ("http", "grpc"):
        raise MescError(f"{url}: expected http://host:port or grpc://host:port")
    return scheme, rest.rstrip("/")


def server_message(err: Exception) -> str:
    """The served model's own error line out of Triton's message (PyTriton sends the traceback)."""
    text = str(err)
    lines = [ln.strip() for ln in text.splitlines() if "RequestError: " in ln]
    return lines[-1].split("RequestError: ", 1)[1] if lines else text.strip().splitlines()[-1] if text.strip() else repr(err)


def request_array(images) -> np.ndarray:
    """``images`` as the ``images`` input takes them, or a :class:`MescError` naming what is
    wrong: the server checks the shape, but tritonclient refuses another dtype with its own
    exception, before any request is sent."""
    data = np.asarray(images)
    if data.dtype != np.uint8 or data.ndim != 4:
        raise MescError(f"images: expected a uint8 N x H x W x C array, got {data.dtype} {tuple(data.shape)}"
                        + ("; convert with images.astype(np.uint8) from 0..255 values" if data.ndim == 4 else ""))
    return np.ascontiguousarray(data)


def request_files(encoded) -> np.ndarray:
    """``encoded`` (PNG/JPEG files as bytes) as the N x 1 ``encoded`` input."""
    if isinstance(encoded, (bytes, bytearray, str)) or not hasattr(encoded, "__iter__"):
        raise MescError(f"encoded: expected a list of PNG/JPEG files as bytes, got {type(encoded).__name__}")
    blobs = list(encoded)
    bad = next((i for i, b in enumerate(blobs) if not isinstance(b, (bytes, bytearray, memoryview))), None)
    if bad is not None or not blobs:
        what = "an empty list" if not blobs else f"item {bad} is {type(blobs[bad]).__name__}"
        raise MescError(f"encoded: expected a list of PNG/JPEG files as bytes; {what}")
    return np.array([[bytes(b)] for b in blobs], dtype=object)


class ServerError(MescError):
    """The server refused a request or could not answer it; the message is the server's."""


class Client:
    def __init__(self, url: str, model: str, timeout_s: float = 60.0):
        from mesc.lazy import require

        self.protocol, self.address = split_url(url)
        self.model = model
        self.timeout_s = timeout_s
        self._tc = require(f"tritonclient.{self.protocol}", extra="serve", purpose="the mesc serve client")
        self._client = self._tc.InferenceServerClient(self.address)

    def close(self):
        self._client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def ready(self) -> bool:
        try:
            return bool(self._client.is_model_ready(self.model))
        except Exception:  # noqa: BLE001  (connection refused and the like: not ready yet)
            return False

    def input_shape(self) -> tuple:
        """(H, W, C) of the served model's ``images`` input."""
        meta = self._client.get_model_metadata(self.model)
        inputs = meta["inputs"] if isinstance(meta, dict) else [
            {"name": t.name, "shape": list(t.shape)} for t in meta.inputs]
        shape = next(t["shape"] for t in inputs if t["name"] == IMAGES)
        return tuple(int(d) for d in shape[-3:])

    def infer(self, images: np.ndarray | None = None, encoded=None, exit=None, th_img=None, th_pix=None) -> list[Served]:
        """Send uint8 N x H x W x C ``images`` or a list of encoded files (bytes); ``exit``,
        ``th_img`` and ``th_pix`` become the request parameters of the same names (thresholds:
        a number or a comma-separated string with one per exit)."""
        if (images is None) == (encoded is None):
            raise MescError("give images (uint8 N x H x W x C) or encoded (a list of PNG/JPEG bytes)")
        if images is not None:
            data = request_array(images)
            inp = self._tc.InferInput(IMAGES, list(data.shape), "UINT8")
        else:
            data = request_files(encoded)
            inp = self._tc.InferInput(ENCODED, list(data.shape), "BYTES")
        inp.set_data_from_numpy(data)
        params = {k: v for k, v in (("exit", exit), ("th_img", th_img), ("th_pix", th_pix)) if v is not None}
        outputs = [self._tc.InferRequestedOutput(n) for n in (LABELS, EXIT, EXIT_NAME, CONFIDENCES)]
        kw = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        from tritonclient.utils import InferenceServerException

        try:
            res = self._client.infer(self.model, [inp], outputs=outputs, parameters=params or None, **kw)
        except InferenceServerException as err:
            raise ServerError(server_message(err)) from err
        labels, exits = res.as_numpy(LABELS), res.as_numpy(EXIT).reshape(-1)
        names, conf = res.as_numpy(EXIT_NAME).reshape(-1), res.as_numpy(CONFIDENCES)
        return [Served(labels[i], int(exits[i]), names[i].decode() if isinstance(names[i], bytes) else str(names[i]),
                       conf[i]) for i in range(len(exits))]
