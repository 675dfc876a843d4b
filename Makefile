# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mesc-installed
# mesc serve's tests: nvidia-pytriton pins numpy<2, so they get their own venv (no torch in it)
SERVE_VENV  := .venv-serve
SERVE_STAMP := $(SERVE_VENV)/.mesc-installed
# The device side on Python 3.8 (JetPack 5, Jetson AGX Xavier) with the oldest versions setup.cfg
# declares (.ci/floors.py); .ci/python38 finds a 3.8 that runs, or the stage says so and skips.
PY38_VENV  := .venv38
PY38_STAMP := $(PY38_VENV)/.mesc-installed
PY38        = $(shell .ci/python38 2>/dev/null)
# tests that need no torch (packages they use are exported by the main venv: MESC_EXPORT_PYTHON)
PY38_TESTS := tests/test_device_python.py tests/package tests/policy tests/evaluation tests/datasets \
              tests/test_progress.py tests/test_timestamps.py tests/test_light_imports.py tests/test_selftest.py \
              tests/cli tests/runtime tests/engines tests/calibration \
              tests/benchmarks/test_bench.py tests/benchmarks/test_policy_benchmarks.py tests/exporters/policy \
              tests/serving/test_model.py tests/serving/test_requests.py tests/serving/test_repository.py

# TensorRT 8.5 (JetPack 5's line) checked against the real module: PyPI's tensorrt 8.5.3.1 for
# CPython 3.8 on x86-64 with its CUDA 11 wheels (~1.5 GB, kept in TRT85_WHEELS between runs) imports
# without a GPU; polygraphy at mesc's floor, numpy the newest for 3.8 (TensorRT 8.5's trt.nptype
# fails there). A separate target for its download; CI runs it after make test.
TRT85_VENV   := .venv38-trt
TRT85_STAMP  := $(TRT85_VENV)/.mesc-installed
TRT85_WHEELS ?= $(HOME)/.cache/mesc/wheels-trt85
TRT85_PINS   := tensorrt==8.5.3.1 nvidia-cuda-runtime-cu11 nvidia-cublas-cu11 nvidia-cudnn-cu11==8.5.0.96
TRT85_TESTS  := tests/runtime/backends/trt tests/engines

.PHONY: demo test test-serve test-py38 test-trt85 bench clean

$(STAMP): setup.cfg setup.py pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The whole flow on the embedded demo model: split, measure every segment on this machine,
# make labelled synthetic scenes, choose the exits and thresholds that are fastest here within
# 0.5 pp mIoU of the final exit with a guarantee on new scenes (--risk 0.1: plain thresholds
# overshoot their bound on new images; the guarantee needs at least 471 calibration scenes at
# 0.5 pp, and more of them cost it less latency: 0.51x of the final exit's at 1000, 0.41x at
# 2000 in benchmarks/results/risk_demo_3000_cpu.json; 2000 are written in seconds), then run with
# early exit.
demo: $(STAMP)
	$(BIN)/mesc export -o out/demo --policy-at native --force
	$(BIN)/mesc bench out/demo --warmup 3 --iters 20 --baseline none --record
	$(BIN)/mesc synth-data -o out/data/calib --count 2000 --seed 11 --force
	$(BIN)/mesc synth-data -o out/data/test --count 48 --seed 12 --force
	$(BIN)/mesc calibrate out/demo --data out/data/calib --max-drop 0.5 --risk 0.1 --write --report out/demo-calibration.json --force
	@echo "The guarantee: with probability at least 90 % over the draw of these 2000 calibration scenes, new scenes like them lose on average at most 0.5 pp mIoU against the final exit alone."
	$(BIN)/mesc inspect out/demo
	$(BIN)/mesc run out/demo out/data/test/images -o out/demo-run --force

$(SERVE_STAMP): setup.cfg setup.py pyproject.toml
	$(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/pip install -q 'numpy<2' pytest -e '.[serve]'
	touch $(SERVE_STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q
	$(MAKE) test-serve
	$(MAKE) test-py38

# the real Triton server on loopback ports (mesc serve through PyTriton, and the bundled tritonserver
# over a --model-repository); the demo package is exported by the main venv
test-serve: $(STAMP) $(SERVE_STAMP)
	MESC_EXPORT_PYTHON=$(abspath $(BIN)/python) $(SERVE_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/serving/test_served.py tests/serving/test_tritonserver.py

$(PY38_STAMP): setup.cfg setup.py pyproject.toml .ci/floors.py
	rm -rf $(PY38_VENV)
	$(PY38) -m venv $(PY38_VENV)
	$(PY38_VENV)/bin/pip install -q --upgrade pip
	$(PY38) .ci/floors.py prepare data > $(PY38_VENV)/floors.txt
	$(PY38_VENV)/bin/pip install -q -c $(PY38_VENV)/floors.txt -e '.[prepare,data]' 'pytest>=7' 'hypothesis>=6.80' vermin
	touch $@

test-py38: $(STAMP)
	@if [ -z "$(PY38)" ]; then .ci/python38 || echo "skipping the Python 3.8 stage"; \
	else $(MAKE) --no-print-directory $(PY38_STAMP) && \
	MESC_EXPORT_PYTHON=$(abspath $(BIN)/python) $(PY38_VENV)/bin/python -m pytest -q -p no:cacheprovider $(PY38_TESTS); fi

$(TRT85_STAMP): setup.cfg setup.py pyproject.toml .ci/floors.py
	rm -rf $(TRT85_VENV)
	$(PY38) -m venv $(TRT85_VENV)
	$(TRT85_VENV)/bin/pip install -q --upgrade pip
	$(TRT85_VENV)/bin/pip download -q -d $(TRT85_WHEELS) $(TRT85_PINS)
	$(TRT85_VENV)/bin/pip install -q --no-index --find-links $(TRT85_WHEELS) $(TRT85_PINS)
	$(PY38) .ci/floors.py trt | grep '^polygraphy==' > $(TRT85_VENV)/floors.txt
	$(TRT85_VENV)/bin/pip install -q -c $(TRT85_VENV)/floors.txt -e . polygraphy 'pytest>=7' 'hypothesis>=6.80'
	touch $@

test-trt85: $(STAMP)
	@if [ -z "$(PY38)" ]; then .ci/python38 || echo "skipping the TensorRT 8.5 stage (it needs Python 3.8)"; \
	else $(MAKE) --no-print-directory $(TRT85_STAMP) && \
	MESC_EXPORT_PYTHON=$(abspath $(BIN)/python) $(TRT85_VENV)/bin/python -m pytest -q -p no:cacheprovider -rs $(TRT85_TESTS); fi

bench: $(STAMP)
	$(BIN)/python -m mesc.benchmarks

clean:
	rm -rf $(VENV) $(SERVE_VENV) $(PY38_VENV) $(TRT85_VENV) out build *.egg-info
