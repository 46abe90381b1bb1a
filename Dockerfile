# The exchange as a container image: one `exchange` command for hub and node.
#   docker build -t gov-data-exchange .
#   docker run --rm gov-data-exchange hub run --config /etc/exchange/hub.toml
# deploy/compose.yaml runs the hub with PostgreSQL, Prometheus and Grafana.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY . /tmp/src
RUN pip install /tmp/src && rm -rf /tmp/src

# Stores and state live in /var/lib/exchange (mount a volume there).
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/exchange --create-home exchange
USER exchange
WORKDIR /var/lib/exchange

# gRPC (hub), /metrics + status page (hub), /metrics (node)
EXPOSE 50051 9465 9464

ENTRYPOINT ["exchange"]
CMD ["--help"]
