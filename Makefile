# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mesc-installed
# mesc serve's tests: nvidia-pytriton pins numpy<2, so they get their own venv (no torch in it)
SERVE_VENV  := .venv-serve
SERVE_STAMP := $(SERVE_VENV)/.mesc-installed

.PHONY: demo test test-serve bench clean

$(STAMP): setup.cfg setup.py pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The whole flow on the embedded demo model: split, measure every segment on this machine,
# make labelled synthetic scenes, choose the exits and thresholds that are fastest here within
# 0.5 pp mIoU of the final exit with a guarantee on new scenes (--risk 0.1: plain thresholds
# overshoot their bound on new images; the guarantee needs at least 471 calibration scenes at
# 0.5 pp, and more of them cost it less latency; 1000 are written in seconds), then run with
# early exit.
demo: $(STAMP)
	$(BIN)/mesc export -o out/demo --policy-at native --force
	$(BIN)/mesc bench out/demo --warmup 3 --iters 20 --baseline none --record
	$(BIN)/mesc synth-data -o out/data/calib --count 1000 --seed 11 --force
	$(BIN)/mesc synth-data -o out/data/test --count 48 --seed 12 --force
	$(BIN)/mesc calibrate out/demo --data out/data/calib --max-drop 0.5 --risk 0.1 --write --report out/demo-calibration.json --force
	@echo "The guarantee: with probability at least 90 % over the draw of these 1000 calibration scenes, new scenes like them lose on average at most 0.5 pp mIoU against the final exit alone."
	$(BIN)/mesc inspect out/demo
	$(BIN)/mesc run out/demo out/data/test/images -o out/demo-run --force

$(SERVE_STAMP): setup.cfg setup.py pyproject.toml
	$(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/pip install -q 'numpy<2' pytest -e '.[serve]'
	touch $(SERVE_STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q
	$(MAKE) test-serve

# the real Triton server on loopback ports (mesc serve through PyTriton, and the bundled tritonserver
# over a --model-repository); the demo package is exported by the main venv
test-serve: $(STAMP) $(SERVE_STAMP)
	MESC_EXPORT_PYTHON=$(abspath $(BIN)/python) $(SERVE_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/serving/test_served.py tests/serving/test_tritonserver.py

bench: $(STAMP)
	$(BIN)/python -m mesc.benchmarks

clean:
	rm -rf $(VENV) $(SERVE_VENV) out build *.egg-info
