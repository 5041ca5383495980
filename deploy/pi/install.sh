#!/usr/bin/env bash
# Install the iot-attest edge agent on a fresh Raspberry Pi OS Bookworm.
#
#   sudo deploy/pi/install.sh [--meter s0|sunspec|ocpp|simulated-charger|simulated-solar] [--mqtt URL]
#
# Run from a checkout of the project.  Safe to run again (updates the code, keeps the
# key, the config and the state).  What it does:
#   - installs python3-venv and the GPIO library (python3-lgpio) with apt;
#   - creates the system user iot-attest (in the gpio group);
#   - creates the venv /opt/iot-attest/venv and installs the project with the exact versions of
#     requirements/pi.txt (its [edge] extra);
#   - creates /etc/iot-attest (config and device key) and /var/lib/iot-attest (state), mode 0700;
#   - runs `edge_agent init` once (the device key is generated on the Pi and never leaves it);
#   - installs the command iot-attest-agent (runs the agent's CLI as the service user);
#   - installs and enables the systemd unit iot-attest-agent.service.
set -euo pipefail

PREFIX=/opt/iot-attest
VENV="$PREFIX/venv"
CONF_DIR=/etc/iot-attest
CONFIG="$CONF_DIR/agent.toml"
STATE_DIR=/var/lib/iot-attest
SERVICE_USER=iot-attest
UNIT=iot-attest-agent.service
WRAPPER=/usr/local/bin/iot-attest-agent
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

METER=s0
MQTT_URL=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --meter) METER="${2:?--meter needs a value}"; shift 2 ;;
        --mqtt) MQTT_URL="${2:?--mqtt needs a value}"; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [[ $(id -u) -ne 0 ]]; then
    echo "install.sh: run me as root: sudo $0 $*" >&2
    exit 1
fi
if [[ ! -f "$SRC/pyproject.toml" || ! -d "$SRC/edge_agent" ]]; then
    echo "install.sh: $SRC is not an iot-attest checkout" >&2
    exit 1
fi

echo "==> system packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
# lgpio is gpiozero's pin driver on Bookworm (Pi 5 included); the venv sees it via system site packages.
apt-get install -y -qq python3-lgpio >/dev/null 2>&1 || echo "    (python3-lgpio not available: S0 input needs it on a Pi)"

echo "==> service user $SERVICE_USER"
if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
    useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
        --shell /usr/sbin/nologin "$SERVICE_USER"
fi
if getent group gpio >/dev/null; then
    usermod -a -G gpio "$SERVICE_USER"
fi

echo "==> virtual environment $VENV"
install -d -m 0755 "$PREFIX"
if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv --system-site-packages "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# Exact versions from requirements/pi.txt (the [edge] extra as `make lock` resolved it), then the
# project without dependencies. No hashes: Raspberry Pi OS's pip also takes wheels from piwheels,
# which builds its own (other hashes than PyPI's); the pins still fix every version.
"$VENV/bin/python" -m pip install --quiet -r "$SRC/requirements/pi.txt"
"$VENV/bin/python" -m pip install --quiet --no-deps "$SRC"
install -m 0644 "$SRC/README.md" "$PREFIX/README.md"
install -d -m 0755 "$PREFIX/docs"
install -m 0644 "$SRC"/docs/*.md "$PREFIX/docs/"   # the README links these

echo "==> directories"
install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0700 "$CONF_DIR" "$STATE_DIR"

echo "==> command $WRAPPER"
cat >"$WRAPPER" <<WRAP
#!/bin/sh
# The iot-attest agent's command line, run as the service user (who owns the key and the state).
cd / || exit 1
if [ "\$(id -un)" = "$SERVICE_USER" ]; then
    exec env IOT_ATTEST_CONFIG="$CONFIG" "$VENV/bin/python" -m edge_agent "\$@"
fi
exec sudo -u "$SERVICE_USER" env IOT_ATTEST_CONFIG="$CONFIG" "$VENV/bin/python" -m edge_agent "\$@"
WRAP
chmod 0755 "$WRAPPER"

echo "==> device identity"
if [[ -e "$CONFIG" ]]; then
    echo "    $CONFIG exists: keeping this device's key and config"
else
    init_args=(init --config "$CONFIG" --state-dir "$STATE_DIR" --meter "$METER")
    if [[ -n "$MQTT_URL" ]]; then
        init_args+=(--mqtt "$MQTT_URL")
    fi
    (cd / && runuser -u "$SERVICE_USER" -- "$VENV/bin/python" -m edge_agent "${init_args[@]}")
fi

echo "==> clock synchronisation"
if systemctl list-unit-files systemd-timesyncd.service >/dev/null 2>&1; then
    systemctl enable --now systemd-timesyncd.service >/dev/null 2>&1 || true
fi

echo "==> systemd unit $UNIT"
install -m 0644 "$SRC/deploy/pi/$UNIT" "/etc/systemd/system/$UNIT"
systemctl daemon-reload
systemctl enable "$UNIT" >/dev/null
if [[ -e "$STATE_DIR/enrolment.bin" ]]; then
    systemctl restart "$UNIT"
    echo "    enrolled: service (re)started"
else
    echo "    not enrolled yet: next, iot-attest-agent enrol ... (see docs/installers.md, step 4)"
fi
echo "done."
