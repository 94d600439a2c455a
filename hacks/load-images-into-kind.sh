#!/usr/bin/env bash
# Loads the extension's images (built by `make build-images REGISTRY=... TAG=...`) into the nodes of a local
# kind-based Gardener (gardener/gardener's `make kind-up gardener-up`), so that the seed can run the extension
# without a registry:
#
#     make build-images REGISTRY=localhost:5001/intel TAG=dev
#     hacks/load-images-into-kind.sh localhost:5001/intel dev [kind cluster name, default gardener-local]
#
# Then point the ControllerDeployment's values at them (image.repository / image.tag, and an imageVectorOverwrite
# for cri-resmgr-installation), see docs/e2e.md.
set -euo pipefail
registry="${1:?usage: $0 REGISTRY TAG [CLUSTER]}"
tag="${2:?usage: $0 REGISTRY TAG [CLUSTER]}"
cluster="${3:-gardener-local}"
command -v kind >/dev/null || { echo "kind is not installed" >&2; exit 1; }
for image in gardener-extension-cri-resmgr gardener-extension-cri-resmgr-installation; do
  kind load docker-image --name "$cluster" "$registry/$image:$tag"
done
