#!/bin/sh
# `make install-system`: install the gateway as a system service.
#
#   [DESTDIR=/some/root] [SYSTEM_PYTHON=/usr/bin/python3] packaging/install-system.sh
#
# Installs the program (a self-contained venv) under /opt/inverter-agent with the
# docs and device profiles, /usr/bin/inverter-agent (a link into the venv), the
# systemd unit and the udev rule, the board files and, only when there is none
# yet, the default /etc/inverter-agent/agent.toml. Run again to upgrade: the
# program, unit, udev rule and board files are replaced; agent.toml, the keys
# in /etc/inverter-agent/tls and everything in /var/lib/inverter-agent are left
# as they are.
#
# With DESTDIR the files go under that root and nothing else happens (a staging
# tree for `make deb`, or an image / chroot to be booted later). Without it, as
# root, the service user and the state directory are created and systemd and
# udev are told about the new files if they are running.
set -eu
umask 022

here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
root=${DESTDIR:-}
root=${root%/}
python=${SYSTEM_PYTHON:-/usr/bin/python3}

app=/opt/inverter-agent
conf=/etc/inverter-agent
# The vendor locations, as a package would use them: the installer's own
# overrides go in /etc/systemd/system (`systemctl edit inverter-agent`) and
# /etc/udev/rules.d (a rule file of the same name replaces ours), and an
# upgrade never overwrites them.
unitdir=/lib/systemd/system
udevdir=/lib/udev/rules.d

if [ -z "$root" ] && [ "$(id -u)" != 0 ]; then
    echo "install-system: run as root (or give DESTDIR=... to stage the files)" >&2
    exit 1
fi
if [ -z "$root" ] && dpkg-query -W -f '${Status}' inverter-agent 2>/dev/null |
        grep -q ' installed$'; then
    echo "install-system: the inverter-agent Debian package is installed here; upgrade it" \
         "with a newer package (or dpkg -r it first)" >&2
    exit 1
fi
if [ ! -x "$python" ]; then
    echo "install-system: $python not found: the venv is built with the target's" \
         "interpreter (Debian: apt-get install python3 python3-venv)" >&2
    exit 1
fi

sh "$here/build-venv.sh" "$top" "$root$app/venv" "$app/venv" "$python"

install -D -m 0644 "$top/README.md" "$root$app/README.md"
install -d -m 0755 "$root$app/docs" "$root$app/share/profiles" "$root/usr/bin"
install -m 0644 "$top"/docs/*.md "$root$app/docs/"
# The device profiles (`inverter-agent sim --profile FILE`): bench tests of a device kind.
install -m 0644 "$top"/simulator/profiles/*.json "$root$app/share/profiles/"
# On PATH: the command the docs use, without the venv's path.
ln -sfn "$app/venv/bin/inverter-agent" "$root/usr/bin/inverter-agent"
install -D -m 0755 "$here/setup-system.sh" "$root$app/share/setup-system.sh"
install -D -m 0644 "$top/systemd/inverter-agent.service" "$root$unitdir/inverter-agent.service"
install -D -m 0644 "$top/systemd/99-inverter-agent-rs485.rules" \
    "$root$udevdir/99-inverter-agent-rs485.rules"
install -d -m 0755 "$root$conf/boards"
install -m 0644 "$top"/board-configs/*.toml "$root$conf/boards/"
if [ -e "$root$conf/agent.toml" ]; then
    echo "install-system: kept $conf/agent.toml (the default is $app/share/agent.toml)"
else
    install -m 0644 "$here/agent.toml" "$root$conf/agent.toml"
fi
# The shipped default, for comparison after an upgrade.
install -m 0644 "$here/agent.toml" "$root$app/share/agent.toml"

if [ -z "$root" ]; then
    sh "$app/share/setup-system.sh"
    if [ -d /run/systemd/system ]; then
        # Running already? Then it runs the new version from now on.
        systemctl try-restart inverter-agent.service
    fi
    echo "installed; edit $conf/agent.toml, then: systemctl enable --now inverter-agent"
fi
