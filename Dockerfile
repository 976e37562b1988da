# Gateway: one process serving the OpenAI Responses API from a mounted gateway.yaml.

# The hot path compiled with mypyc (src/gateway/native.py), in a stage that has a C compiler;
# the image takes only the built package. The stage installs requirements-dev.lock, what
# `make install` compiles with: mypyc types the modules with every stub and optional package
# the dev install has (the tracing SDK, jsonschema's stubs), so the image runs the same code.
FROM python:3.11 AS native
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements-dev.lock ./
RUN pip install -r requirements-dev.lock
COPY src ./src
COPY scripts/compile_native.py ./scripts/
RUN python scripts/compile_native.py

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY requirements.lock ./
RUN pip install -r requirements.lock

COPY pyproject.toml README.md ./
COPY --from=native /app/src ./src
RUN pip install --no-deps . && useradd --system --uid 10001 gateway

# The config is mounted at /config/gateway.yaml (a ConfigMap or a bind mount); the embedded
# echo-only default is used when nothing is mounted. Hot reload follows symlink swaps; set
# GATEWAY_RELOAD_POLL=2 for bind mounts that do not deliver file events.
ENV GATEWAY_CONFIG=/config/gateway.yaml GATEWAY_HOST=0.0.0.0 GATEWAY_PORT=8000
COPY gateway.yaml /config/gateway.yaml
USER gateway
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz').status == 200 else 1)"
CMD ["gateway", "serve"]
