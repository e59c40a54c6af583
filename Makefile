# Two commands take a fresh clone to a verified file: `make up` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

CHROMIUM := /usr/bin/chromium

.PHONY: venv up test unit migrate contracts contracts-check chromium bench fuzz chaos clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt -e '.[cli]'
	touch $(STAMP)

venv: $(STAMP)

## Run the whole stack locally (moto, Postgres, anvil, dev IPFS node, API, workers) until Ctrl-C.
## anvil comes from npm (localstack/package.json): `npm ci` runs there when its binary is missing.
up: venv
	$(PY) -m devstack up $(if $(BACKEND),--backend $(BACKEND))

## The whole suite: contracts rebuilt and compared, unit tests, then integration tests against
## real local services on moto and on LocalStack (installed into .venv-localstack on first use),
## and the operator console in headless Chromium. The LocalStack half runs beside the rest
## (tests/suite.py); ARGS go to both pytest runs.
test: venv contracts-check chromium
	$(PY) -m tests.suite $(ARGS)

## Debian's chromium, which the console's browser tests drive (Playwright's own browser download
## does not work offline). Installed with apt-get when missing, as root or with passwordless sudo.
chromium:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ]; then as_root=; elif sudo -n true 2>/dev/null; then as_root="sudo -n"; else \
	    echo "make: the console's browser tests need Debian's chromium at $(CHROMIUM); install it with" \
	         "'sudo apt-get install -y chromium' and run make again." >&2; exit 1; fi; \
	  echo "installing Debian's chromium for the browser tests"; \
	  $$as_root apt-get update -q && $$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

unit: venv
	$(PY) -m pytest tests/unit

## Apply the SQL migrations to DATABASE_URL.
migrate: venv
	$(PY) -m chalicelib.db.migrate

## Rebuild the registry contracts with solcjs; `contracts-check` fails when the committed artefacts differ.
contracts:
	cd infra/contracts && npm ci --no-audit --no-fund --silent && node build.mjs

contracts-check:
	cd infra/contracts && npm ci --no-audit --no-fund --silent && node build.mjs --check

## The API fuzzed against its OpenAPI document for longer than in `make test` (FUZZ_MAX_EXAMPLES per operation).
fuzz: venv
	FUZZ_MAX_EXAMPLES=$${FUZZ_MAX_EXAMPLES:-200} E2E_BACKENDS=$${E2E_BACKENDS:-moto} \
		$(PY) -m pytest tests/integration/test_fuzz.py -q

## JOBS jobs (default 1000) through a stack of its own while faults keep happening; exits 0 only
## when none is lost, duplicated or wrong (tests/chaos).
chaos: venv
	$(PY) -m tests.chaos --jobs $${JOBS:-1000}

bench: venv
	$(PY) -m tests.bench.bench_pipeline
	$(PY) -m tests.bench.bench_upload
	$(PY) -m tests.bench.bench_proof_depth
	$(PY) -m tests.bench.bench_priority
	$(PY) -m tests.bench.bench_coldstart
	$(PY) -m tests.bench.bench_peer

clean:
	rm -rf $(VENV) .stack
