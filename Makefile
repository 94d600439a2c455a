# The two commands of the README: `make dev` and `make test`. Both install their own prerequisites.
CARGO ?= cargo
BINARY := gardener-extension-cri-resmgr

.PHONY: dev test prerequisites build fmt fmt-check lint ci crds fuzz fuzz-check

## Installs etcd, kubectl and a kube-apiserver built from Debian's source package (cached outside the repo), and
## helm-python-sdk (real Helm for rendering the charts in tests).
prerequisites:
	bash hacks/install-control-plane.sh
	bash hacks/install-helm.sh

## Starts a local etcd + kube-apiserver, installs the CRDs, applies examples/ and runs until Ctrl-C.
dev: prerequisites
	$(CARGO) run -p cri-resmgr-testbed --bin cri-resmgr-dev -- dev

## Runs every unit and integration test (the integration tests start their own control plane).
test: prerequisites
	$(CARGO) test --workspace --all-targets --no-fail-fast

## Runs every fuzz target for FUZZ_TIME seconds (default 60) with AFL++ (cargo-afl, stable toolchain), installing
## cargo-afl when missing; docs/reliability.md says how to run longer.
fuzz:
	bash hacks/fuzz.sh

## Builds the fuzz targets without a fuzz engine and runs the committed seed corpus through them.
fuzz-check:
	$(CARGO) test --manifest-path fuzz/Cargo.toml --target-dir target

build:
	$(CARGO) build --release --bin $(BINARY)

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

crds:
	@$(CARGO) run -q -p cri-resmgr-testbed --bin cri-resmgr-dev -- crds

## What CI runs.
ci: fmt-check lint test
