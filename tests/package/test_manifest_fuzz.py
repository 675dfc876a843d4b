"""Any damage to a valid manifest either still loads and runs, or fails with a mesc error: a
hand-edited manifest never crashes deep inside a run with AttributeError, TypeError or an ONNX
Runtime message."""

import copy
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mesc
from mesc.errors import MescError


# values a damaged or hostile manifest may hold where something else was expected
ODD_VALUES = [None, True, 0, -1, 7, 1e9, -0.5, float("nan"), float("inf"), "", "x", "../x.onnx", "/etc/passwd",
              "batch", [], [1], {}, {"a": 1}]


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    from exported import export_toy
    from toy_data import SHAPE

    root = tmp_path_factory.mktemp("fuzz")
    out = {}
    for name, kw in {"graph": dict(policy="top1", policy_at="native", dynamic_batch=True),
                     "host": dict(policy=None)}.items():
        out[name] = export_toy("three_exits", root / name, input_shape=SHAPE, strides=[2, 4, 4], verify=False, **kw)
    return out


def _paths(node, path=()):
    """Every (container path, key) in the manifest."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield path, k
            yield from _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield path, i
            yield from _paths(v, (*path, i))


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield k
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)


def _at(m, path):
    for k in path:
        m = m[k]
    return m


@st.composite
def mutations(draw, manifest):
    """One to three random edits of the manifest, as (description, edit) pairs."""
    m = copy.deepcopy(manifest)
    done = []
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(m))
        if not paths:
            break
        parent_path, key = draw(st.sampled_from(paths))
        parent = _at(m, parent_path)
        value = parent[key]
        kind = draw(st.sampled_from(["delete", "odd", "name", "swap", "reverse", "empty", "negate", "scale"]))
        if kind == "delete":
            del parent[key]
        elif kind == "odd":
            parent[key] = draw(st.sampled_from(ODD_VALUES))
        elif kind == "name":  # another name from the manifest: duplicates, wrong references
            parent[key] = draw(st.sampled_from(sorted(set(_strings(manifest)))))
        elif kind == "swap" and isinstance(parent, list) and len(parent) > 1:
            j = draw(st.integers(0, len(parent) - 1))
            parent[key], parent[j] = parent[j], parent[key]
        elif kind == "reverse" and isinstance(value, list):
            value.reverse()
        elif kind == "empty" and isinstance(value, (list, dict)):
            value.clear()
        elif kind in ("negate", "scale") and isinstance(value, (int, float)) and not isinstance(value, bool):
            parent[key] = -value if kind == "negate" else value * 2
        else:
            continue
        done.append(f"{kind} {'/'.join(map(str, (*parent_path, key)))}")
    return done, m


@st.composite
def damaged(draw):
    name = draw(st.sampled_from(["graph", "host"]))
    manifest = json.loads((_PACKAGES[name] / "mesc.json").read_text())
    return (name, *draw(mutations(manifest)))


_PACKAGES = {}


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(case=damaged())
def _fuzz(case):
    name, edits, manifest = case
    with tempfile.TemporaryDirectory() as tmp:
        d = shutil.copytree(_PACKAGES[name], Path(tmp) / "pkg")
        (d / "mesc.json").write_text(json.dumps(manifest))
        image = np.random.default_rng(0).integers(0, 255, (32, 64, 3), dtype=np.uint8)
        try:
            pipe = mesc.load(d, backend="onnxruntime", device="cpu")
            pipe(image)
            pipe(image, exit=0)
        except MescError:
            pass
        except Exception as err:  # noqa: BLE001  (the point of the test)
            raise AssertionError(f"{name} package, edits {edits}: {type(err).__name__}: {err}") from err


def test_damaged_manifests_load_and_run_or_fail_clearly(packages):
    _PACKAGES.update(packages)
    _fuzz()
