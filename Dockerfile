# One image for every Hookline service: `hookline run control-api|ingest-api|worker|alerting|all`.
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release -p hookline && cp target/release/hookline /hookline

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 hookline
COPY --from=build /hookline /usr/local/bin/hookline
USER hookline
WORKDIR /home/hookline
ENV HOOKLINE_LOG_FORMAT=json
ENTRYPOINT ["hookline"]
CMD ["run", "all"]
