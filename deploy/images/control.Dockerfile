# syntax=docker/dockerfile:1
# Dormant's control image: the gateway and the rollout controller, one image, the command chooses
# (`dormant gateway`, `dormant controller`; the Helm chart's images.server). Build it from the
# repository's root with BuildKit:
#
#   docker build -f deploy/images/control.Dockerfile -t dormant/server:0.1.0 .
#
# `dormant image build --kind control` makes the same tree without a daemon (docs/production.md,
# "Container images"). It runs as user 10001 on a read-only root file system (writable: /tmp and the
# gateway's state dir, emptyDir volumes on Kubernetes).
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

ENV PYTHONPATH=/opt/dormant/site-packages \
    PATH=/opt/dormant/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    LOGNAME=dormant

# The third-party libraries, exactly these versions, wheels only (the file is the whole set: no resolving).
COPY deploy/images/requirements-control.txt /opt/dormant/requirements.txt
RUN pip install --no-cache-dir --disable-pip-version-check --no-compile --no-deps --only-binary=:all: \
        --target=/opt/dormant/site-packages -r /opt/dormant/requirements.txt \
    && rm -rf /opt/dormant/site-packages/bin

# All of Dormant's packages, and the `dormant` command.
COPY libs/python/dormant /opt/dormant/site-packages/dormant
COPY libs/python/dormant_auth /opt/dormant/site-packages/dormant_auth
COPY catalog/dormant_catalog /opt/dormant/site-packages/dormant_catalog
COPY libs/python/dormant_cli /opt/dormant/site-packages/dormant_cli
COPY codegen/dormant_codegen /opt/dormant/site-packages/dormant_codegen
COPY libs/python/dormant_controller /opt/dormant/site-packages/dormant_controller
COPY gateway/dormant_gateway /opt/dormant/site-packages/dormant_gateway
COPY libs/python/dormant_layers /opt/dormant/site-packages/dormant_layers
COPY libs/python/dormant_local /opt/dormant/site-packages/dormant_local
COPY runtimes/python/dormant_runtime /opt/dormant/site-packages/dormant_runtime
COPY libs/python/dormant_secrets /opt/dormant/site-packages/dormant_secrets
COPY sidecar/dormant_sidecar /opt/dormant/site-packages/dormant_sidecar
COPY libs/python/dormant_telemetry /opt/dormant/site-packages/dormant_telemetry
COPY --chmod=755 deploy/images/dormant /opt/dormant/bin/dormant

LABEL org.opencontainers.image.title="dormant-server" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.description="Dormant's gateway and rollout controller: dormant gateway | dormant controller" \
      dev.dormant.image.kind="control" \
      dev.dormant.python="3.11"

USER 10001:10001
EXPOSE 8080 9464
ENTRYPOINT ["dormant"]
CMD ["--help"]
