# Developer entry points. `make help` lists them; `make run` and `make test` are the two that matter.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
# Steps share .venv and cargo's target dir: one at a time, in the order written.
.NOTPARALLEL:

VENV        := $(CURDIR)/.venv
MOTO_SERVER := $(VENV)/bin/moto_server
SAM         := $(VENV)/bin/sam
PYTHON      := $(VENV)/bin/python3

API_PORT     ?= 3000
SANDBOX_PORT ?= 3001
MOTO_PORT    ?= 5000
# CI builds once from scratch: incremental caches would only cost time and gigabytes of disk.
ifdef CI
export CARGO_INCREMENTAL := 0
endif
# Tests log only what went wrong; override with `make test RUST_LOG=debug`.
RUST_LOG     ?= warn

# `make fuzz`: seconds per target, the targets, where cargo-fuzz is installed and builds.
FUZZ_SECONDS    ?= 60
FUZZ_TARGETS    ?= webhook lead_intake telegram_init_data amocrm_problem
# Safe Rust parsers: no sanitizer (ASan only checks unsafe code, at half the speed);
# `make fuzz FUZZ_SANITIZER=address` for the default. 16 codegen units: a much shorter first
# build of the dependency tree for a few percent of speed.
FUZZ_SANITIZER  ?= none
CARGO_FUZZ_ROOT ?= $(CURDIR)/.cargo-fuzz
FUZZ_TARGET_DIR ?= $(CURDIR)/fuzz/target

# sam validate --lint works offline; it only wants a region. No credentials, no telemetry.
SAM_ENV := SAM_CLI_TELEMETRY=0 AWS_REGION=eu-central-1 AWS_DEFAULT_REGION=eu-central-1

# Functions that may call amoCRM refresh its OAuth token and save the new pair: in the token
# secret only (never the app secret). passport-api writes no secret.
TOKEN_WRITERS := LeadIngestFunction=AmoTokenSecret,CrmWorkerFunction=AmoTokenSecret,AmoWebhookFunction=AmoTokenSecret,MaintenanceSyncFunction=AmoTokenSecret

step = @printf '\n==> %s\n' "$(1)"

.PHONY: help deps browser-deps run ops test fmt fmt-check lint clippy template-check cargo-test bench fuzz clean clean-all

help: ## List the targets
	@echo "make targets (variables: API_PORT=$(API_PORT) SANDBOX_PORT=$(SANDBOX_PORT) MOTO_PORT=$(MOTO_PORT)):"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /  \1\t/' | expand -t 18

deps: ## Install moto and aws-sam-cli into .venv (once; reruns are instant)
	$(call step,deps: tools/scripts/deps.sh)
	bash tools/scripts/deps.sh

run: deps ## Run everything locally: moto, amoCRM sandbox, the HTTP API on 127.0.0.1:API_PORT, the worker
	$(call step,run: local stack (API :$(API_PORT), amoCRM sandbox :$(SANDBOX_PORT), moto :$(MOTO_PORT)))
	MOTO_SERVER=$(MOTO_SERVER) API_PORT=$(API_PORT) SANDBOX_PORT=$(SANDBOX_PORT) MOTO_PORT=$(MOTO_PORT) \
		cargo run -p local-stack

# rss-ops against the running `make run` stack: its function environment, tables, secrets,
# sandbox and local webhook destination, written by `make run` to .local/ops.env.
ARGS ?= help
OPS_ENV := $(CURDIR)/.local/ops.env
ops: ## Operators' CLI against the running `make run` stack: make ops ARGS='doctor' (setup, backfill --dry-run, parked list)
	@test -f $(OPS_ENV) || { echo "make ops: no running stack ($(OPS_ENV) missing): start 'make run' in another terminal first"; exit 2; }
	@curl -fsS -o /dev/null "$$(. $(OPS_ENV); echo $$AWS_ENDPOINT_URL)/moto-api/data.json" 2>/dev/null || { \
		echo "make ops: the stack of $(OPS_ENV) is not running: start 'make run' first"; exit 2; }
	@set -a; . $(OPS_ENV); set +a; cargo run -q -p rss-ops -- $(ARGS)

# Cheap checks first, cargo test last (its summary closes the output).
test: deps browser-deps fmt-check template-check clippy cargo-test ## Everything CI checks (.ci/run calls this)

browser-deps: ## Install Debian's chromium and chromium-driver for the browser test (when missing)
	$(call step,browser-deps: tools/scripts/browser-deps.sh)
	bash tools/scripts/browser-deps.sh

fmt: ## Format the Rust code
	$(call step,fmt: cargo fmt --all)
	cargo fmt --all

fmt-check:
	$(call step,fmt-check: cargo fmt --all -- --check)
	cargo fmt --all -- --check

lint: deps clippy template-check ## clippy with warnings as errors, plus the template checks

clippy:
	$(call step,clippy: cargo clippy --workspace --all-targets -- -D warnings)
	cargo clippy --workspace --all-targets -- -D warnings

# The template as it deploys with each AmoEgress mode and the optional custom domain and SES
# identity: every variant must lint clean too (cfn-lint sees conditions, not parameter values).
TEMPLATE_VARIANTS := \
	"AmoEgress=StaticIp" \
	"AmoEgress=ExistingSubnets AmoSubnetIds=subnet-0a1b2c3d,subnet-0e1f2a3b AmoSecurityGroupId=sg-0123abcd AmoExistingEgressIp=198.51.100.7" \
	"ApiDomainName=api.td-rss.ru ApiCertificateArn=arn:aws:acm:eu-central-1:123456789012:certificate/0f3c1d2e-1111-2222-3333-444455556666 SesDomain=td-rss.ru"

template-check: deps
	$(call step,template: sam validate --lint (offline, dummy region))
	$(SAM_ENV) $(SAM) validate --lint --template template.yaml
	@mkdir -p .local
	@for variant in $(TEMPLATE_VARIANTS); do \
		echo "template variant: $$variant"; \
		$(PYTHON) tools/scripts/template_variant.py template.yaml $$variant > .local/template-variant.yaml && \
		$(SAM_ENV) $(SAM) validate --lint --template .local/template-variant.yaml || exit 1; \
	done
	$(call step,template: least-privilege policy check (self-test, then template.yaml))
	$(PYTHON) tools/scripts/check_template.py --self-test
	$(PYTHON) tools/scripts/check_template.py --allow-secret-writes $(TOKEN_WRITERS) template.yaml

cargo-test:
	$(call step,cargo-test: cargo test --workspace (MOTO_SERVER=$(MOTO_SERVER), RUST_LOG=$(RUST_LOG)))
	MOTO_SERVER=$(MOTO_SERVER) RUST_LOG=$(RUST_LOG) cargo test --workspace

# Benchmarks (not part of `make test`): host builds, then bench/runner prints the tables.
# BENCH_TARGET_DIR holds the host binaries (profile BENCH_PROFILE: `bench-fast` = release
# without cross-crate LTO, minutes instead of ~20 to build; BENCH_PROFILE=release for the
# shipped profile), LAMBDA_TARGET_DIR the arm64 zips (always the release profile);
# BENCH_LAMBDA_BUILD=0 skips the (slow) arm64 build and reports what LAMBDA_TARGET_DIR holds.
BENCH_TARGET_DIR  ?= $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
LAMBDA_TARGET_DIR ?= $(BENCH_TARGET_DIR)
BENCH_LAMBDA_BUILD ?= 1
BENCH_PROFILE     ?= bench-fast
BENCH_ARGS        ?=
# BENCH_QUICK=1: the main rows in a few minutes (5 cold starts, one 1 000-machine sync, no
# arm64 build) to check a change; the README's figures come from a full run.
BENCH_QUICK       ?= 0
ifeq ($(BENCH_QUICK),1)
BENCH_LAMBDA_BUILD := 0
BENCH_ARGS := --quick $(BENCH_ARGS)
endif
FUNCTIONS := lead-ingest crm-worker amocrm-webhook passport-api maintenance-sync mail-events

bench: deps ## Benchmarks: cold start vs Python, arm64 sizes, accept/ack latency, beside the seed's FastAPI, maintenance sync, peak RSS (BENCH_ARGS=--help)
	$(call step,bench: the seed's Python stack (tools/scripts/deps.sh --bench))
	bash tools/scripts/deps.sh --bench
	$(call step,bench: arm64 release zips (cargo lambda build --release --arm64 --output-format zip))
	@if [[ "$(BENCH_LAMBDA_BUILD)" != 1 ]]; then \
		echo "skipped (BENCH_LAMBDA_BUILD=$(BENCH_LAMBDA_BUILD)); sizes are read from $(LAMBDA_TARGET_DIR)/lambda"; \
	elif PATH="$(VENV)/bin:$$PATH" command -v cargo-lambda >/dev/null; then \
		PATH="$(VENV)/bin:$$PATH" CARGO_TARGET_DIR=$(LAMBDA_TARGET_DIR) \
			cargo lambda build --release --arm64 --output-format zip $(addprefix -p ,$(FUNCTIONS)); \
	else \
		echo "skipped: cargo-lambda not found (bash tools/scripts/deps.sh --deploy installs it)"; \
	fi
	$(call step,bench: host binaries with profile $(BENCH_PROFILE) (CARGO_TARGET_DIR=$(BENCH_TARGET_DIR)))
	@# Two invocations: built together, cargo would unify features with the runner's and the
	@# function binaries would differ from the ones cargo lambda ships.
	CARGO_TARGET_DIR=$(BENCH_TARGET_DIR) cargo build --profile $(BENCH_PROFILE) $(addprefix -p ,$(FUNCTIONS))
	CARGO_TARGET_DIR=$(BENCH_TARGET_DIR) cargo build --profile $(BENCH_PROFILE) -p rss-ops
	CARGO_TARGET_DIR=$(BENCH_TARGET_DIR) cargo build --profile $(BENCH_PROFILE) -p bench-runner
	$(call step,bench: run (shared machines give noisy figures; compare within one run))
	MOTO_SERVER=$(MOTO_SERVER) $(BENCH_TARGET_DIR)/$(BENCH_PROFILE)/bench-runner \
		--bin-dir $(BENCH_TARGET_DIR)/$(BENCH_PROFILE) --lambda-dir $(LAMBDA_TARGET_DIR)/lambda \
		--python $(PYTHON) $(BENCH_ARGS)

fuzz: ## Fuzz each parser for FUZZ_SECONDS (default 60) with cargo-fuzz on nightly (README "Fuzzing")
	$(call step,fuzz: nightly toolchain and cargo-fuzz in $(CARGO_FUZZ_ROOT))
	@rustup run nightly rustc --version || { \
		echo "make fuzz needs the nightly toolchain: rustup toolchain install nightly --profile minimal"; exit 1; }
	@test -x $(CARGO_FUZZ_ROOT)/bin/cargo-fuzz || cargo install cargo-fuzz --locked --root $(CARGO_FUZZ_ROOT)
	$(call step,fuzz: seed the corpora (fuzz/seed.sh))
	bash fuzz/seed.sh
	@for target in $(FUZZ_TARGETS); do \
		printf '\n==> fuzz: %s for %s s\n' "$$target" "$(FUZZ_SECONDS)"; \
		(cd fuzz && PATH="$(CARGO_FUZZ_ROOT)/bin:$$PATH" cargo +nightly fuzz run \
			--sanitizer $(FUZZ_SANITIZER) --codegen-units 16 --target-dir $(FUZZ_TARGET_DIR) "$$target" -- \
			-max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1) || exit 1; \
	done

clean: ## Remove build output (cargo target dir, .aws-sam); keeps .venv
	$(call step,clean: cargo clean; rm -rf .aws-sam)
	cargo clean
	rm -rf .aws-sam

clean-all: clean ## Also remove .venv (next make reinstalls it, about a minute)
	$(call step,clean-all: rm -rf .venv)
	rm -rf $(VENV)
