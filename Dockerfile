# The ops-engine image: every engine process of docker-compose.kafka.yml runs it
# (worker, executor, notifier, db migrate) with a different command.
# Slim Python, ffmpeg for the video renders, a non-root user, data in /data.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 ops \
    && useradd --system --uid 10001 --gid ops --home-dir /app --shell /usr/sbin/nologin ops

WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY agents ./agents
COPY models ./models
COPY connectors ./connectors
# rocksdb: tables on the worker's disk (OPS_STORE=rocksdb://), so a restart only catches up.
RUN pip install '.[rocksdb]' \
    && mkdir -p /data \
    && chown ops:ops /data

USER ops
VOLUME ["/data"]
ENV OPS_DATA_DIR=/data \
    OPS_WEB_HOST=0.0.0.0
# worker web (/health, /metrics, views), executor metrics, notifier metrics
EXPOSE 6066 6068 6069
ENTRYPOINT ["ops-engine"]
CMD ["worker"]
