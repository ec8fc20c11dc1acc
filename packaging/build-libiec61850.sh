#!/bin/sh
# Build and install libiec61850 with mbedTLS 3.6 (MMS over TLS) from the official
# release sources, for a gateway with no pyiec61850-ng wheel (armhf: BeagleBone
# Black, 32-bit Raspberry Pi OS). docs/install.md says when; run it as root:
#
#   sh packaging/build-libiec61850.sh [LIBIEC61850_TARBALL [MBEDTLS_TARBALL]]
#
# Without arguments both release tarballs are downloaded with wget (libiec61850
# v1.6.1, mbedTLS 3.6.2). Then, in WORK (default /usr/local/src):
#  1. libiec61850 is unpacked;
#  2. mbedTLS is unpacked into its third_party/mbedtls under the exact directory
#     name that release's CMakeLists.txt tests for (read from the file; 1.6.1:
#     mbedtls-3.6.0). Under any other name CMake builds the library without TLS
#     and says nothing;
#  3. cmake, make -j JOBS (default: the CPUs), make install into PREFIX (default
#     /usr/local), ldconfig;
#  4. the installed library is checked for TLS (TLSConfiguration_create defined,
#     with nm); the exit status is 1 without it.
# Needs: build-essential cmake (and wget bzip2 ca-certificates to download).
# Environment: PREFIX, JOBS, WORK as above; LDCONFIG (default ldconfig).
set -eu

LIBIEC61850_URL=https://github.com/mz-automation/libiec61850/archive/refs/tags/v1.6.1.tar.gz
MBEDTLS_URL=https://github.com/Mbed-TLS/mbedtls/releases/download/mbedtls-3.6.2/mbedtls-3.6.2.tar.bz2
prefix=${PREFIX:-/usr/local}
jobs=${JOBS:-$(nproc)}
work=${WORK:-/usr/local/src}

say() { echo "build-libiec61850: $*"; }
die() { echo "build-libiec61850: $*" >&2; exit 1; }

mkdir -p "$work"
lib_tar=${1:-}
tls_tar=${2:-}
if [ -z "$lib_tar" ]; then
    lib_tar=$work/$(basename "$LIBIEC61850_URL")
    [ -f "$lib_tar" ] || wget -O "$lib_tar" "$LIBIEC61850_URL"
fi
if [ -z "$tls_tar" ]; then
    tls_tar=$work/$(basename "$MBEDTLS_URL")
    [ -f "$tls_tar" ] || wget -O "$tls_tar" "$MBEDTLS_URL"
fi

# tar picks the decompressor (gzip, bzip2, xz) from the file itself.
src=$work/$(tar -tf "$lib_tar" | head -n 1 | cut -d/ -f1)
[ "$src" != "$work/" ] || die "$lib_tar: an empty archive?"
rm -rf "$src"
tar -C "$work" -xf "$lib_tar"
[ -f "$src/CMakeLists.txt" ] || die "$src has no CMakeLists.txt: not a libiec61850 source"

# The mbedTLS 3 directory name the release's CMake looks for.
want=$(grep -o 'third_party/mbedtls/mbedtls-3[.0-9]*' "$src/CMakeLists.txt" |
       sed 's/\.*$//' | head -n 1)
case $want in */mbedtls-3.[0-9]*) ;; *) want= ;; esac
if [ -z "$want" ]; then
    grep -n mbedtls "$src/CMakeLists.txt" >&2 || true
    die "$src/CMakeLists.txt names no third_party/mbedtls/mbedtls-3.x directory"
fi
tls_dir=$(tar -tf "$tls_tar" | head -n 1 | cut -d/ -f1)
[ -n "$tls_dir" ] || die "$tls_tar: an empty archive?"
rm -rf "$src/third_party/mbedtls/${tls_dir:?}" "$src/${want:?}"
tar -C "$src/third_party/mbedtls" -xf "$tls_tar"
if [ "$src/third_party/mbedtls/$tls_dir" != "$src/$want" ]; then
    mv "$src/third_party/mbedtls/$tls_dir" "$src/$want"
fi
say "mbedTLS from $(basename "$tls_tar") in $want (the name its CMakeLists.txt tests for)"

mkdir -p "$src/build"
cd "$src/build"
cmake -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix" \
    -DBUILD_EXAMPLES=OFF -DBUILD_PYTHON_BINDINGS=OFF ..
make -j "$jobs"
make install
${LDCONFIG:-ldconfig}

so=$prefix/lib/libiec61850.so
[ -e "$so" ] || die "no $so after make install"
if ! nm -D --defined-only "$so" | grep -q ' TLSConfiguration_create$'; then
    die "$so was built WITHOUT TLS (no TLSConfiguration_create): mbedTLS was not found in $want"
fi
say "installed $so with TLS ($(nm -D --defined-only "$so" | grep -c ' mbedtls_') mbedtls_* symbols)"
