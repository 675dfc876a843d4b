"""What a served request may hold, and how it is checked: the tensor and parameter names of the
served model, image decoding and per-request overrides. Plain numpy and Pillow: no Triton here,
so the rules are testable without a server.

The overrides are Triton request parameters (not tensors): ``exit`` (budgeted mode: an exit
name or 0-based position), ``th_img`` and ``th_pix`` (one number for every exit, or a
comma-separated string with one per exit). Requests with different overrides are run as
separate sub-batches of the batch Triton formed.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np

from mesc.runtime.errors import InputError
from mesc.runtime.thresholds import parse_threshold_list, per_exit

# tensor names of the served model
IMAGES = "images"  # uint8 N x H x W x C
ENCODED = "encoded"  # BYTES N x 1: PNG/JPEG/... files
LABELS = "labels"  # int32 N x H' x W'
EXIT = "exit"  # int32 N x 1: the exit's position among the package's exits
EXIT_NAME = "exit_name"  # BYTES N x 1
CONFIDENCES = "confidences"  # float32 N x E: c_img per exit, NaN where that exit was not evaluated
PARAMETERS = ("exit", "th_img", "th_pix")

# per encoded image; the decoded size is further bounded by mesc.runtime.images.MAX_PIXELS
MAX_ENCODED_BYTES = 16 * 2**20


class RequestError(InputError):
    """A request the served model refuses; the message names the input or parameter."""


@dataclasses.dataclass(frozen=True)
class Overrides:
    """One request's parameters, checked and hashable: requests with equal overrides share a
    pipeline call."""

    exit: int | None = None  # exit position (budgeted mode)
    th_img: tuple | None = None  # one per exit
    th_pix: tuple | None = None


def parse_overrides(parameters: dict | None, exit_names: list[str]) -> Overrides:
    params = dict(parameters or {})
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise RequestError(f"unknown request parameter(s) {', '.join(map(repr, unknown))}; "
                           f"the served model takes {', '.join(PARAMETERS)}")
    return Overrides(exit=_exit(params.get("exit"), exit_names),
                     th_img=_thresholds("th_img", params.get("th_img"), exit_names),
                     th_pix=_thresholds("th_pix", params.get("th_pix"), exit_names))


def _exit(value, exit_names):
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise RequestError(f"parameter 'exit': expected an exit name or position, got {value!r}")
    text = str(value).strip()
    if text in exit_names:
        return exit_names.index(text)
    if text.lstrip("-").isdigit() and 0 <= int(text) < len(exit_names):
        return int(text)
    raise RequestError(f"parameter 'exit': unknown exit {value!r}; the package has "
                       f"{', '.join(exit_names)} (or positions 0..{len(exit_names) - 1})")


def _thresholds(key, value, exit_names):
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise RequestError(f"parameter '{key}': expected a number in [0, 1], got {value!r}")
    try:
        return tuple(per_exit(parse_threshold_list(value), exit_names))
    except ValueError as err:
        raise RequestError(f"parameter '{key}': {err}") from None


class _Encoded(io.BytesIO):
    """Encoded bytes that name their place in the request in error messages."""

    def __init__(self, data: bytes, where: str):
        super().__init__(data)
        self.where = where

    def __str__(self):
        return self.where

    __repr__ = __str__  # Pillow names the file by its repr


def request_images(data: dict, hwc: tuple, max_bytes: int = MAX_ENCODED_BYTES) -> np.ndarray:
    """The request's images as N x H x W x C uint8, from exactly one of its two inputs. Triton
    has already checked the declared shapes and dtypes of ``images``; encoded files are decoded
    here and must have the package's size."""
    from mesc.runtime.images import read_image

    given = [k for k in (IMAGES, ENCODED) if k in data]
    if len(given) != 1:
        raise RequestError(f"send exactly one of the inputs '{IMAGES}' (uint8 N x H x W x C) and '{ENCODED}' "
                           f"(BYTES N x 1, PNG or JPEG files); got {' and '.join(given) or 'neither'}")
    if IMAGES in data:
        x = np.asarray(data[IMAGES])
        if x.dtype != np.uint8 or x.shape[1:] != tuple(hwc):
            raise RequestError(f"input '{IMAGES}': expected uint8 N x {' x '.join(map(str, hwc))}, "
                               f"got {x.dtype} {tuple(x.shape)}")
        return x
    blobs = np.asarray(data[ENCODED], dtype=object).reshape(-1)
    out = np.empty((len(blobs), *hwc), np.uint8)
    for i, blob in enumerate(blobs):
        where = f"input '{ENCODED}'[{i}]"
        if not isinstance(blob, bytes):
            raise RequestError(f"{where}: expected the bytes of a PNG or JPEG file")
        if len(blob) > max_bytes:
            raise RequestError(f"{where}: {len(blob)} bytes, more than the {max_bytes} this server accepts per image")
        try:
            out[i] = read_image(_Encoded(blob, where), size=hwc[:2], channels=hwc[2])
        except InputError as err:
            raise RequestError(str(err).replace("pass --resize to resize it", "send images of that size")) from None
    return out
