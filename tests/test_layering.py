"""The layers go one way: hal/ never knows the agent or IEC 61850, and the
agent never sees a register address, scale factor or Modbus function code."""

import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_hal_imports_neither_the_agent_nor_iec61850():
    files = list((ROOT / "hal").rglob("*.py"))
    assert files
    for f in files:
        bad = {n for n in _imports(f) if n.split(".")[0] in ("inverter_agent", "pyiec61850",
                                                             "open61850", "simulator")}
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"
        assert "61850" not in f.read_text(), f"{f.relative_to(ROOT)} mentions IEC 61850"


def test_agent_never_touches_registers():
    # The agent may use hal's named interface, not the SunSpec codec or the wire.
    forbidden_modules = {"hal.sunspec.models", "hal.sunspec.device", "pymodbus", "serial",
                         "sunspec2"}
    forbidden_text = re.compile(r"\b(40000|read_holding|write_registers|_SF\b|"
                                r"function code|register address)")
    files = list((ROOT / "inverter_agent").rglob("*.py"))
    assert files
    for f in files:
        bad = {n for n in _imports(f) if any(n == m or n.startswith(m + ".")
                                             for m in forbidden_modules)}
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"
        hit = forbidden_text.search(f.read_text())
        assert hit is None, f"{f.relative_to(ROOT)} mentions {hit.group(0)!r}"
