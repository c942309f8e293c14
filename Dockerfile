# syntax=docker/dockerfile:1
# One image, three binaries: switchyard-control-plane, switchyard-data-plane and (for demos and load tests)
# switchyard-mock-provider. Pick one with the container command; see deploy/compose.yaml and deploy/k8s/.
#
#   docker build -t switchyard:dev .
#
# Runtime: distroless (glibc, CA certificates, no shell), user 65532 (nonroot). Health checks use the control
# plane binary's `probe` subcommand, so no curl is needed.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        -p switchyard-control-plane -p switchyard-data-plane -p switchyard-mock-provider \
 && mkdir -p /out/bin /out/state \
 && cp target/release/switchyard-control-plane target/release/switchyard-data-plane \
       target/release/switchyard-mock-provider /out/bin/

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/bin/ /usr/local/bin/
# State directory of a node (last snapshot, node id) and SQLite data; owned by the runtime user so a named
# volume mounted here inherits the ownership.
COPY --from=build --chown=65532:65532 /out/state /var/lib/switchyard
USER 65532:65532
WORKDIR /var/lib/switchyard
ENV SWITCHYARD_LOG_FORMAT=json \
    SWITCHYARD_CP_LISTEN=0.0.0.0:8081 \
    SWITCHYARD_LISTEN=0.0.0.0:8080 \
    SWITCHYARD_DATA_DIR=/var/lib/switchyard \
    SWITCHYARD_STATE_DIR=/var/lib/switchyard/node
EXPOSE 8080 8081
# Default: the control plane. A data-plane container overrides the check with its own port (compose, k8s probes).
HEALTHCHECK --interval=10s --timeout=4s --start-period=20s --retries=3 \
    CMD ["switchyard-control-plane", "probe", "http://127.0.0.1:8081/readyz"]
ENTRYPOINT []
CMD ["switchyard-control-plane", "serve"]
