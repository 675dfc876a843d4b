"""The serve-cpu scenario without running it: where it finds the serve venv, why it skips, and
how its recorded result lands in RESULTS.md (the real run needs .venv-serve: make test-serve)."""

import json

from mesc.benchmarks import scenarios
from mesc.benchmarks.results_md import serve_section
from mesc.benchmarks.serve_scenario import SERVE_PYTHON_ENV


def _result(load):
    return {"benchmark": "serve_load", "scenario": "serve-cpu", "about": "served", "recorded": "2026-01-01T00:00:00Z",
            "package": "<pkg>", "server": "mesc serve", "wall_seconds": 60.0, "load_average": load,
            "machine": {"device": "AMD EPYC", "cpu_cores": 2, "onnxruntime": "1.0", "numpy": "1.26", "python": "3.11"},
            "runs": [{"mode": "calibrated", "clients": 4, "requests": 48, "throughput_ips": 150.0, "p50_ms": 20.0,
                      "p99_ms": 40.0, "mean_batch": 1.9}]}


def test_listed_and_skipped_with_the_command_that_creates_the_serve_venv(monkeypatch, tmp_path):
    s = scenarios.SCENARIOS["serve-cpu"]
    monkeypatch.setenv(SERVE_PYTHON_ENV, str(tmp_path / "no-python"))
    why = s.unavailable()
    assert "make .venv-serve/.mesc-installed" in why and SERVE_PYTHON_ENV in why
    monkeypatch.setenv(SERVE_PYTHON_ENV, __import__("sys").executable)
    assert s.unavailable() is None


def test_recorded_as_serve_load_json_with_its_table(tmp_path):
    path = scenarios.write_results(_result({"before": 0.5, "after": 0.7}), tmp_path)
    assert path.name == "serve_load_cpu.json" and json.loads(path.read_text())["scenario"] == "serve-cpu"
    text = (tmp_path / "RESULTS.md").read_text()
    assert "## serve-cpu" in text and "| calibrated | 4 | 48 | 150.0 | 20.0 | 40.0 | 1.90 |" in text
    assert "shared" not in text


def test_a_busy_machine_is_said():
    assert "the machine was shared" in "\n".join(serve_section(_result({"before": 5.1, "after": 4.0})))
