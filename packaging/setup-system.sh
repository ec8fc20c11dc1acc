#!/bin/sh
# What the service needs on the machine besides its files: the system user, the
# state and key directories, and systemd / udev told about new unit and rule
# files. Run as root by `make install-system` and by the Debian package's
# postinst, on every install and upgrade; it only ever creates what is missing,
# so settings, keys and logs from earlier versions stay as they are.
#
# Works in a chroot or container without systemd or udev running (an image
# being built): the reloads are skipped there.
set -eu

user=inverter-agent
state=/var/lib/inverter-agent
conf=/etc/inverter-agent

getent group dialout >/dev/null || groupadd --system dialout
getent group "$user" >/dev/null || groupadd --system "$user"
if ! getent passwd "$user" >/dev/null; then
    useradd --system --gid "$user" --groups dialout --home-dir "$state" --no-create-home \
        --shell /usr/sbin/nologin --comment "inverter-agent gateway service" "$user"
elif ! id -nG "$user" | tr ' ' '\n' | grep -qx dialout; then
    usermod --append --groups dialout "$user"
fi

# The unit's StateDirectory= would create it at start too; creating it here
# lets the installer put files in before the first start.
[ -d "$state" ] || install -d -o "$user" -g "$user" -m 0750 "$state"
# Device key and certificates (inverter-agent certs request --dir $conf/tls):
# readable by the service's group, writable by root only.
[ -d "$conf/tls" ] || install -d -o root -g "$user" -m 0750 "$conf/tls"
# The config may hold password hashes: not for everyone's eyes. Only a file
# still as shipped (root:root 0644) is changed; an installer's choice stays.
if [ -f "$conf/agent.toml" ] && [ "$(stat -c '%U:%G %a' "$conf/agent.toml")" = "root:root 644" ]
then
    chgrp "$user" "$conf/agent.toml"
    chmod 0640 "$conf/agent.toml"
fi

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    systemctl daemon-reload
fi
if command -v udevadm >/dev/null && [ -S /run/udev/control ]; then
    udevadm control --reload || true
    # An adapter plugged in already gets its /dev/rs485-inverter name now.
    udevadm trigger --subsystem-match=tty --action=change || true
fi
