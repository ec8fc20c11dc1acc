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

here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
suite=bookworm
include=python3,python3-venv,make,dpkg-dev
mirror=${INVERTER_AGENT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=$top/.cache/packaging
tarball=$cache/$suite-arm64-minbase-${include//,/-}.tar
host_agent=${HOST_AGENT:-$top/.venv/bin/inverter-agent}
wait_s=${ARM64_WAIT:-120}
agent=/opt/inverter-agent/venv/bin/inverter-agent
user=inverter-agent
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$top/pyproject.toml")
bm=/proc/sys/fs/binfmt_misc

# A clean environment inside the root (nothing of the host's venv); proxy and
# pip settings are added to it by net_setup.
root_env=(PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/root
          DEBIAN_FRONTEND=noninteractive)

t_start=$(date +%s)
summary=()
temps=()
agent_pid=

log() { printf '[check-arm64 %s] %s\n' "$(date +%T)" "$*"; }
fail() {
    log "FAIL: $*"
    exit 1
}
pass() {
    summary+=("PASS  $1")
    log "ok: $1"
}
show_tail() {  # the end of a log file, indented, on stderr
    if [ -f "$1" ]; then tail -n "${2:-25}" "$1" | sed 's/^/    | /' >&2; fi
}
elapsed() { echo $(($(date +%s) - $1)); }

remove_tree() {
    # Anything a failed tool left mounted below the tree first, deepest first.
    awk -v p="$1/" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r |
        while read -r m; do umount --lazy "$m" || true; done
    rm -rf --one-file-system "$1"
}

alive() {  # the process exists and is not a zombie
    local state
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

cleanup() {
    local rc=$? t
    trap - EXIT INT TERM
    if [ -n "$agent_pid" ] && alive "$agent_pid"; then
        kill -KILL "$agent_pid" 2>/dev/null || true
        wait "$agent_pid" 2>/dev/null || true
    fi
    for t in "${temps[@]}"; do
        [ -e "$t" ] && remove_tree "$t"
    done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# in_root SECONDS ROOT [--user=NAME] COMMAND...: run COMMAND chrooted into ROOT
# with /proc mounted in a private mount namespace (gone with the process).
in_root() {
    local secs=$1 root=$2 spec=()
    shift 2
    case ${1-} in
        --user=*) spec=(--userspec="${1#--user=}:${1#--user=}"); shift ;;
    esac
    timeout --kill-after=10 "$secs" env -i "${root_env[@]}" \
        unshare --mount --mount-proc="$root/proc" chroot "${spec[@]}" "$root" "$@"
}

# ROOT is a fresh root from the cached tarball.
unpack_root() {
    mkdir -p "$1"
    timeout 600 tar -C "$1" --numeric-owner -xpf "$tarball"
    put_interpreter "$1"
}

# With the F flag the kernel opened the interpreter when the handler was
# registered and uses it in any chroot. Without it the interpreter's path has to
# exist inside the root: copy it there.
put_interpreter() {
    local interp flags
    flags=$(sed -n 's/^flags: *//p' "$bm/qemu-aarch64")
    case $flags in *F*) return 0 ;; esac
    interp=$(sed -n 's/^interpreter *//p' "$bm/qemu-aarch64")
    mkdir -p "$1$(dirname "$interp")"
    cp -L "$interp" "$1$interp"
}

# pip inside a root reaches PyPI as the host does: the host's resolver, its CA
# bundle (outbound TLS may go through a proxy with its own CA) and proxy settings.
net_setup() {
    local root=$1 bundle var
    cp -L /etc/resolv.conf "$root/etc/resolv.conf"
    bundle=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
    if [ -f "$bundle" ]; then
        cp -L "$bundle" "$root/etc/host-ca-certificates.crt"
        root_env+=(PIP_CERT=/etc/host-ca-certificates.crt)
    fi
    for var in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY \
               PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_DEFAULT_TIMEOUT; do
        if [ -n "${!var-}" ]; then
            case ${!var} in *file:*) continue ;; esac  # a host-only local index
            root_env+=("$var=${!var}")
        fi
    done
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- 1. tools and the aarch64 binfmt handler ----------------------------------------

[ "$(id -u)" = 0 ] || fail "run as root (debootstrap, chroot, dpkg, binfmt_misc)"
[ -n "$version" ] || fail "no version in pyproject.toml"
[ -x "$host_agent" ] || fail "$host_agent missing (make install builds .venv)"

need() {  # need COMMAND PACKAGE: install PACKAGE with apt-get if COMMAND is missing
    if command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; then return 0; fi
    command -v apt-get >/dev/null 2>&1 || fail "$1 missing and no apt-get to install $2"
    log "installing $2"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get install -y -q "$2" >/dev/null 2>&1 ||
        { timeout 600 apt-get update -q >/dev/null &&
          timeout 600 apt-get install -y -q "$2" >/dev/null; } ||
        fail "cannot install $2"
}
need qemu-aarch64-static qemu-user-static
need debootstrap debootstrap
need dpkg-deb dpkg
need file file
need unshare util-linux
need python3 python3
PATH=$PATH:/usr/sbin:/sbin

if [ ! -e "$bm/register" ]; then
    mount -t binfmt_misc binfmt_misc "$bm" || fail "cannot mount binfmt_misc on $bm"
fi
if [ ! -e "$bm/qemu-aarch64" ] && command -v update-binfmts >/dev/null 2>&1; then
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
fi
if [ ! -e "$bm/qemu-aarch64" ]; then
    # The handler qemu-user-static describes (systemd-binfmt registers it at
    # boot, which a container does not have), with F added: the interpreter is
    # opened now, so it works inside chroots without a copy there.
    conf=/usr/lib/binfmt.d/qemu-aarch64.conf
    [ -r "$conf" ] || fail "no $conf (qemu-user-static) to register aarch64 from"
    line=$(grep -m1 '^:qemu-aarch64:' "$conf") || fail "no qemu-aarch64 line in $conf"
    case ${line##*:} in *F*) ;; *) line=${line}F ;; esac
    printf '%s\n' "$line" >"$bm/register" || fail "cannot register the aarch64 handler"
    log "registered the qemu-aarch64 binfmt handler (flags ${line##*:})"
fi
grep -qx enabled "$bm/qemu-aarch64" || fail "the qemu-aarch64 binfmt handler is disabled"
pass "qemu-aarch64 binfmt handler: $(sed -n 's/^interpreter //p' "$bm/qemu-aarch64"), flags $(sed -n 's/^flags: //p' "$bm/qemu-aarch64")"

work=$(mktemp -d "${TMPDIR:-/tmp}/check-arm64.XXXXXX")
temps+=("$work")

# --- 2. the arm64 root (cached) -------------------------------------------------------

if [ -f "$tarball" ]; then
    root_time="cached ($(basename "$tarball"))"
    log "using the cached root $tarball"
else
    log "debootstrapping $suite arm64 (minbase + $include) from $mirror"
    mkdir -p "$cache"
    boot=$(mktemp -d "$cache/debootstrap-arm64.XXXXXX")
    temps+=("$boot")
    t=$(date +%s)
    timeout --kill-after=10 1200 debootstrap --arch=arm64 --foreign --variant=minbase \
        --include="$include" "$suite" "$boot/root" "$mirror" >"$boot/log" 2>&1 ||
        { show_tail "$boot/log"; fail "debootstrap (first stage) failed"; }
    put_interpreter "$boot/root"
    log "second stage, emulated"
    timeout --kill-after=10 2400 env -i "${root_env[@]}" unshare --mount \
        chroot "$boot/root" /debootstrap/debootstrap --second-stage >>"$boot/log" 2>&1 ||
        { show_tail "$boot/log"; fail "debootstrap --second-stage failed"; }
    timeout 600 tar -C "$boot/root" --numeric-owner -cf "$boot/root.tar" .
    mv "$boot/root.tar" "$tarball"  # only a finished root gets the name
    remove_tree "$boot"
    root_time="$(elapsed "$t") s (debootstrap, both stages)"
    pass "debootstrapped the arm64 root in $root_time"
fi

# --- 3. make deb, emulated ------------------------------------------------------------

build=$work/build
unpack_root "$build"
in_root 60 "$build" dpkg --print-architecture >"$work/arch" ||
    fail "cannot run the arm64 root's programs (is the binfmt handler working?)"
[ "$(cat "$work/arch")" = arm64 ] || fail "the root says its architecture is $(cat "$work/arch")"
in_root 60 "$build" uname -m >"$work/uname"
log "arm64 root runs: dpkg --print-architecture=arm64, uname -m=$(cat "$work/uname")"

mkdir -p "$build/usr/src/inverter-agent"
(cd "$top" && tar -cf - --exclude=__pycache__ --exclude='*.egg-info' pyproject.toml \
    README.md LICENSE Makefile hal inverter_agent simulator packaging systemd \
    board-configs docs) | tar -xf - -C "$build/usr/src/inverter-agent"
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
for so in $libs; do
    desc=$(file -L "$so")
    printf '    %s\n' "${desc#"$run"}"
    case $desc in *"ARM aarch64"*) ;; *) fail "$so is not an aarch64 object" ;; esac
done
pass "libiec61850 and its Python extension in the venv are ELF aarch64"

port=$(free_port)
uid=$(awk -F: -v u="$user" '$1 == u { print $3 }' "$run/etc/passwd")
[ -n "$uid" ] || fail "dpkg -i did not create the user $user"
log "starting the installed agent as $user (uid $uid) on 127.0.0.1:$port, simulated inverter"
t=$(date +%s)
# unshare and chroot exec, so $! is the agent itself (under qemu-user).
env -i "${root_env[@]}" unshare --mount --mount-proc="$run/proc" \
    chroot --userspec="$user:$user" "$run" "$agent" run --simulate \
    --mms-port "$port" --mms-host 127.0.0.1 --state-dir /tmp/s --poll-period 1 \
    >"$work/agent.log" 2>&1 &
agent_pid=$!

served=''
linked=''
deadline=$((t + wait_s))
while [ "$(date +%s)" -lt "$deadline" ] && alive "$agent_pid"; do
    if [ -z "$served" ] &&
        timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
        served=$(elapsed "$t")
    fi
    if [ -z "$linked" ] &&
        grep -q '"link_up": true' "$run/tmp/s/status.json" 2>/dev/null; then
        linked=$(elapsed "$t")
    fi
    if [ -n "$served" ] && [ -n "$linked" ]; then break; fi
    sleep 1
done
if ! alive "$agent_pid"; then
    show_tail "$work/agent.log"
    fail "the agent exited before serving"
fi
[ -n "$served" ] || { show_tail "$work/agent.log"; fail "MMS not listening on port $port after $wait_s s"; }
[ -n "$linked" ] || { show_tail "$work/agent.log"; fail "status.json showed no link_up after $wait_s s"; }
pass "agent serves MMS after $served s, status.json link_up after $linked s (limit $wait_s s)"

running_uid=$(awk '/^Uid:/ { print $2 }' "/proc/$agent_pid/status")
[ "$running_uid" = "$uid" ] || fail "the agent runs as uid $running_uid, not $user ($uid)"
# What the kernel runs for it: the emulator (with the F flag, the exe link
# names the interpreter the handler opened).
pass "the agent runs as $user, emulated: /proc/$agent_pid/exe -> $(readlink "/proc/$agent_pid/exe")"

t=$(date +%s)
timeout 90 "$host_agent" read --host 127.0.0.1 --port "$port" --timeout 30 \
    >"$work/read.txt" 2>"$work/read.err" ||
    { show_tail "$work/read.err"; fail "the host's MMS client could not read the model"; }
read_time=$(elapsed "$t")
# LD lines have no indent, LN lines two spaces, attributes four.
line=$(awk '/^[^ ]/ { ld = $1 } /^  [^ ]/ { ln = $1 }
            /^    / && ld == "GWINV1" && ln == "MMXU1" && $1 == "PhV.phsA" { print; exit }' \
       "$work/read.txt")
log "read over MMS from the host ($(wc -l <"$work/read.txt") values, $read_time s):" \
    "GWINV1/MMXU1.${line#"${line%%[! ]*}"}"
value=$(echo "$line" | awk '{ print $3 }')
quality=$(echo "$line" | awk '{ print $4 }')
[ -n "$line" ] || fail "GWINV1/MMXU1.PhV.phsA not in the model read"
awk -v v="$value" 'BEGIN { exit !(v + 0 >= 228 && v + 0 <= 252) }' ||
    fail "GWINV1/MMXU1.PhV.phsA = $value, expected about 240 V"
[ "$quality" = "[good]" ] || fail "GWINV1/MMXU1.PhV.phsA quality is $quality, not [good]"
pass "host x86 client read GWINV1/MMXU1.PhV.phsA = $value V $quality in $read_time s"

kill -TERM "$agent_pid"
t=$(date +%s)
while alive "$agent_pid" && [ "$(elapsed "$t")" -lt 60 ]; do sleep 0.5; done
if alive "$agent_pid"; then
    show_tail "$work/agent.log"
    fail "the agent did not stop within 60 s of SIGTERM"
fi
rc=0
wait "$agent_pid" || rc=$?
agent_pid=
stop_time=$(elapsed "$t")
[ "$rc" = 0 ] || { show_tail "$work/agent.log"; fail "the agent exited $rc after SIGTERM"; }
grep -q 'inverter_agent: stopped' "$work/agent.log" ||
    { show_tail "$work/agent.log"; fail "no 'stopped' in the agent's log"; }
pass "SIGTERM: the agent stopped in $stop_time s with exit code 0"

# --- 5. summary -----------------------------------------------------------------------

echo
echo "check-arm64: all passed (qemu-user emulation of arm64 on $(uname -m), not real hardware)"
for s in "${summary[@]}"; do echo "  $s"; done
echo "  timings: arm64 root $root_time; make deb $build_time s; dpkg -i $install_time s;" \
     "agent to MMS $served s / link_up $linked s; total $(elapsed "$t_start") s"
