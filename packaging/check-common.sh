# Shared by the emulated checks (check-arm64.sh, check-armhf.sh): sourced, not run.
#
# The caller sets, before sourcing:
#   check      its name, for the log lines ("check-arm64")
#   arch       the Debian architecture of the emulated root (arm64, armhf)
#   qemu       the binfmt_misc handler that runs it (qemu-aarch64, qemu-arm)
#   include    the packages debootstrap puts into the root, comma-separated
#   want_file  what `file` says of the root's ELF objects ("ARM aarch64", "ARM, EABI5")
# and may set wait_s (seconds to wait for the agent, default 120).
#
# It provides the logging and failure helpers, the temporary-tree cleanup,
# running commands chrooted (in_root), the binfmt handler, the cached minbase
# root (make_root / unpack_root), the source tree copy, network settings for pip,
# and the run of an installed agent read from the host's own client (run_agent).
# shellcheck shell=bash

: "${check:?}" "${arch:?}" "${qemu:?}" "${include:?}" "${want_file:?}"  # set by the caller
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
suite=bookworm
mirror=${INVERTER_AGENT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=$top/.cache/packaging
tarball=$cache/$suite-$arch-minbase-${include//,/-}.tar
host_agent=${HOST_AGENT:-$top/.venv/bin/inverter-agent}
wait_s=${wait_s:-120}
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

log() { printf '[%s %s] %s\n' "$check" "$(date +%T)" "$*"; }
fail() {
    log "FAIL: $*"
    exit 1
}
pass() {
    summary+=("PASS  $*")
    log "ok: $*"
}
skip() {  # a step that could not run here, said in the log and the summary
    summary+=("SKIP  $*")
    log "SKIPPED: $*"
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
    flags=$(sed -n 's/^flags: *//p' "$bm/$qemu")
    case $flags in *F*) return 0 ;; esac
    interp=$(sed -n 's/^interpreter *//p' "$bm/$qemu")
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

# --- the host's tools and the binfmt handler -------------------------------------------

setup_host() {
    [ "$(id -u)" = 0 ] || fail "run as root (debootstrap, chroot, binfmt_misc)"
    [ -n "$version" ] || fail "no version in pyproject.toml"
    [ -x "$host_agent" ] || fail "$host_agent missing (make install builds .venv)"
    need "$qemu-static" qemu-user-static
    need debootstrap debootstrap
    need dpkg-deb dpkg
    need file file
    need unshare util-linux
    need python3 python3
    PATH=$PATH:/usr/sbin:/sbin

    if [ ! -e "$bm/register" ]; then
        mount -t binfmt_misc binfmt_misc "$bm" || fail "cannot mount binfmt_misc on $bm"
    fi
    if [ ! -e "$bm/$qemu" ] && command -v update-binfmts >/dev/null 2>&1; then
        update-binfmts --enable "$qemu" >/dev/null 2>&1 || true
    fi
    if [ ! -e "$bm/$qemu" ]; then
        # The handler qemu-user-static describes (systemd-binfmt registers it at
        # boot, which a container does not have), with F added: the interpreter is
        # opened now, so it works inside chroots without a copy there.
        local conf=/usr/lib/binfmt.d/$qemu.conf line
        [ -r "$conf" ] || fail "no $conf (qemu-user-static) to register $qemu from"
        line=$(grep -m1 "^:$qemu:" "$conf") || fail "no $qemu line in $conf"
        case ${line##*:} in *F*) ;; *) line=${line}F ;; esac
        printf '%s\n' "$line" >"$bm/register" || fail "cannot register the $qemu handler"
        log "registered the $qemu binfmt handler (flags ${line##*:})"
    fi
    grep -qx enabled "$bm/$qemu" || fail "the $qemu binfmt handler is disabled"
    pass "$qemu binfmt handler: $(sed -n 's/^interpreter //p' "$bm/$qemu"), flags $(sed -n 's/^flags: //p' "$bm/$qemu")"

    work=$(mktemp -d "${TMPDIR:-/tmp}/$check.XXXXXX")
    temps+=("$work")
}

# --- the emulated root (cached) --------------------------------------------------------

# Sets root_time: how long the debootstrap took, or "cached (...)".
make_root() {
    if [ -f "$tarball" ]; then
        root_time="cached ($(basename "$tarball"))"
        log "using the cached root $tarball"
        return 0
    fi
    log "debootstrapping $suite $arch (minbase + $include) from $mirror"
    mkdir -p "$cache"
    local boot t
    boot=$(mktemp -d "$cache/debootstrap-$arch.XXXXXX")
    temps+=("$boot")
    t=$(date +%s)
    timeout --kill-after=10 1200 debootstrap --arch="$arch" --foreign --variant=minbase \
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
    pass "debootstrapped the $arch root in $root_time"
}

# check_root ROOT: its programs run, and say they are $arch.
check_root() {
    in_root 60 "$1" dpkg --print-architecture >"$work/arch" ||
        fail "cannot run the $arch root's programs (is the binfmt handler working?)"
    [ "$(cat "$work/arch")" = "$arch" ] || fail "the root says its architecture is $(cat "$work/arch")"
    in_root 60 "$1" uname -m >"$work/uname"
    log "$arch root runs: dpkg --print-architecture=$arch, uname -m=$(cat "$work/uname")"
}

# copy_source ROOT: this source tree (what building and installing need) at
# /usr/src/inverter-agent in ROOT.
copy_source() {
    mkdir -p "$1/usr/src/inverter-agent"
    (cd "$top" && tar -cf - --exclude=__pycache__ --exclude='*.egg-info' pyproject.toml \
        README.md LICENSE Makefile hal inverter_agent simulator packaging systemd \
        board-configs docs) | tar -xf - -C "$1/usr/src/inverter-agent"
}

# check_elf DESCRIPTION FILE...: each FILE (on the host, under a root) is an
# ELF object of the root's architecture.
check_elf() {
    local what=$1 so desc
    shift
    for so in "$@"; do
        desc=$(file -L "$so")
        printf '    %s\n' "${desc#"$run"}"
        case $desc in *"$want_file"*) ;; *) fail "$so is not an $want_file object" ;; esac
    done
    pass "$what: ELF $want_file"
}

# --- the installed agent, run emulated and read from the host -------------------------------

# run_agent ROOT [NAME=VALUE...]: start the installed agent in ROOT as $user with
# the simulator (the NAME=VALUE pairs added to its environment), wait for MMS and
# link_up, show its `status`, read GWINV1/MMXU1.PhV.phsA from the host's client
# and stop it with SIGTERM. Sets served, linked, read_time, stop_time, read_line.
run_agent() {
    local root=$1 port uid t deadline running_uid line value quality rc
    shift
    port=$(free_port)
    uid=$(awk -F: -v u="$user" '$1 == u { print $3 }' "$root/etc/passwd")
    [ -n "$uid" ] || fail "the install did not create the user $user"
    log "starting the installed agent as $user (uid $uid) on 127.0.0.1:$port, simulated inverter"
    t=$(date +%s)
    # unshare and chroot exec, so $! is the agent itself (under qemu-user).
    env -i "${root_env[@]}" "$@" unshare --mount --mount-proc="$root/proc" \
        chroot --userspec="$user:$user" "$root" "$agent" run --simulate \
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
            grep -q '"link_up": true' "$root/tmp/s/status.json" 2>/dev/null; then
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

    sleep 2  # a status file written after the server's first checks
    if in_root 120 "$root" --user="$user" "$agent" status --state-dir /tmp/s \
            >"$work/status.txt" 2>&1; then
        log "inverter-agent status in the root (MMS lines):"
        grep -E '^(MMS|idle close|wire) ' "$work/status.txt" | sed 's/^/    /'
    else
        show_tail "$work/status.txt"
        fail "inverter-agent status failed in the root"
    fi

    t=$(date +%s)
    timeout 90 "$host_agent" read --host 127.0.0.1 --port "$port" --timeout 30 \
        >"$work/read.txt" 2>"$work/read.err" ||
        { show_tail "$work/read.err"; fail "the host's MMS client could not read the model"; }
    read_time=$(elapsed "$t")
    # LD lines have no indent, LN lines two spaces, attributes four.
    line=$(awk '/^[^ ]/ { ld = $1 } /^  [^ ]/ { ln = $1 }
                /^    / && ld == "GWINV1" && ln == "MMXU1" && $1 == "PhV.phsA" { print; exit }' \
           "$work/read.txt")
    read_line="GWINV1/MMXU1.${line#"${line%%[! ]*}"}"
    log "read over MMS from the host ($(wc -l <"$work/read.txt") values, $read_time s): $read_line"
    value=$(echo "$line" | awk '{ print $3 }')
    quality=$(echo "$line" | awk '{ print $4 }')
    [ -n "$line" ] || fail "GWINV1/MMXU1.PhV.phsA not in the model read"
    awk -v v="$value" 'BEGIN { exit !(v + 0 >= 228 && v + 0 <= 252) }' ||
        fail "GWINV1/MMXU1.PhV.phsA = $value, expected about 240 V"
    [ "$quality" = "[good]" ] || fail "GWINV1/MMXU1.PhV.phsA quality is $quality, not [good]"
    pass "host x86 client read GWINV1/MMXU1.PhV.phsA = $value V $quality" \
         "($(wc -l <"$work/read.txt") values) in $read_time s"

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
    grep -Eq 'inverter_agent(\.app)?: stopped$' "$work/agent.log" ||
        { show_tail "$work/agent.log"; fail "no 'stopped' in the agent's log"; }
    pass "SIGTERM: the agent stopped in $stop_time s with exit code 0"
}

print_summary() {  # print_summary TIMINGS...
    echo
    local skipped
    skipped=$(printf '%s\n' "${summary[@]}" | grep -c '^SKIP' || true)
    echo "$check: all passed$([ "$skipped" = 0 ] || echo ", $skipped step(s) SKIPPED")" \
         "(qemu-user emulation of $arch on $(uname -m), not real hardware)"
    for s in "${summary[@]}"; do echo "  $s"; done
    echo "  timings: $*; total $(elapsed "$t_start") s"
}
