#!/bin/bash
# `make check-armhf`: the BeagleBone Black steps of docs/install.md in an emulated
# Debian 12 armhf root (qemu-user through binfmt_misc), as root.
#
#   [LIBIEC61850_SRC=v1.6.1.tar.gz MBEDTLS_SRC=mbedtls-3.6.2.tar.bz2] packaging/check-armhf.sh
#
# 1. qemu-user-static and debootstrap are installed if missing, binfmt_misc is
#    mounted if needed and an ARM (qemu-arm) handler registered if there is none.
# 2. A minbase bookworm armhf root with exactly the packages of the BeagleBone
#    `apt-get install` line in docs/install.md (read from the file) is
#    debootstrapped once and cached as a tarball in .cache/packaging/.
# 3. libiec61850 is built in a copy of it the documented way
#    (packaging/build-libiec61850.sh), from release sources at hand, as there is
#    no download here. It looks for them in:
#      LIBIEC61850_SRC   a libiec61850 release tarball (e.g. v1.6.1.tar.gz), else
#                        .cache/armhf/libiec61850-*.tar.* or .cache/armhf/v1.6*.tar.*
#      MBEDTLS_SRC       an mbedTLS 3.6 release tarball, else .cache/armhf/mbedtls-3.6*.tar.*
#    Without both, the build and the MMS run (step 5) are SKIPPED, and said so.
# 4. `make install-system` on a copy of this source tree builds the venv there
#    (cffi compiles from source on armhf).
# 5. With the library built, the installed agent runs there as the service
#    user with the simulator and mms.libiec61850 pointed at it; `status` is shown
#    and the host reads the model over MMS with the project's own (x86) client,
#    then stops it with SIGTERM. Without the library, the agent must refuse to
#    start and name docs/install.md.
# 6. A summary with the timings; the exit status is non-zero on any failure
#    (a skipped step is not one).
#
# Every step has a time limit. Slow (the libiec61850 build alone takes tens of
# minutes under emulation): not part of `make test`. The temporary root is
# removed on exit; only the cached tarball stays. Environment:
# INVERTER_AGENT_DEBIAN_MIRROR (default http://deb.debian.org/debian),
# ARMHF_WAIT (seconds to wait for the agent, default 180), ARMHF_JOBS (make -j
# for the library, default the host's CPUs), HOST_AGENT (default .venv's).
set -euo pipefail
umask 022

check="check-armhf"
arch=armhf
qemu="qemu-arm"
want_file="ARM, EABI5"
wait_s=${ARMHF_WAIT:-180}
here=$(cd "$(dirname "$0")" && pwd)
# The packages the docs tell a BeagleBone installer to apt-get install: the
# first such line after the BeagleBone heading.
pkgs=$(awk '/^### BeagleBone Black/ { on = 1 }
            on && /^sudo apt-get install / { sub(/^sudo apt-get install +/, ""); print; exit }' \
       "$here/../docs/install.md")
include=$(echo "$pkgs" | tr -s ' ' ',')
# shellcheck source=packaging/check-common.sh
. "$here/check-common.sh"
[ -n "$pkgs" ] || fail "no 'sudo apt-get install' line under the BeagleBone heading of docs/install.md"

# The first file matching a pattern (unmatched patterns stay literal: not files).
first_file() {
    local f
    for f in "$@"; do [ -f "$f" ] && { echo "$f"; return 0; }; done
    return 0
}
lib_src=${LIBIEC61850_SRC:-$(first_file "$top"/.cache/armhf/libiec61850-*.tar.* \
                                        "$top"/.cache/armhf/v1.6*.tar.*)}
tls_src=${MBEDTLS_SRC:-$(first_file "$top"/.cache/armhf/mbedtls-3.6*.tar.*)}

# --- 1. tools and the ARM binfmt handler ----------------------------------------------

setup_host
log "packages from docs/install.md: $pkgs"

# --- 2. the armhf root (cached) -------------------------------------------------------

make_root

run=$work/run
unpack_root "$run"
check_root "$run"
copy_source "$run"
net_setup "$run"

# --- 3. libiec61850, the documented way -----------------------------------------------

build_time=skipped
library=
if [ -z "$lib_src" ] || [ ! -f "$lib_src" ] || [ -z "$tls_src" ] || [ ! -f "$tls_src" ]; then
    skip "libiec61850 build: no release source at hand (LIBIEC61850_SRC='${LIBIEC61850_SRC-}'," \
         "MBEDTLS_SRC='${MBEDTLS_SRC-}', nothing matching in $top/.cache/armhf/)"
else
    log "building libiec61850 from $(basename "$lib_src") with $(basename "$tls_src")" \
        "(emulated; tens of minutes)"
    cp "$lib_src" "$tls_src" "$run/tmp/"
    t=$(date +%s)
    in_root 5400 "$run" env JOBS="${ARMHF_JOBS:-$(nproc)}" \
        sh /usr/src/inverter-agent/packaging/build-libiec61850.sh \
        "/tmp/$(basename "$lib_src")" "/tmp/$(basename "$tls_src")" >"$work/lib.log" 2>&1 ||
        { show_tail "$work/lib.log" 40; fail "build-libiec61850.sh failed in the armhf root"; }
    build_time="$(elapsed "$t") s"
    grep '^build-libiec61850:' "$work/lib.log" | sed 's/^/    /'
    library=/usr/local/lib/libiec61850.so
    check_elf "libiec61850 built in the root" "$run$library"
    pass "libiec61850 built and installed with TLS in $build_time"
fi

# --- 4. make install-system: the venv, emulated ---------------------------------------

log "make install-system in the armhf root (emulated; takes minutes)"
t=$(date +%s)
in_root 3600 "$run" make -C /usr/src/inverter-agent --no-print-directory install-system \
    >"$work/install.log" 2>&1 ||
    { show_tail "$work/install.log" 40; fail "make install-system failed in the armhf root"; }
install_time=$(elapsed "$t")
venv=/opt/inverter-agent/venv
[ -x "$run$agent" ] || fail "no $agent after make install-system"
if find "$run$venv" -name '_pyiec61850*.so' | grep -q .; then
    fail "pyiec61850-ng was installed on armhf (the platform marker should keep it out)"
fi
# Which compiled dependencies came as wheels from PyPI and which pip built here:
# a wheel built on the spot is tagged plain linux_armv7l, not manylinux.
built=$(grep -l '^Tag: .*-linux_armv7l$' "$run$venv"/lib/python3*/site-packages/*.dist-info/WHEEL \
        2>/dev/null | sed 's|.*/\([^/]*\)-[^-/]*\.dist-info/WHEEL|\1|' | sort | tr '\n' ' ' | sed 's/ $//')
wheels=$(grep -l '^Tag: .*-manylinux.*armv7l$' "$run$venv"/lib/python3*/site-packages/*.dist-info/WHEEL \
         2>/dev/null | sed 's|.*/\([^/]*\)-[^-/]*\.dist-info/WHEEL|\1|' | sort | tr '\n' ' ' | sed 's/ $//')
log "armv7l wheels from PyPI: ${wheels:-none}"
log "compiled from source in the root: ${built:-none}"
# shellcheck disable=SC2046  # one path per word
check_elf "compiled extensions in the venv (${built:-nothing} built from source)" \
    $(find "$run$venv" -name '_cffi_backend*.so' -o -name '_pydantic_core*.so')
pass "make install-system in the armhf root: $agent in $install_time s"

# What the kernel lets the agent read of its connections (idle-connection closing).
if in_root 60 "$run" "$venv/bin/python" -c \
        'from inverter_agent.adapters._shared.wirestats import sample_tcp; sample_tcp(1)' \
        >"$work/diag.txt" 2>&1; then
    log "sock_diag: readable here (idle-connection closing can work)"
else
    log "sock_diag: NOT readable here: $(tail -n 1 "$work/diag.txt")"
fi

# --- 5. run, emulated, read from the host ---------------------------------------------

served=- linked=-
if [ -n "$library" ]; then
    run_agent "$run" "INVERTER_AGENT_LIBIEC61850=$library"
    grep -m1 'libiec61850 .* loaded from' "$work/agent.log" | sed 's/^/    /'
    if grep -q 'built without TLS' "$work/agent.log"; then
        fail "the agent says its libiec61850 was built without TLS"
    fi
    pass "the agent loaded $library, with TLS"
else
    log "starting the agent without a libiec61850 (expected: a refusal naming docs/install.md)"
    rc=0
    in_root 180 "$run" --user="$user" "$agent" run --simulate --mms-host 127.0.0.1 \
        --mms-port "$(free_port)" --state-dir /tmp/s >"$work/agent.log" 2>&1 || rc=$?
    [ "$rc" != 0 ] || fail "the agent started without a libiec61850"
    grep -q 'docs/install.md' "$work/agent.log" ||
        { show_tail "$work/agent.log"; fail "the refusal (exit $rc) does not point at docs/install.md"; }
    grep -m1 'docs/install.md' "$work/agent.log" | sed 's/^/    /'
    pass "without a libiec61850 the agent refuses to start (exit $rc) and names docs/install.md"
    skip "MMS served from armhf and read from the host: needs the libiec61850 build (step 3)"
fi

# --- 6. summary -----------------------------------------------------------------------

print_summary "armhf root $root_time; libiec61850 build $build_time;" \
    "make install-system $install_time s; agent to MMS $served s / link_up $linked s"
