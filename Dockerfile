# syntax=docker/dockerfile:1
# Build stage: build a wheel of the monitor and its dependencies.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY monitor ./monitor
RUN pip install --no-cache-dir --upgrade pip==25.3 \
 && pip wheel --no-cache-dir --wheel-dir /wheels .

# Final stage: no compilers, no build tools, a non-root user.
FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin monitor
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels sendcloud-integration-monitor \
 && rm -rf /wheels
USER 10001
ENV MONITOR_LISTEN_ADDRESS=0.0.0.0:9877 \
    MONITOR_LOG_FORMAT=json \
    PYTHONUNBUFFERED=1
EXPOSE 9877
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:9877/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["integration-monitor"]
CMD ["run"]
