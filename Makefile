# The commands of the README: `make dev`, `make test` and `make e2e`. Each installs its own prerequisites.
CARGO ?= cargo
BINARY := gardener-extension-cri-resmgr

.PHONY: dev test e2e prerequisites build build-images push-images fmt fmt-check lint ci crds bench fuzz fuzz-check

## Installs etcd, kubectl and a kube-apiserver built from Debian's source package (cached outside the repo),
## helm-python-sdk (real Helm for rendering the charts in tests) and promtool (checks the charts' alerts).
prerequisites:
	bash hacks/install-control-plane.sh
	bash hacks/install-helm.sh
	bash hacks/install-promtool.sh

## Starts a local etcd + kube-apiserver, installs the CRDs, applies examples/ and runs until Ctrl-C.
dev: prerequisites
	$(CARGO) run -p cri-resmgr-testbed --bin cri-resmgr-dev -- dev

## Runs every unit and integration test (the integration tests start their own control plane), and replays the fuzz
## targets' seed corpus without a fuzz engine (so the fuzz crate, outside the workspace, keeps compiling). The end-to-end
## scenarios are `make e2e`'s; only their crate's unit tests run here.
test: prerequisites
	$(CARGO) test --workspace --all-targets --no-fail-fast --exclude cri-resmgr-e2e
	$(CARGO) test -p cri-resmgr-e2e --lib
	$(CARGO) test --manifest-path fuzz/Cargo.toml --target-dir target

## Runs the end-to-end scenarios (docs/e2e.md): garden, seed and shoot control planes, the extension's binary from
## the Helm-rendered charts, stand-ins for gardenlet, gardener-resource-manager and gardener-node-agent. One
## scenario at a time: each runs three apiservers.
e2e: prerequisites
	$(CARGO) build --bin $(BINARY)
	$(CARGO) test -p cri-resmgr-e2e --no-fail-fast -- --test-threads=1 --nocapture

## Runs every fuzz target for FUZZ_TIME seconds (default 60) with AFL++ (cargo-afl, stable toolchain), installing
## cargo-afl when missing; docs/reliability.md says how to run longer.
fuzz:
	bash hacks/fuzz.sh

## Builds the fuzz targets without a fuzz engine and runs the committed seed corpus through them.
fuzz-check:
	$(CARGO) test --manifest-path fuzz/Cargo.toml --target-dir target

build:
	$(CARGO) build --release --bin $(BINARY)

## The webhooks of the release build against a minimal TLS server answering the same bytes (1, 16 and 64
## connections), and the controller with 500 shoots on the local control plane; see docs/performance.md. Not part
## of `make test`: it measures, it does not assert.
bench: prerequisites build
	$(CARGO) run --release -p cri-resmgr-testbed --bin cri-resmgr-bench -- run --server target/release/$(BINARY) $(BENCH_ARGS)

## The extension's image and the installation image (it carries /opt/intel/bin/cri-resmgr for the nodes), as
## $(REGISTRY)/<name>:$(TAG). Needs a container engine with BuildKit (CONTAINER_ENGINE, default docker).
REGISTRY ?= docker.io/intel
TAG ?= latest
CONTAINER_ENGINE ?= docker
EXTENSION_IMAGE = $(REGISTRY)/$(BINARY):$(TAG)
INSTALLATION_IMAGE = $(REGISTRY)/$(BINARY)-installation:$(TAG)

build-images:
	$(CONTAINER_ENGINE) build --target $(BINARY) -t $(EXTENSION_IMAGE) .
	$(CONTAINER_ENGINE) build --target installation -t $(INSTALLATION_IMAGE) .

push-images:
	$(CONTAINER_ENGINE) push $(EXTENSION_IMAGE)
	$(CONTAINER_ENGINE) push $(INSTALLATION_IMAGE)

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
