#!/bin/sh
# `make deb`: a Debian package of what `make install-system` installs.
#
#   DEB_VERSION=0.1.0 [OUT_DIR=build] [SYSTEM_PYTHON=/usr/bin/python3] [DEB_XZ_LEVEL=6] \
#       packaging/build-deb.sh
#
# Writes OUT_DIR/inverter-agent_<version>_<arch>.deb. The venv inside holds
# binary wheels for this machine's architecture and links to this machine's
# python3.11: build on (or for, in a chroot of) the distribution and
# architecture it is to run on, here Debian 12 "bookworm".
set -eu
umask 022

here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
version=${DEB_VERSION:?DEB_VERSION is required}
out=${OUT_DIR:-$top/build}
python=$(readlink -f "${SYSTEM_PYTHON:-/usr/bin/python3}")
# xz level of the package's data: 6 (dpkg's default) ships the smallest package
# (20 MB); 1 builds in a fifth of the time at 25 MB, for throw-away test builds.
xz_level=${DEB_XZ_LEVEL:-6}
case $xz_level in
    [0-9]) ;;
    *) echo "build-deb: DEB_XZ_LEVEL must be 0-9: $xz_level" >&2; exit 2 ;;
esac
maintainer=${DEB_MAINTAINER:-inverter-agent maintainers <inverter-agent@localhost>}
pkg=inverter-agent

for tool in dpkg-deb dpkg-shlibdeps; do
    command -v "$tool" >/dev/null || {
        echo "build-deb: $tool missing (apt-get install dpkg-dev)" >&2; exit 1; }
done
arch=$(dpkg --print-architecture)
case $version in
    [0-9]*) ;;
    *) echo "build-deb: DEB_VERSION must start with a digit: $version" >&2; exit 2 ;;
esac

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "$out/deb-work.XXXXXX")
trap 'rm -rf "$work"' EXIT
stage=$work/root

DESTDIR=$stage SYSTEM_PYTHON=$python sh "$here/install-system.sh"

# Debian's documentation files: copyright (with the bundled packages and their
# licences, read from the venv itself) and a changelog.
doc=$stage/usr/share/doc/$pkg
install -d -m 0755 "$doc"
{
    cat "$here/debian/copyright"
    echo
    echo "Bundled in /opt/inverter-agent/venv (licence texts in each package's"
    echo "*.dist-info directory there):"
    echo
    "$stage/opt/inverter-agent/venv/bin/python" -I - <<'EOF'
import importlib.metadata as md

for d in sorted(md.distributions(), key=lambda d: d.metadata["Name"].lower()):
    m = d.metadata
    lic = m.get("License-Expression") or m.get("License") or ""
    if not lic or len(lic) > 60:
        lic = "; ".join(c.split(" :: ")[-1] for c in m.get_all("Classifier") or []
                        if c.startswith("License ::")) or "see its dist-info"
    print(f" {m['Name']} {m['Version']}: {lic}")
EOF
} >"$doc/copyright"
chmod 0644 "$doc/copyright"
printf '%s (%s) bookworm; urgency=medium\n\n  * Built from the %s source tree.\n\n -- %s  %s\n' \
    "$pkg" "$version" "$pkg" "$maintainer" "$(date -R)" | gzip -9n >"$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"

# Control area.
ctl=$stage/DEBIAN
install -d -m 0755 "$ctl"
for script in postinst prerm postrm; do
    install -m 0755 "$here/debian/$script" "$ctl/$script"
done
# Every file under /etc is the installer's to edit: dpkg keeps edited ones.
(cd "$stage" && find etc -type f | sort | sed 's|^|/|') >"$ctl/conffiles"

# Libraries the wheels' extension modules link to outside the venv (libc,
# libstdc++, libgcc), with the versions their symbols need. dpkg-shlibdeps
# reads a debian/control, so it runs in a scratch directory with a stub one.
mkdir -p "$work/shlibs/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$pkg" "$pkg" \
    >"$work/shlibs/debian/control"
elfs=$(find "$stage/opt" -type f \( -name '*.so' -o -name '*.so.*' \) | sed 's/^/-e/')
# shellcheck disable=SC2086  # one -e argument per library
shlibs=$(cd "$work/shlibs" && dpkg-shlibdeps -O $elfs 2>/dev/null |
         sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || { echo "build-deb: dpkg-shlibdeps found no libraries" >&2; exit 1; }
# The venv runs the interpreter it was built with, /usr/bin/python3.X (its
# site-packages is lib/python3.X): that exact Python package is required.
pyver=$(basename "$python")
case $pyver in
    python3.[0-9]*) ;;
    *) echo "build-deb: $python is not a versioned python3.X interpreter" >&2; exit 1 ;;
esac
depends="$pyver, passwd, $shlibs"

size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$ctl/control" <<EOF
Package: $pkg
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size
Depends: $depends
Section: net
Priority: optional
Description: smart-inverter gateway: SunSpec Modbus to IEC 61850 MMS
 Reads a SunSpec inverter over Modbus (RS-485 RTU or TCP), serves it as an
 IEC 61850 MMS server (IEC 61850-7-420 / 90-7 model) and runs the California
 Rule 21 autonomous grid functions locally.
 .
 Runs as the systemd service inverter-agent from a self-contained Python
 environment in /opt/inverter-agent; configuration in /etc/inverter-agent,
 state in /var/lib/inverter-agent.
EOF
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
    xargs -0 md5sum) >"$ctl/md5sums"
chmod 0644 "$ctl/control" "$ctl/conffiles" "$ctl/md5sums"

deb=$out/${pkg}_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz -z"$xz_level" --build "$stage" "$deb" >/dev/null
echo "$deb"
