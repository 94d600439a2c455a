# Images of the extension. Targets:
#   gardener-extension-cri-resmgr  the extension (controller and admission; the default target)
#   installation                   carries /opt/intel/bin/cri-resmgr for the OperatingSystemConfig's imageRef
#
#   docker build -t <registry>/gardener-extension-cri-resmgr:<tag> .
#   docker build --target installation -t <registry>/gardener-extension-cri-resmgr-installation:<tag> .
# Point the extension at your images with an image vector overwrite ($IMAGEVECTOR_OVERWRITE, see images.yaml).

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock images.yaml ./
COPY src ./src
COPY test ./test
RUN cargo build --release --locked --bin gardener-extension-cri-resmgr

FROM debian:bookworm-slim AS cri-resmgr
# The release tarball holds the binary at opt/intel/bin/cri-resmgr, the path the nodes use.
ARG CRI_RESMGR_VERSION=0.9.2
ARG CRI_RESMGR_ARCH=x86_64
ADD https://github.com/intel/cri-resource-manager/releases/download/v${CRI_RESMGR_VERSION}/cri-resource-manager-${CRI_RESMGR_VERSION}.${CRI_RESMGR_ARCH}.tar.gz /tmp/cri-resmgr.tar.gz
RUN mkdir /out && tar -C /out -xzf /tmp/cri-resmgr.tar.gz ./opt/intel/bin/cri-resmgr && test -x /out/opt/intel/bin/cri-resmgr

FROM scratch AS installation
COPY --from=cri-resmgr /out/opt/intel/bin/cri-resmgr /opt/intel/bin/cri-resmgr

FROM gcr.io/distroless/cc-debian12:nonroot AS gardener-extension-cri-resmgr
COPY --from=builder /src/target/release/gardener-extension-cri-resmgr /gardener-extension-cri-resmgr
USER 65532:65532
ENTRYPOINT ["/gardener-extension-cri-resmgr"]
