# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mesc-installed

.PHONY: demo test bench clean

$(STAMP): setup.cfg setup.py pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The whole flow on the embedded demo model: split, measure every segment on this machine,
# make labelled synthetic scenes, choose the exits and thresholds that are fastest here within
# 0.5 pp mIoU of the final exit, then run with early exit.
demo: $(STAMP)
	$(BIN)/mesc export -o out/demo --policy-at native --force
	$(BIN)/mesc bench out/demo --warmup 3 --iters 20 --baseline none --record
	$(BIN)/mesc synth-data -o out/data/calib --count 200 --seed 11 --force
	$(BIN)/mesc synth-data -o out/data/test --count 48 --seed 12 --force
	$(BIN)/mesc calibrate out/demo --data out/data/calib --max-drop 0.5 --write --report out/demo-calibration.json
	$(BIN)/mesc inspect out/demo
	$(BIN)/mesc run out/demo out/data/test/images -o out/demo-run --force

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m mesc.benchmarks

clean:
	rm -rf $(VENV) out build *.egg-info
