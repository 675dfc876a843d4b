"""The served model's inference callable: one pipeline, one batch of Triton requests at a time.

Triton's dynamic batcher hands over a list of requests; their images are concatenated per
distinct overrides and run in one pipeline call, so a package exported with --dynamic-batch
compacts the batch as images exit (a static-batch package runs its own batch size at a time).
One instance of this class per Triton model instance: a pipeline's thresholds and plans are
mutable, and no two instances share one.
"""

from __future__ import annotations

import warnings

import numpy as np

from mesc.serving.requests import (CONFIDENCES, EXIT, EXIT_NAME, LABELS, MAX_ENCODED_BYTES, Overrides,
                                   RequestError, parse_overrides, request_images)


class ServedPipeline:
    def __init__(self, pipe, max_encoded_bytes: int = MAX_ENCODED_BYTES, max_images: int | None = None):
        self.pipe = pipe
        self.exits = pipe.exit_names
        c, h, w = pipe.chw
        self.hwc = (h, w, c)
        self.max_encoded_bytes = max_encoded_bytes
        # images per request; None where Triton bounds them (a model with max_batch_size > 0)
        self.max_images = max_images
        self.defaults = {name: pipe.thresholds(name) for name in self.exits}

    def __call__(self, requests) -> list[dict]:
        """``requests``: objects with ``.data`` (input name -> array; PyTriton's Request is
        one) and ``.parameters``. Every request is checked before any runs, and one bad request
        fails the whole call: PyTriton 0.7 has no per-request error for a non-decoupled model.
        Its callable must return one dict of arrays per request (``pytriton/proxy/validators.py``
        line 80), and an exception from it becomes a single TritonModelException for every
        request Triton batched together (``pytriton/proxy/inference.py`` line 397,
        ``pytriton/proxy/model.py`` lines 213-216 and 491-492)."""
        parsed = self._parse(requests)
        bad = [f"request {i}: {p}" if len(requests) > 1 else str(p)
               for i, p in enumerate(parsed) if isinstance(p, RequestError)]
        if bad:
            raise RequestError("; ".join(bad))
        return self._answer(parsed)

    def answer_each(self, requests) -> list:
        """Per request, its outputs (a dict of arrays) or the :class:`RequestError` refusing
        it; the good requests run whatever the bad ones held. Triton's Python backend answers
        each request on its own (:mod:`mesc.serving.python_backend`)."""
        return self._answer(self._parse(requests))

    def _parse(self, requests) -> list:
        """Per request, (images, overrides) or the RequestError that refuses it."""
        parsed = []
        for req in requests:
            try:
                images = request_images(req.data, self.hwc, self.max_encoded_bytes)
                if self.max_images is not None and len(images) > self.max_images:
                    raise RequestError(f"{len(images)} images in one request, more than the {self.max_images} "
                                       f"this model takes; split the request")
                parsed.append((images, parse_overrides(req.parameters, self.exits)))
            except RequestError as err:
                parsed.append(err)
        return parsed

    def _answer(self, parsed) -> list:
        """Run the parsed requests, one pipeline call per distinct overrides; a refusal stays
        in its request's place."""
        responses = list(parsed)
        good = [i for i, p in enumerate(parsed) if not isinstance(p, RequestError)]
        for ov in dict.fromkeys(parsed[i][1] for i in good):
            members = [i for i in good if parsed[i][1] == ov]
            results = self._run(np.concatenate([parsed[i][0] for i in members]), ov)
            start = 0
            for i in members:
                n = len(parsed[i][0])
                responses[i] = self._outputs(results[start:start + n])
                start += n
        return responses

    def _run(self, images: np.ndarray, ov: Overrides):
        """One pipeline call with the overrides in force; the package's thresholds after it."""
        changed = ov.th_img is not None or ov.th_pix is not None
        try:
            if changed:
                for k, name in enumerate(self.exits):
                    self.pipe.set_thresholds(name, th_img=ov.th_img[k] if ov.th_img else None,
                                             th_pix=ov.th_pix[k] if ov.th_pix else None)
            with warnings.catch_warnings():
                # the static-batch note is printed once at startup, not per batch
                warnings.simplefilter("ignore", UserWarning)
                return self.pipe(images, exit=ov.exit)
        finally:
            if changed:
                for name, th in self.defaults.items():
                    self.pipe.set_thresholds(name, **th)

    def _outputs(self, results) -> dict:
        conf = np.full((len(results), len(self.exits)), np.nan, np.float32)
        for j, r in enumerate(results):
            for name, c in r.confidences.items():
                if c is not None:
                    conf[j, self.exits.index(name)] = c
        return {LABELS: np.stack([r.labels for r in results]).astype(np.int32),
                EXIT: np.array([[r.exit_index] for r in results], np.int32),
                EXIT_NAME: np.array([[r.exit.encode()] for r in results], dtype=object),
                CONFIDENCES: conf}
