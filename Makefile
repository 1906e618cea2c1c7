# fluidsched developer tasks. `make help` lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export VIRTUAL_ENV := $(abspath $(VENV))
# Python packages the tests and lints need (the package's own runtime needs come from pyproject.toml).
DEV_PACKAGES := "maturin>=1.9.4,<2" "pytest>=8" "hypothesis>=6.100" "pytest-benchmark>=4" "numpy>=1.24" \
	"matplotlib>=3.7" "ruff>=0.6" "mypy>=1.10" "scipy>=1.12"

.PHONY: help
help:  ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-run when this Makefile changes, so that a package added to DEV_PACKAGES reaches existing environments.
$(VENV)/.dev-installed: $(BIN)/python Makefile
	@echo "== installing the test and lint tools into $(VENV)"
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(DEV_PACKAGES)
	touch $@

.PHONY: install-dev
install-dev: $(VENV)/.dev-installed  ## Create .venv with the test and lint tools

.PHONY: build-dev
build-dev: install-dev  ## Build the extension (release profile) into .venv
	@echo "== building the extension into $(VENV) (release profile; cargo prints each crate it compiles)"
	$(BIN)/maturin develop --release

.PHONY: demo
demo:  ## Install fluidsched into .venv and run the demo on the bundled trace
	$(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install --quiet ".[plot]" && $(BIN)/fluidsched demo

.PHONY: test-rust
test-rust:  ## Rust tests (core crate, incl. proptest)
	@echo "== building the core crate's tests (cargo prints each crate it compiles)"
	cargo test --no-run
	cargo test --quiet

.PHONY: test-python
test-python: build-dev  ## Python tests (pytest + hypothesis, quick profile) and benchmark smoke runs
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} $(BIN)/pytest tests bench --ignore=tests/vllm_adapter \
		--ignore=tests/calibrate --ignore=tests/ray_tier

.PHONY: test
test: test-rust test-python test-vllm test-calibrate test-ray  ## Everything: Rust, Python, vLLM, calibrate and Ray tiers (installs what it needs)

# The vLLM tier has an environment of its own (vLLM 0.32.0 on CPU, about 2 minutes and 5.7 GB to build), so the
# core environment never needs torch or vLLM. FLUIDSCHED_REQUIRE_VLLM=1 turns a missing vLLM into an error.
VLLM_VENV ?= .venv-vllm

.PHONY: vllm-env
vllm-env:  ## Build the vLLM tier's environment ($(VLLM_VENV)) and install fluidsched into it
	bash tools/setup_vllm_env.sh $(VLLM_VENV)
	VIRTUAL_ENV=$(abspath $(VLLM_VENV)) $(VLLM_VENV)/bin/maturin develop --release --quiet

.PHONY: test-vllm
test-vllm: vllm-env  ## vLLM adapter tests (real vLLM scheduler, fake model outputs; LLM.generate on CPU)
	FLUIDSCHED_REQUIRE_VLLM=1 HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} $(VLLM_VENV)/bin/pytest tests/vllm_adapter \
		-p no:cacheprovider

# `fluidsched calibrate` needs torch and transformers: its tier runs in the vLLM tier's environment, which has both.
# FLUIDSCHED_REQUIRE_TORCH=1 turns a missing torch into an error.
# The Ray tier (`fluidsched sweep --ray`) has an environment of its own too: Ray never enters .venv.
RAY_VENV ?= .venv-ray

.PHONY: ray-env
ray-env:  ## Build the Ray tier's environment ($(RAY_VENV)) and install fluidsched into it
	bash tools/setup_ray_env.sh $(RAY_VENV)
	VIRTUAL_ENV=$(abspath $(RAY_VENV)) $(RAY_VENV)/bin/maturin develop --release --quiet

.PHONY: test-ray
test-ray: ray-env  ## Ray backend of fluidsched sweep against a local single-node cluster the test starts
	FLUIDSCHED_REQUIRE_RAY=1 HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} $(RAY_VENV)/bin/pytest tests/ray_tier \
		-p no:cacheprovider

.PHONY: experiments
experiments: build-dev  ## The experiment suite: CSVs and plots under bench/experiments/results, tables in bench/RESULTS.md
	$(BIN)/python bench/experiments/run_all.py

.PHONY: test-calibrate
test-calibrate: vllm-env  ## calibrate tests (tiny random-weight models timed on CPU; torch + transformers)
	FLUIDSCHED_REQUIRE_TORCH=1 HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} $(VLLM_VENV)/bin/pytest tests/calibrate \
		-p no:cacheprovider

.PHONY: lint-rust
lint-rust: $(BIN)/python  ## cargo fmt --check and clippy -D warnings
	cargo fmt --all -- --check
	PYO3_PYTHON=$(abspath $(BIN)/python) cargo clippy --workspace --all-targets --quiet -- -D warnings

.PHONY: lint-python
lint-python: build-dev  ## ruff, ruff format --check, mypy --strict, stubtest
	$(BIN)/ruff check python tests bench
	$(BIN)/ruff format --check python tests bench
	$(BIN)/mypy
	$(BIN)/python -m mypy.stubtest fluidsched._core --allowlist .stubtest-allowlist

.PHONY: lint
lint: lint-rust lint-python  ## All lints

.PHONY: format
format: install-dev  ## Format Rust and Python code
	cargo fmt --all
	$(BIN)/ruff format python tests bench
	$(BIN)/ruff check --fix python tests bench

.PHONY: fuzz
fuzz: build-dev  ## Long fuzzing: 10,000 proptest cases per policy, then 10,000 hypothesis examples per policy
	FLUIDSCHED_PROPTEST_CASES=10000 cargo test --release -p fluidsched-core --test fuzz_ops --test differential \
		--test trace_fuzz
	HYPOTHESIS_PROFILE=long $(BIN)/pytest tests/test_policy_machines.py -p no:cacheprovider -q \
		--hypothesis-show-statistics | tee .fuzz-report.txt | grep -E "TestMachine|passing|passed|failed"

.PHONY: bench
bench: build-dev  ## Print simulator speed (requests per wall-second) and Python-level benchmarks
	$(BIN)/python bench/sim_speed.py
	$(BIN)/pytest bench --benchmark-enable --benchmark-only -q

.PHONY: bench-rust
bench-rust:  ## criterion benchmarks of the Rust core
	cargo bench -p fluidsched-bench --bench scheduler

.PHONY: clean
clean:  ## Remove build outputs and the virtual environment
	cargo clean
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .benchmarks
