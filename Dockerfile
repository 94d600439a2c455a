# Images of the extension. Targets:
#   gardener-extension-cri-resmgr  the extension (controller and admission; the default target)
#   installation                   carries /opt/intel/bin/cri-resmgr for the OperatingSystemConfig's imageRef
#
#   docker build -t <registry>/gardener-extension-cri-resmgr:<tag> .
#   docker build --target installation -t <registry>/gardener-extension-cri-resmgr-installation:<tag> .
#     (linux/amd64 only: cri-resource-manager releases no other binaries; see images.yaml. Needs BuildKit, the
#     default builder of current Docker, for $BUILDPLATFORM/$TARGETARCH.)
# Point the extension at your images with an image vector overwrite ($IMAGEVECTOR_OVERWRITE, see images.yaml).

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock images.yaml ./
COPY src ./src
COPY test ./test
RUN cargo build --release --locked --bin gardener-extension-cri-resmgr

FROM --platform=$BUILDPLATFORM debian:bookworm-slim AS cri-resmgr
# The release tarball holds the binary at opt/intel/bin/cri-resmgr, the path the nodes use.
# cri-resource-manager releases x86_64 tarballs only (its binary-dist target names them after the build host's
# `uname -m`), so the installation image exists for amd64 only, as images.yaml declares. Building it for another
# platform fails here instead of packing an amd64 binary into an image that claims to be arm64.
ARG CRI_RESMGR_VERSION=0.9.2
ARG TARGETARCH=amd64
RUN case "${TARGETARCH}" in \
      amd64) ;; \
      *) echo "cri-resource-manager ${CRI_RESMGR_VERSION} ships no ${TARGETARCH} binary (x86_64 only)" >&2; exit 1 ;; \
    esac
ADD https://github.com/intel/cri-resource-manager/releases/download/v${CRI_RESMGR_VERSION}/cri-resource-manager-${CRI_RESMGR_VERSION}.x86_64.tar.gz /tmp/cri-resmgr.tar.gz
RUN mkdir /out && tar -C /out -xzf /tmp/cri-resmgr.tar.gz ./opt/intel/bin/cri-resmgr && test -x /out/opt/intel/bin/cri-resmgr

FROM scratch AS installation
COPY --from=cri-resmgr /out/opt/intel/bin/cri-resmgr /opt/intel/bin/cri-resmgr

FROM gcr.io/distroless/cc-debian12:nonroot AS gardener-extension-cri-resmgr
COPY --from=builder /src/target/release/gardener-extension-cri-resmgr /gardener-extension-cri-resmgr
USER 65532:65532
ENTRYPOINT ["/gardener-extension-cri-resmgr"]
