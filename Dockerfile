# syntax=docker/dockerfile:1.7
# Polarway images, built from the repository root:
#   docker build --target worker  -t polarway/polarway:latest .
#   docker build --target gateway -t polarway/gateway:latest .
# (`docker build .` without --target builds the worker: it is the last stage.)

# ---- builder: both release binaries, with cargo's registry and target dir in BuildKit caches ----
FROM rust:1.95-bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The target dir is a cache mount (reused across builds, absent from the image), so the binaries
# are copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin polarway --bin polarway-gateway \
 && install -D -m 0755 target/release/polarway /out/polarway \
 && install -D -m 0755 target/release/polarway-gateway /out/polarway-gateway

# ---- runtime base: slim Debian, CA certificates (S3 over TLS, JWKS URLs), a non-root user ----
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 polarway \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin polarway
ENV RUST_LOG=info

# ---- gateway: polarway/gateway:latest ----
FROM runtime AS gateway
COPY --from=builder /out/polarway-gateway /usr/local/bin/polarway-gateway
COPY policies /etc/polarway/policies
# Listen on every interface inside the container; metrics (on by default) on :9090.
ENV POLARWAY_GATEWAY_LISTEN=0.0.0.0:50051
USER 10001:10001
EXPOSE 50051 9090
# SERVING while at least one worker is (see gateway/README.md, "Health").
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["polarway-gateway", "health", "--addr", "127.0.0.1:50051"]
ENTRYPOINT ["polarway-gateway"]

# ---- worker: polarway/polarway:latest (the user guide's image) ----
FROM runtime AS worker
COPY --from=builder /out/polarway /usr/local/bin/polarway
RUN mkdir -p /data /state && chown 10001:10001 /data /state
# The guide's `docker run ... -p 50052:50052` needs the server on every interface.
ENV POLARWAY_BIND_ADDRESS=0.0.0.0:50052
USER 10001:10001
VOLUME /data
EXPOSE 50052 9090
# Plaintext grpc.health.v1 on the default port; override HEALTHCHECK when serving TLS or another port.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["polarway", "health", "--addr", "127.0.0.1:50052"]
ENTRYPOINT ["polarway"]
CMD ["server", "--grpc-port", "50052", "--data-dir", "/data"]
