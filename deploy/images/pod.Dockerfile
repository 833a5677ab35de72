# syntax=docker/dockerfile:1
# Dormant's pod image: Python 3.11, Dormant's platform libraries, the runtime and the sidecar; the pool's
# pods run it (the Helm chart's images.pod). Build it from the repository's root with BuildKit:
#
#   docker build -f deploy/images/pod.Dockerfile -t dormant/pod:0.1.0 .
#
# `dormant image build --kind pod` makes the same tree without a daemon (docs/production.md, "Container
# images"). It runs as user 10001 on a read-only root file system: the writable paths are /tmp and the
# work dir, emptyDir volumes on Kubernetes (docker run --read-only --tmpfs /tmp --tmpfs /var/lib/dormant/work).
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

ENV PYTHONPATH=/opt/dormant/site-packages \
    PATH=/opt/dormant/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    LOGNAME=dormant \
    DORMANT_WORK_DIR=/var/lib/dormant/work

# The third-party libraries, exactly these versions, wheels only (the file is the whole set: no resolving).
COPY deploy/images/requirements-pod.txt /opt/dormant/requirements.txt
RUN pip install --no-cache-dir --disable-pip-version-check --no-compile --no-deps --only-binary=:all: \
        --target=/opt/dormant/site-packages -r /opt/dormant/requirements.txt \
    && rm -rf /opt/dormant/site-packages/bin

# Dormant's packages: the platform libraries, the runtime and the sidecar.
COPY libs/python/dormant /opt/dormant/site-packages/dormant
COPY libs/python/dormant_auth /opt/dormant/site-packages/dormant_auth
COPY catalog/dormant_catalog /opt/dormant/site-packages/dormant_catalog
COPY libs/python/dormant_layers /opt/dormant/site-packages/dormant_layers
COPY runtimes/python/dormant_runtime /opt/dormant/site-packages/dormant_runtime
COPY libs/python/dormant_secrets /opt/dormant/site-packages/dormant_secrets
COPY sidecar/dormant_sidecar /opt/dormant/site-packages/dormant_sidecar
COPY libs/python/dormant_telemetry /opt/dormant/site-packages/dormant_telemetry
# Unpacked layers and the blob cache; the only path the sidecar writes besides /tmp.
RUN mkdir -p /var/lib/dormant/work && chown 10001:10001 /var/lib/dormant/work

# What the pods of this image provide: the catalog's base_image and platform_interface they claim by.
LABEL org.opencontainers.image.title="dormant-pod" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.description="Dormant's pod: the sidecar and the Python runtime with Dormant's platform libraries" \
      dev.dormant.image.kind="pod" \
      dev.dormant.python="3.11" \
      dev.dormant.base-runtime="dormant-python:1" \
      dev.dormant.platform-interface="dormant/1"

USER 10001:10001
EXPOSE 9464
ENTRYPOINT []
CMD ["python", "-m", "dormant_sidecar"]
