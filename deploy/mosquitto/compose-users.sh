#!/bin/sh
# docker-compose.yml only: the broker users the stack itself needs, then Mosquitto.
#
#   compose-users.sh COMMAND [ARG...]
#
# Creates or updates, in $MOSQUITTO_PASSWORD_FILE (on the mosquitto-auth volume):
#   gateway    password $MQTT_GATEWAY_PASSWORD (required)
#   simulator  password $MQTT_SIMULATOR_PASSWORD, the DEMO fleet's shared login;
#              if that variable is empty the user is removed (production)
# keeps every other entry (the devices added with add-device.sh), makes the file
# readable by the mosquitto user only, and then execs COMMAND (Mosquitto).
set -eu

PASSWORD_FILE="${MOSQUITTO_PASSWORD_FILE:-/mosquitto/auth/passwd}"
: "${MQTT_GATEWAY_PASSWORD:?compose-users.sh: set MQTT_GATEWAY_PASSWORD}"

mkdir -p "$(dirname "$PASSWORD_FILE")"
if [ ! -f "$PASSWORD_FILE" ]; then
    (umask 077 && : >"$PASSWORD_FILE")
fi
mosquitto_passwd -b "$PASSWORD_FILE" gateway "$MQTT_GATEWAY_PASSWORD"
if [ -n "${MQTT_SIMULATOR_PASSWORD:-}" ]; then
    mosquitto_passwd -b "$PASSWORD_FILE" simulator "$MQTT_SIMULATOR_PASSWORD"
elif grep -q '^simulator:' "$PASSWORD_FILE"; then
    mosquitto_passwd -D "$PASSWORD_FILE" simulator
fi
chmod 0600 "$PASSWORD_FILE"
if id mosquitto >/dev/null 2>&1; then
    chown mosquitto "$PASSWORD_FILE" 2>/dev/null || true
fi
exec "$@"
