# fluid-webhooks: a two-stage build. The runtime image holds only the binary (config and
# migrations are compiled into it), runs as a non-root user and checks its own health.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so editing the code does not rebuild them.
# (Cargo.toml names the benchmark, so a stub of it is needed too.)
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches/ingest && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && echo 'fn main() {}' > benches/ingest/main.rs \
    && cargo build --release --locked --bin fluid-webhooks \
    && rm -rf src benches
COPY build.rs ./
COPY src ./src
COPY benches ./benches
COPY migrations ./migrations
COPY config ./config
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin fluid-webhooks

# glibc, libgcc and CA certificates, no shell; user 65532 ("nonroot").
FROM gcr.io/distroless/cc-debian12:nonroot
WORKDIR /app
COPY --from=build /src/target/release/fluid-webhooks /app/fluid-webhooks
# The built-in settings are the same as these files; mount /app/config to change them.
COPY config /app/config
# PORT is not set here (3000 is the default): FLUID_WEBHOOKS_SERVER__PORT must be able to move it,
# and `healthcheck` probes wherever serve listens.
ENV HOST=0.0.0.0 \
    FLUID_WEBHOOKS_CONFIG_DIR=/app/config
USER 65532:65532
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/app/fluid-webhooks", "healthcheck"]
ENTRYPOINT ["/app/fluid-webhooks"]
CMD ["serve"]
