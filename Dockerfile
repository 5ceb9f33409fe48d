# syntax=docker/dockerfile:1
# The base: the official Python image by default. Any Debian-like image with python3 and its venv
# module works the same (the image test builds on one made from Debian's packages).
ARG BASE=python:3.11-slim

# Build stage: the monitor and everything it needs, installed into a virtual environment.
FROM ${BASE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY monitor ./monitor
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --no-cache-dir . \
    && /opt/venv/bin/python -m pip uninstall --yes pip setuptools

# Final stage: the virtual environment only (no compilers, no pip, no sources), a non-root user
# with its own group, and the state directory it owns.
FROM ${BASE}
RUN groupadd --gid 10001 monitor \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin monitor \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/integration-monitor
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
ENV PATH=/opt/venv/bin:$PATH \
    MONITOR_LISTEN_ADDRESS=0.0.0.0:9877 \
    MONITOR_LOG_FORMAT=json \
    MONITOR_STATE_FILE=/var/lib/integration-monitor/alerts.json \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/integration-monitor"]
EXPOSE 9877
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
  CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ['MONITOR_LISTEN_ADDRESS'].rsplit(':', 1)[1]; sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["integration-monitor"]
CMD ["run"]
