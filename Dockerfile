# syntax=docker/dockerfile:1
# eowatch: the daemon, its bundled model and the CPU build of torch (a CUDA build with
# --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128).
#   docker build -t eowatch .
#   docker run -p 8080:8080 -e EOWATCH_API_HOST=0.0.0.0 eowatch
# tests/test_deployment_image.py runs these same install commands in a fresh virtual
# environment and starts the result, since base-image registries cannot be reached in CI.

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
WORKDIR /src
COPY pyproject.toml README.md ./
COPY eowatch ./eowatch
COPY models ./models
COPY daemon ./daemon
COPY adapters ./adapters
# one virtual environment, built here and copied whole into the runtime stage
RUN python -m venv /opt/eowatch \
 && /opt/eowatch/bin/pip install --no-cache-dir --upgrade pip==25.3 \
 && /opt/eowatch/bin/pip install --no-cache-dir --index-url "${TORCH_INDEX}" \
        "torch==${TORCH_VERSION}" \
 && /opt/eowatch/bin/pip wheel --no-cache-dir --no-deps -w /wheels . \
 && /opt/eowatch/bin/pip install --no-cache-dir /wheels/eowatch-*.whl

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="eowatch" \
      org.opencontainers.image.description="Near-real-time Earth-observation monitoring daemon"
RUN groupadd --system --gid 10001 eowatch \
 && useradd --system --uid 10001 --gid eowatch --home-dir /var/lib/eowatch eowatch \
 && mkdir -p /var/lib/eowatch && chown eowatch:eowatch /var/lib/eowatch
COPY --from=build /opt/eowatch /opt/eowatch
ENV PATH=/opt/eowatch/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    EOWATCH_DATA_DIR=/var/lib/eowatch \
    EOWATCH_API_HOST=0.0.0.0 \
    EOWATCH_API_PORT=8080
USER 10001:10001
WORKDIR /var/lib/eowatch
VOLUME ["/var/lib/eowatch"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["eowatch"]
CMD ["run"]
