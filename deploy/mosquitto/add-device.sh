#!/bin/sh
# Give a newly enrolled device its Mosquitto login.
#
#   add-device.sh [--replace] DEVICE_ID
#
# Adds DEVICE_ID to Mosquitto's password file with a new random password and
# prints the password ONCE: put it in the device's /etc/iot-attest/agent.toml,
#   [mqtt]
#   username = ""            # empty = the device id
#   password = "<printed password>"
# and keep no other copy.  --replace gives an existing device a new password
# (the old one stops working at the next reload).
#
# No ACL edit is needed: deploy/mosquitto/acl grants by pattern
# (`pattern write attest/v1/%u/readings`, `pattern write attest/v1/%u/status`,
# `pattern read attest/v1/%u/receipts`, %u = the user name = the device id), so
# every device may publish only its own readings and status and read only its
# own receipts.
#
# Then make Mosquitto re-read the file (existing connections stay up):
#   docker compose kill -s SIGHUP mosquitto     # the docker-compose.yml stack
#   sudo systemctl reload mosquitto             # Mosquitto from packages
#   sudo kill -HUP "$(pidof mosquitto)"         # anything else
#
# The password file: $MOSQUITTO_PASSWORD_FILE (docker-compose.yml sets it to
# /mosquitto/auth/passwd; run the script there with
# `docker compose exec mosquitto sh /mosquitto/config/add-device.sh DEVICE_ID`),
# else /etc/mosquitto/passwd.  It is created if it does not exist.
set -eu
export LC_ALL=C

PASSWORD_FILE="${MOSQUITTO_PASSWORD_FILE:-/etc/mosquitto/passwd}"
REPLACE=no

usage() {
    sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case "$1" in
        --replace) REPLACE=yes; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; break ;;
        -*) echo "add-device.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) break ;;
    esac
done
if [ $# -ne 1 ]; then
    echo "usage: add-device.sh [--replace] DEVICE_ID (see --help)" >&2
    exit 2
fi
DEVICE_ID="$1"

# The device id rule of attest_core.codec.ID_RE: 1-64 characters from A-Z a-z 0-9 . _ -,
# starting with a letter or digit.  (No / + # $: it becomes a topic level.)
case "$DEVICE_ID" in
    ''|[._-]*|*[!A-Za-z0-9._-]*) valid=no ;;
    *) valid=yes ;;
esac
if [ "$valid" != yes ] || [ ${#DEVICE_ID} -gt 64 ]; then
    echo "add-device.sh: '$DEVICE_ID' is not a device id (1-64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit)" >&2
    exit 2
fi
# Users with their own ACL rules, not devices.
case "$DEVICE_ID" in
    gateway|simulator)
        echo "add-device.sh: '$DEVICE_ID' is a reserved user name (see the acl file), not a device" >&2
        exit 2 ;;
esac

if ! command -v mosquitto_passwd >/dev/null 2>&1; then
    echo "add-device.sh: mosquitto_passwd not found (apt install mosquitto, or run it in the mosquitto container)" >&2
    exit 1
fi

if [ -f "$PASSWORD_FILE" ]; then
    if cut -d: -f1 "$PASSWORD_FILE" | grep -qxF -- "$DEVICE_ID" && [ "$REPLACE" != yes ]; then
        echo "add-device.sh: $DEVICE_ID already has a password in $PASSWORD_FILE (--replace gives it a new one)" >&2
        exit 1
    fi
else
    dir=$(dirname "$PASSWORD_FILE")
    mkdir -p "$dir"
    (umask 077 && : >"$PASSWORD_FILE")
    if id mosquitto >/dev/null 2>&1; then
        chown mosquitto "$PASSWORD_FILE" 2>/dev/null || true
    fi
    echo "created $PASSWORD_FILE" >&2
fi

# 24 random bytes as 48 hex digits: safe in TOML and in mqtt:// URLs.
PASSWORD=$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')
if [ ${#PASSWORD} -ne 48 ]; then
    echo "add-device.sh: could not read random bytes from /dev/urandom" >&2
    exit 1
fi

mosquitto_passwd -b "$PASSWORD_FILE" "$DEVICE_ID" "$PASSWORD"

echo "device:   $DEVICE_ID"
echo "password: $PASSWORD"
echo
echo "The password is shown only this once.  On the device, in /etc/iot-attest/agent.toml:"
echo "  [mqtt]"
echo "  username = \"\"   # = the device id"
echo "  password = \"$PASSWORD\""
echo "No ACL edit is needed (pattern rules on attest/v1/%u/...)."
echo "Now reload Mosquitto: docker compose kill -s SIGHUP mosquitto | sudo systemctl reload mosquitto | sudo kill -HUP \"\$(pidof mosquitto)\""
