"""packaging/build-libiec61850.sh, the documented armhf build of libiec61850, run
on stand-in release tarballs: a tiny CMake project that, like libiec61850, turns
TLS on only when mbedTLS sits in the one directory its CMakeLists.txt tests for.
What is checked is the script's own work: which directory it unpacks mbedTLS
into, and that it refuses a library without TLS. (The real release is built by
`make check-armhf` where its source is at hand.) Needs cmake, a C compiler and nm."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "packaging",
                      "build-libiec61850.sh")

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("cmake", "cc", "nm", "make")),
    reason="needs cmake, cc, nm and make")

LIB_C = """
const char *LibIEC61850_getVersionString(void) { return "1.6.1"; }
#ifdef WITH_TLS
void *TLSConfiguration_create(void) { return 0; }
#endif
"""


def _cmakelists(tls_dir: str) -> str:
    return f"""cmake_minimum_required(VERSION 3.10)
project(standin C)
if(EXISTS ${{CMAKE_CURRENT_LIST_DIR}}/third_party/mbedtls/{tls_dir})
  add_definitions(-DWITH_TLS=1)
endif()
add_library(iec61850 SHARED lib.c)
install(TARGETS iec61850 LIBRARY DESTINATION lib)
"""


def _tarball(tmp_path, name: str, files: dict[str, str]) -> str:
    top = tmp_path / "src" / name
    for rel, text in files.items():
        (top / rel).parent.mkdir(parents=True, exist_ok=True)
        (top / rel).write_text(text)
    out = str(tmp_path / f"{name}.tar.gz")
    with tarfile.open(out, "w:gz") as tar:
        tar.add(str(top), arcname=name)
    return out


def _build(tmp_path, cmakelists: str):
    lib = _tarball(tmp_path, "libiec61850-1.6.1", {
        "CMakeLists.txt": cmakelists, "lib.c": LIB_C, "third_party/mbedtls/README": "x"})
    tls = _tarball(tmp_path, "mbedtls-3.6.2", {"include/mbedtls/ssl.h": "/* */"})
    env = {**os.environ, "PREFIX": str(tmp_path / "prefix"), "WORK": str(tmp_path / "work"),
           "JOBS": "2", "LDCONFIG": "true"}
    done = subprocess.run(["sh", SCRIPT, lib, tls], env=env, capture_output=True, text=True,
                          timeout=120)
    return done, tmp_path / "work" / "libiec61850-1.6.1" / "third_party" / "mbedtls"


@pytest.mark.parametrize("tls_dir", ["mbedtls-3.6.0", "mbedtls-3.6"])
def test_mbedtls_goes_where_the_cmakelists_looks_and_the_library_has_tls(tmp_path, tls_dir):
    done, third_party = _build(tmp_path, _cmakelists(tls_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in third_party.iterdir()) == ["README", tls_dir]
    assert (third_party / tls_dir / "include" / "mbedtls" / "ssl.h").is_file()
    assert f"in third_party/mbedtls/{tls_dir} (the name" in done.stdout
    assert "with TLS" in done.stdout
    assert (tmp_path / "prefix" / "lib" / "libiec61850.so").exists()


def test_a_library_built_without_tls_is_refused(tmp_path):
    # CMake never turns TLS on (as when mbedTLS is not where it looks): silently.
    cmakelists = _cmakelists("mbedtls-3.6.1") + "# see third_party/mbedtls/mbedtls-3.6.0\n"
    done, _ = _build(tmp_path, cmakelists.replace("EXISTS ${CMAKE_CURRENT_LIST_DIR}/third_party"
                                                  "/mbedtls/mbedtls-3.6.1", "FALSE"))
    assert done.returncode == 1
    assert "WITHOUT TLS" in done.stderr


def test_a_release_that_names_no_mbedtls_3_directory_is_refused(tmp_path):
    done, _ = _build(tmp_path, _cmakelists("mbedtls-2.28"))
    assert done.returncode == 1
    assert "names no third_party/mbedtls/mbedtls-3.x directory" in done.stderr
