#!/bin/sh
# Build the self-contained virtual environment the service runs from.
#
#   packaging/build-venv.sh SOURCE_DIR STAGE_DIR FINAL_DIR [PYTHON]
#
# The venv is built at STAGE_DIR (e.g. $DESTDIR/opt/inverter-agent/venv) for the
# path it will have on the target, FINAL_DIR (/opt/inverter-agent/venv): script
# shebangs, the activate scripts and pyvenv.cfg are rewritten from the build
# path to FINAL_DIR, and the byte code is compiled with FINAL_DIR in its file
# names. STAGE_DIR may equal FINAL_DIR (a direct install).
#
# PYTHON (default /usr/bin/python3) must be the interpreter the target runs: the
# venv links to it by its versioned name (/usr/bin/python3.11 on bookworm), so a
# later change of the distribution's default python3 does not break it.
#
# The new venv is built next to STAGE_DIR and swapped in at the end, so a failed
# build leaves an installed venv as it was.
set -eu
umask 022

src=$(cd "$1" && pwd)
stage=$2
final=$3
python=$(readlink -f "${4:-/usr/bin/python3}")

case $stage in /*) ;; *) stage=$(pwd)/$stage ;; esac
case $final in /*) ;; *) echo "build-venv: FINAL_DIR must be absolute: $final" >&2; exit 2 ;; esac
case $stage$final in *'|'*) echo "build-venv: paths must not contain '|'" >&2; exit 2 ;; esac

new=$stage.new
work=$(mktemp -d)
trap 'rm -rf "$work" "$new"' EXIT
rm -rf "$new"
mkdir -p "$(dirname "$stage")"

# Build from a clean copy of the sources: setuptools writes build/ and
# *.egg-info into the tree it builds, and stale files there end up in wheels.
mkdir "$work/src"
(cd "$src" && tar -cf - --exclude=__pycache__ pyproject.toml README.md LICENSE \
    hal inverter_agent simulator) | tar -xf - -C "$work/src"

"$python" -m venv "$new"
"$new/bin/python" -m pip install --quiet --no-cache-dir --no-compile \
    --disable-pip-version-check "$work/src"

# Make the tree valid at FINAL_DIR.
new_re=$(printf '%s' "$new" | sed 's/[].[*^$\\]/\\&/g')
# A build path longer than a kernel shebang allows (127 bytes: a deep DESTDIR) makes
# pip write "#!/bin/sh" and an exec line naming the interpreter on line 2 or 3, so
# the first three lines are rewritten, not only the first.
for f in "$new"/bin/*; do
    if [ ! -f "$f" ] || [ -L "$f" ]; then continue; fi
    if head -c 2 "$f" | grep -q '^#!' && head -n 3 "$f" | grep -qF "$new/"; then
        sed -i "1,3s|$new_re/|$final/|g" "$f"
    fi
done
sed -i "s|$new_re|$final|g" "$new"/bin/activate* "$new/pyvenv.cfg"
# ensurepip's byte code names the build path; all of it is compiled again below.
find "$new" -name __pycache__ -prune -exec rm -rf {} +
left=$(grep -rlF "$new" "$new" || true)
if [ -n "$left" ]; then
    echo "build-venv: build path left in:" >&2
    echo "$left" >&2
    exit 1
fi
# Byte code with the final paths in it: the service user cannot write it under
# /opt, and without it every start would compile the whole stack again.
"$new/bin/python" -m compileall -q -j 0 -s "$new" -p "$final" "$new/lib"

if [ -e "$stage" ]; then
    rm -rf "$stage.old"
    mv "$stage" "$stage.old"
    mv "$new" "$stage"
    rm -rf "$stage.old"
else
    mv "$new" "$stage"
fi
