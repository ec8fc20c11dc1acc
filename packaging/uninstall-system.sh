#!/bin/sh
# `make uninstall-system`: remove what `make install-system` installed: the
# program, the unit, the udev rule and the shipped board files. The
# configuration, keys, settings and logs and the service user stay (remove
# /etc/inverter-agent, /var/lib/inverter-agent and the user by hand to wipe
# them). Not for a system where the Debian package is installed: use dpkg.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
root=${DESTDIR:-}
root=${root%/}

if [ -z "$root" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "uninstall-system: run as root (or give DESTDIR=...)" >&2
        exit 1
    fi
    if dpkg-query -W -f '${Status}' inverter-agent 2>/dev/null | grep -q ' installed$'; then
        echo "uninstall-system: the inverter-agent package is installed: dpkg -r inverter-agent" >&2
        exit 1
    fi
    if [ -d /run/systemd/system ]; then
        systemctl disable --now inverter-agent.service 2>/dev/null || true
    fi
fi

rm -rf "$root/opt/inverter-agent"
if [ "$(readlink "$root/usr/bin/inverter-agent" 2>/dev/null)" = \
        /opt/inverter-agent/venv/bin/inverter-agent ]; then
    rm -f "$root/usr/bin/inverter-agent"
fi
rm -f "$root/lib/systemd/system/inverter-agent.service" \
    "$root/lib/udev/rules.d/99-inverter-agent-rs485.rules"
for f in "$top"/board-configs/*.toml; do
    rm -f "$root/etc/inverter-agent/boards/$(basename "$f")"
done
rmdir "$root/etc/inverter-agent/boards" 2>/dev/null || true

if [ -z "$root" ]; then
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload
    fi
    if command -v udevadm >/dev/null && [ -S /run/udev/control ]; then
        udevadm control --reload || true
    fi
fi
echo "removed; kept /etc/inverter-agent, /var/lib/inverter-agent and the inverter-agent user"
