#!/usr/bin/env bash
# Installs helm-python-sdk (Helm's Go SDK as a C library, with Python bindings), which hacks/render-chart.py and
# hacks/generate-controller-registration.py render and package the charts with. No helm binary is needed.
# Does nothing when `import helm_python` already works.
set -euo pipefail

HELM_PYTHON_SDK_VERSION="${HELM_PYTHON_SDK_VERSION:-0.2.2}"
PYTHON="${PYTHON:-python3}"

log() { printf '[install-helm] %s\n' "$*" >&2; }

if "$PYTHON" -c "import helm_python" 2>/dev/null; then
  exit 0
fi

log "pip install helm-python-sdk==$HELM_PYTHON_SDK_VERSION"
pip_install() { "$PYTHON" -m pip install --quiet --disable-pip-version-check "$@" "helm-python-sdk==$HELM_PYTHON_SDK_VERSION"; }
# A distribution's Python may refuse system-wide installs (PEP 668); the user site works there.
pip_install || pip_install --user

"$PYTHON" -c "import helm_python" || { log "helm_python still cannot be imported"; exit 1; }
