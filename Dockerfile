# syntax=docker/dockerfile:1
# tenant-gateway image: one binary, `serve` (the gateway) and `discover` (the sidecar).
#   docker build -t tenant-gateway:dev .
# Build stage: the crate's MSRV toolchain on Debian bookworm (glibc matches the runtime stage).
FROM rust:1.89-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild them: build a stub crate against the
# real manifests, then throw the stub away.
COPY Cargo.toml Cargo.lock build.rs ./
# (Only the binary is built, so tests/ and benches/ are not needed in the context.)
RUN mkdir -p src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin tenant-gateway \
    && rm -rf src
# The migrations are embedded in the binary at compile time.
COPY migrations ./migrations
COPY src ./src
# Touch the real sources so cargo does not reuse the stub's artifacts.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin tenant-gateway \
    && install -D -m 0755 target/release/tenant-gateway /out/tenant-gateway

# Runtime stage: distroless (glibc, CA certificates, no shell), non-root user 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/tenant-gateway /usr/local/bin/tenant-gateway
USER 65532:65532
EXPOSE 8080 8081 8082
ENTRYPOINT ["/usr/local/bin/tenant-gateway"]
CMD ["serve"]
