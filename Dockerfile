# syntax=docker/dockerfile:1
# Build stage: wheels of the monitor and of everything it needs.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY monitor ./monitor
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Final stage: the wheels installed, no compilers or build tools, a non-root user.
FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin monitor \
    && install -d -o 10001 -g 10001 /var/lib/integration-monitor
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index /wheels/*.whl
USER 10001
ENV MONITOR_LISTEN_ADDRESS=0.0.0.0:9877 \
    MONITOR_LOG_FORMAT=json \
    PYTHONUNBUFFERED=1
EXPOSE 9877
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
  CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ['MONITOR_LISTEN_ADDRESS'].rsplit(':', 1)[1]; sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["integration-monitor"]
CMD ["run"]
