#!/bin/bash
# `make check-arm64`: build, install and run the arm64 Debian package in an
# emulated Debian 12 arm64 root (qemu-user through binfmt_misc), as root.
#
#   packaging/check-arm64.sh
#
# 1. qemu-user-static and debootstrap are installed if missing, binfmt_misc is
#    mounted if needed and an aarch64 handler registered if there is none.
# 2. A minbase bookworm arm64 root with python3, python3-venv, make and
#    dpkg-dev is debootstrapped once and cached as a tarball in .cache/packaging/.
# 3. In a copy of it, `make deb` runs on a copy of this source tree.
# 4. In another fresh copy, the package is installed with dpkg and the installed
#    agent runs there as the service user with the simulator; the host reads a
#    value from it over MMS with the project's own (x86) client, then stops it
#    with SIGTERM.
# 5. A summary with the timings; the exit status is non-zero on any failure.
#
# Every step has a time limit. Slow (tens of minutes under emulation): not part
# of `make test`. The temporary roots are removed on exit; only the cached
# tarball stays. Environment: INVERTER_AGENT_DEBIAN_MIRROR (default
# http://deb.debian.org/debian), ARM64_WAIT (seconds to wait for the agent,
# default 120), HOST_AGENT (the host's inverter-agent, default .venv's).
set -euo pipefail
umask 022

check="check-arm64"
arch=arm64
qemu="qemu-aarch64"
include=python3,python3-venv,make,dpkg-dev
want_file="ARM aarch64"
wait_s=${ARM64_WAIT:-120}
# shellcheck source=packaging/check-common.sh
. "$(dirname "$0")/check-common.sh"

# --- 1. tools and the aarch64 binfmt handler ----------------------------------------

setup_host

# --- 2. the arm64 root (cached) -------------------------------------------------------

make_root

# --- 3. make deb, emulated ------------------------------------------------------------

build=$work/build
unpack_root "$build"
check_root "$build"
copy_source "$build"
net_setup "$build"

log "make deb in the arm64 root (emulated; takes minutes)"
t=$(date +%s)
in_root 2400 "$build" make -C /usr/src/inverter-agent --no-print-directory deb \
    DEB_OUT=/usr/src/out >"$work/build.log" 2>&1 ||
    { show_tail "$work/build.log" 40; fail "make deb failed in the arm64 root"; }
build_time=$(elapsed "$t")
deb=$build/usr/src/out/inverter-agent_${version}_arm64.deb
[ -f "$deb" ] || { show_tail "$work/build.log"; fail "no $(basename "$deb") built"; }
deb_arch=$(dpkg-deb -f "$deb" Architecture)
log "built $(basename "$deb"): Architecture: $deb_arch, $(du -h "$deb" | cut -f1)"
log "Depends: $(dpkg-deb -f "$deb" Depends)"
[ "$deb_arch" = arm64 ] || fail "the package's architecture is $deb_arch, not arm64"
cp "$deb" "$work/"
deb=$work/$(basename "$deb")
remove_tree "$build"
pass "make deb in the arm64 root: $(basename "$deb") (Architecture: $deb_arch) in $build_time s"

# --- 4. dpkg -i and run, emulated -----------------------------------------------------

run=$work/run
unpack_root "$run"
cp "$deb" "$run/tmp/"
t=$(date +%s)
in_root 900 "$run" dpkg -i "/tmp/$(basename "$deb")" >"$work/dpkg.log" 2>&1 ||
    { show_tail "$work/dpkg.log"; fail "dpkg -i failed in the arm64 root"; }
install_time=$(elapsed "$t")
rm -f "$run/tmp/$(basename "$deb")"
# shellcheck disable=SC2016  # dpkg-query's format, not the shell's
status=$(in_root 60 "$run" dpkg-query -W -f '${db:Status-Abbrev}${Version}' inverter-agent)
[ "$status" = "ii $version" ] || fail "dpkg-query says '$status', not 'ii $version'"
pass "dpkg -i in a fresh arm64 root: $status, in $install_time s"

log "bundled libiec61850 (file, on the host):"
libs=$(find "$run/opt/inverter-agent/venv" -name 'libiec61850*.so*' -o -name '_pyiec61850*.so')
[ -n "$libs" ] || fail "no libiec61850 shared object in the venv"
# shellcheck disable=SC2086  # one path per word
check_elf "libiec61850 and its Python extension in the venv" $libs

run_agent "$run"

# --- 5. summary -----------------------------------------------------------------------

print_summary "arm64 root $root_time; make deb $build_time s; dpkg -i $install_time s;" \
    "agent to MMS $served s / link_up $linked s"
