#!/usr/bin/env bash
# Installs what the local control plane needs, once, into a cache outside the repository:
#   - etcd (Debian's etcd-server) and kubectl when missing;
#   - kube-apiserver, built from Debian bookworm's `kubernetes` source package (the only full
#     Kubernetes source Debian ships), with the reflect2 fix below.
# Prints nothing but progress; the binaries' paths are printed by hacks/control-plane-env.sh.
# Honours KUBE_APISERVER / ETCD: when they point at existing binaries nothing is built.
set -euo pipefail

CACHE_DIR="${CRI_RESMGR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gardener-extension-cri-resmgr}"
KUBE_SOURCE_VERSION="1.20.5+really1.20.2"
APISERVER_BIN="$CACHE_DIR/kube-apiserver-$KUBE_SOURCE_VERSION"

log() { printf '[install-control-plane] %s\n' "$*" >&2; }

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    apt_updated=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

need_pkgs=()
if [ -z "${ETCD:-}" ] && ! command -v etcd >/dev/null; then need_pkgs+=(etcd-server); fi
if ! command -v kubectl >/dev/null; then need_pkgs+=(kubernetes-client); fi
if ! command -v systemd-analyze >/dev/null; then need_pkgs+=(systemd); fi
if [ "${#need_pkgs[@]}" -gt 0 ]; then apt_install "${need_pkgs[@]}"; fi

if [ -n "${KUBE_APISERVER:-}" ]; then
  [ -x "$KUBE_APISERVER" ] || { log "KUBE_APISERVER=$KUBE_APISERVER is not executable"; exit 1; }
  exit 0
fi
if [ -x "$APISERVER_BIN" ]; then
  exit 0
fi

mkdir -p "$CACHE_DIR"
# Only one build at a time, even when `make dev` and `make test` start together.
exec 9>"$CACHE_DIR/build.lock"
flock 9
if [ -x "$APISERVER_BIN" ]; then exit 0; fi

apt_install dpkg-dev golang-go rsync golang-github-modern-go-reflect2-dev make gcc libc6-dev ca-certificates

# Source packages need a deb-src entry for the same mirror and suite as the binary packages.
SRC_LIST=/etc/apt/sources.list.d/gardener-extension-cri-resmgr-src.sources
if ! apt-cache showsrc kubernetes 2>/dev/null | grep -qF "Version: $KUBE_SOURCE_VERSION"; then
  mirror=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n1 | awk '{print $2}')
  [ -n "$mirror" ] || mirror=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | grep -v security | head -n1 | awk '{print $2}')
  [ -n "$mirror" ] || { log "cannot find the Debian mirror in the apt sources"; exit 1; }
  cat >"$SRC_LIST" <<SRC
Types: deb-src
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  log "added deb-src for $mirror"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
fi

BUILD_DIR="$CACHE_DIR/build"
rm -rf "$BUILD_DIR"
mkdir -p "$BUILD_DIR"
cd "$BUILD_DIR"
log "apt-get source kubernetes ($KUBE_SOURCE_VERSION)"
apt-get source -qq --download-only kubernetes >/dev/null
ls kubernetes_"$KUBE_SOURCE_VERSION"-*.dsc >/dev/null
dpkg-source --no-check -x kubernetes_*.dsc src >/dev/null
cd src

# Kubernetes 1.20 vendors reflect2 v1.0.1, which breaks under Go >= 1.18: the apiserver then dies with
# "unexpected fault address" on the first write of a custom resource. Debian's 1.0.2 is fixed.
rm -rf vendor/github.com/modern-go/reflect2
cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 vendor/github.com/modern-go/reflect2
rm -f vendor/github.com/modern-go/reflect2/go.mod

log "building kube-apiserver (several minutes)"
make WHAT=cmd/kube-apiserver KUBE_BUILD_PLATFORMS=linux/amd64 >"$CACHE_DIR/build.log" 2>&1 || {
  tail -n 40 "$CACHE_DIR/build.log" >&2
  exit 1
}
built=$(find _output -type f -name kube-apiserver -perm -u+x | head -n1)
[ -n "$built" ] || { log "build produced no kube-apiserver"; exit 1; }
install -m 0755 "$built" "$APISERVER_BIN.tmp"
mv "$APISERVER_BIN.tmp" "$APISERVER_BIN"
cd "$CACHE_DIR"
rm -rf "$BUILD_DIR"
log "kube-apiserver ready: $APISERVER_BIN"
