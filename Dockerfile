# The vigia binary. One image runs every part: `vigia serve|persist|alert|sim|up`
# (docker-compose.yml runs one container per part). Build: docker build -t vigia .
# The toolchain the tests run with; Cargo.lock needs 1.90 or later (roaring 0.11).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p vigia

FROM debian:bookworm-slim
# curl for the serve container's health check; ca-certificates for TLS to NATS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/vigia --create-home vigia
COPY --from=build /src/target/release/vigia /usr/local/bin/vigia
COPY nats /etc/vigia/nats
USER vigia
WORKDIR /var/lib/vigia
# `vigia up` keeps its embedded store and spawned NATS here.
VOLUME /var/lib/vigia
ENV VIGIA_NATS__DIR=/etc/vigia/nats \
    VIGIA_HTTP__LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["vigia"]
CMD ["up", "--no-sim"]
