# iot-attest images (docker-compose.yml builds both targets):
#   gateway    python -m gateway run, as the non-root user iot-attest, API on port 8000
#   simulator  python -m edge_agent simulate: a demo fleet of simulated devices
#
#   docker build --target gateway -t iot-attest-gateway .
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The service user. /var/lib/iot-attest is the state directory: docker-compose.yml
# mounts a named volume there, which Docker initialises with this owner and mode.
RUN groupadd --system --gid 10001 iot-attest \
    && useradd --system --uid 10001 --gid iot-attest --home-dir /var/lib/iot-attest \
        --no-create-home --shell /usr/sbin/nologin iot-attest \
    && install -d -o iot-attest -g iot-attest -m 0700 /var/lib/iot-attest

WORKDIR /src
# Each image installs exactly the versions of its lock (pip checks every file's hash), then the
# project itself without dependencies (requirements/lock.py says which lock is what).
COPY requirements/gateway.txt requirements/edge.txt ./requirements/
COPY pyproject.toml README.md ./
COPY attest_core ./attest_core
COPY edge_agent ./edge_agent
COPY gateway ./gateway
COPY verifier ./verifier
COPY attest_chain ./attest_chain


FROM base AS gateway
RUN pip install --require-hashes -r requirements/gateway.txt \
    && pip install --no-deps . && rm -rf /src/build
USER iot-attest
WORKDIR /var/lib/iot-attest
# The log key is created here on the first start (key_file; mode 0600).
ENV GATEWAY_KEY_FILE=/var/lib/iot-attest/gateway-log.key \
    GATEWAY_API_HOST=0.0.0.0 \
    GATEWAY_API_PORT=8000
EXPOSE 8000
CMD ["python", "-m", "gateway", "run"]


FROM base AS simulator
RUN pip install --require-hashes -r requirements/edge.txt \
    && pip install --no-deps . && rm -rf /src/build
USER iot-attest
WORKDIR /var/lib/iot-attest
# docker-compose.yml gives the whole command; this default fits its service names.
CMD ["python", "-m", "edge_agent", "simulate", "--devices", "10", "--gateway", "http://gateway:8000", \
     "--state", "/var/lib/iot-attest/sim-state"]
