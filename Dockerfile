# Both portbound services from one Dockerfile. Build a service's image with its target:
#
#   docker build --target upstream -t portbound-upstream .
#   docker build --target consumer -t portbound-consumer .
#
# The binaries are linked statically (glibc, crt-static) for the build machine's own target, so
# the same file builds on x86_64 and arm64, and each runtime image is the binary alone on
# `scratch`: no shell, no package manager, run as a numeric non-root user, checked by the
# binary's own `healthcheck` subcommand.

FROM rust:1.95-bookworm AS build
WORKDIR /src

# Dependencies first, in their own layer: the manifests and lockfile with stub sources, so a
# change to the services' code does not rebuild every crate.
COPY Cargo.toml Cargo.lock ./
COPY shared/Cargo.toml shared/
COPY services/upstream/Cargo.toml services/upstream/
COPY services/consumer/Cargo.toml services/consumer/
COPY testkit/Cargo.toml testkit/
RUN mkdir -p shared/src services/upstream/src services/consumer/src testkit/src tests \
 && touch shared/src/lib.rs services/upstream/src/lib.rs services/consumer/src/lib.rs \
    testkit/src/lib.rs tests/e2e.rs \
 && echo 'fn main() {}' > services/upstream/src/main.rs \
 && cp services/upstream/src/main.rs services/consumer/src/main.rs \
 && target="$(rustc -vV | sed -n 's/^host: //p')" \
 && RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --locked --target "$target" -p upstream -p consumer

# Then the code. Touching it makes cargo rebuild our crates over the stubs.
COPY shared shared
COPY services services
RUN find shared services -name '*.rs' -exec touch {} + \
 && target="$(rustc -vV | sed -n 's/^host: //p')" \
 && RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --locked --target "$target" -p upstream -p consumer \
 && mkdir -p /out/data \
 && cp "target/$target/release/upstream" "target/$target/release/consumer" /out/

FROM scratch AS upstream
COPY --from=build /out/upstream /upstream
# The volume mount point, owned by the service user so a fresh named volume is writable.
COPY --from=build --chown=10001:10001 /out/data /data
USER 10001:10001
ENV HOST=0.0.0.0 PORT=8081 DATABASE_PATH=/data/upstream.sqlite3
EXPOSE 8081
VOLUME ["/data"]
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 CMD ["/upstream", "healthcheck"]
ENTRYPOINT ["/upstream"]

FROM scratch AS consumer
COPY --from=build /out/consumer /consumer
USER 10001:10001
ENV HOST=0.0.0.0 PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 CMD ["/consumer", "healthcheck"]
ENTRYPOINT ["/consumer"]
