# The pushguard runner as a container image, used by
# config/docker-compose-monitoring.yml (build context: the repository root).
#
#   docker build -t pushguard .
#   docker run --rm pushguard exec --job hello -- true
#
# Build: the release binary of the pushguard-cli package (CLI, runner, built-in
# jobs, state file, OTLP tracing); SQLite is compiled in (rusqlite "bundled").
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p pushguard-cli --bin pushguard \
    && strip target/release/pushguard

# Run: a small Debian with CA certificates (https sources and gateways) and
# curl for the health check; an unprivileged user; config and jobs from the
# repository, the state file in a volume.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 999 --home-dir /var/lib/pushguard --shell /usr/sbin/nologin pushguard \
    && mkdir -p /var/lib/pushguard /etc/pushguard \
    && chown pushguard:pushguard /var/lib/pushguard
COPY --from=build /src/target/release/pushguard /usr/local/bin/pushguard
COPY config/pushguard.toml /etc/pushguard/config/pushguard.toml
COPY jobs/ /etc/pushguard/jobs/
# The calendar job writes its .ics next to the state, in the volume (its
# shipped path is relative to the job file, inside the read-only config).
RUN sed -i 's|^ics_path = .*|ics_path = "/var/lib/pushguard/releases.ics"|' /etc/pushguard/jobs/calendar.toml \
    && grep -q '^ics_path = "/var/lib/pushguard/releases.ics"' /etc/pushguard/jobs/calendar.toml
# pushguard.toml names its jobs directory relative to itself (../jobs).
ENV PUSHGUARD_CONFIG=/etc/pushguard/config/pushguard.toml \
    PUSHGUARD_STATE=/var/lib/pushguard/state.db
USER pushguard
WORKDIR /var/lib/pushguard
VOLUME ["/var/lib/pushguard"]
EXPOSE 9465
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
    CMD curl -fsS http://127.0.0.1:9465/health >/dev/null || exit 1
ENTRYPOINT ["pushguard"]
CMD ["run"]
