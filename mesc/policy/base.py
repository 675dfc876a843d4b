"""The interface of an exit policy object (:class:`ExitPolicy`), what
:func:`mesc.policy.get_policy` returns: ``score(logits) -> (N,)`` and ``decide(scores,
**thresholds) -> (N,) bool``."""

from __future__ import annotations

import numpy as np

from mesc.errors import MescError
from mesc.policy.confidence import check_threshold


class ExitPolicy:
    """Base of all exit policies.

    ``score(logits) -> (N,)`` maps one exit's logits to one number per image; ``decide(scores,
    **thresholds) -> (N,) bool`` turns scores into exit decisions. Thresholds not passed to
    ``decide`` come from ``params`` (the values given at construction).
    """

    name: str = "base"
    threshold_names: tuple = ()

    def __init__(self, **params):
        self.params = dict(params)

    def score(self, logits) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def decide(self, scores, **thresholds) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, logits, **thresholds) -> np.ndarray:
        return self.decide(self.score(logits), **thresholds)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"

    # helpers for subclasses
    def _thresholds(self, given: dict) -> dict:
        unknown = set(given) - set(self.threshold_names)
        if unknown:
            raise MescError(f"policy {self.name!r} takes thresholds {list(self.threshold_names)}, "
                            f"got unknown {sorted(unknown)}")
        out = {}
        for key in self.threshold_names:
            value = given.get(key, self.params.get(key))
            if value is None:
                raise MescError(f"policy {self.name!r} needs threshold {key!r} (pass it to decide or at construction)")
            out[key] = check_threshold(key, value)
        return out

    @staticmethod
    def _scores(scores) -> np.ndarray:
        s = np.asarray(scores)
        if s.ndim != 1 or not np.issubdtype(s.dtype, np.number):
            raise MescError(f"scores must be a numeric array of shape (N,), got shape {s.shape} dtype {s.dtype}")
        return s


class ThresholdPolicy(ExitPolicy):
    """A policy that exits when its score reaches ``th`` (every kind compared with ``>=``)."""

    threshold_names = ("th",)

    def decide(self, scores, **thresholds):
        return self._scores(scores) >= self._thresholds(thresholds)["th"]


__all__ = ["ExitPolicy", "ThresholdPolicy"]
