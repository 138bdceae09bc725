# The vigia binary. One image runs every part: `vigia serve|persist|alert|sim|up`.
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p vigia

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/vigia /usr/local/bin/vigia
COPY nats /etc/vigia/nats
WORKDIR /var/lib/vigia
ENV VIGIA_NATS__DIR=/etc/vigia/nats
ENTRYPOINT ["vigia"]
CMD ["up", "--no-sim"]
