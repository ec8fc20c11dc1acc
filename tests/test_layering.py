"""The layers go one way: hal/ never knows the agent or IEC 61850, and the
agent never sees a register address, scale factor or Modbus function code."""

import ast
import pathlib
import re

import pytest

from inverter_agent.adapters import REGISTRY

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


#: Protocol adapters, read from the registry (a new protocol is checked by its line there).
ADAPTERS = tuple(s.package for s in REGISTRY)
#: The wiring (entry points and the composition root) may import everything.
ENTRY_POINTS = {"cli.py", "__main__.py", "app.py"}
#: Protocol engines: only their adapter may import them.
ENGINES = {s.package: s.engines for s in REGISTRY}


def _module(path: pathlib.Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _core_files() -> list[pathlib.Path]:
    files = []
    for f in (ROOT / "inverter_agent").rglob("*.py"):
        mod = _module(f)
        if any(mod == a or mod.startswith(a + ".") for a in ADAPTERS):
            continue
        if f.parent == ROOT / "inverter_agent" and f.name in ENTRY_POINTS:
            continue
        if mod.startswith("inverter_agent.conformance"):
            continue  # a tool beside the daemon (IEEE 1547.1 procedures), not the core
        files.append(f)
    return files


def _imports_anywhere(path: pathlib.Path) -> set[str]:
    """Every import, including those inside functions (lazy imports count too)."""
    return _imports(path)


def test_core_imports_no_adapter_and_no_protocol_engine():
    files = _core_files()
    assert any(f.name == "arbitration.py" for f in files)
    engines = {e for names in ENGINES.values() for e in names}
    for f in files:
        bad = {n for n in _imports_anywhere(f)
               if any(n == a or n.startswith(a + ".") for a in ADAPTERS)
               or n.split(".")[0] in engines}
        assert not bad, f"core module {f.relative_to(ROOT)} imports {bad}"


def adapter_violations(adapter: str, files: list[pathlib.Path]) -> list[str]:
    """What ``files`` of ``adapter`` import of another adapter or another's engine."""
    others = [a for a in ADAPTERS if a != adapter]
    foreign = {e for a, names in ENGINES.items() if a != adapter for e in names}
    found = []
    for f in files:
        bad = {n for n in _imports_anywhere(f)
               if any(n == o or n.startswith(o + ".") for o in others)
               or n.split(".")[0] in foreign}
        if bad:
            found.append(f"{f.name} ({adapter}) imports {sorted(bad)}")
    return found


def test_adapters_never_import_each_other():
    assert {"inverter_agent.adapters.mms", "inverter_agent.adapters.ieee2030_5"} <= set(ADAPTERS)
    for adapter in ADAPTERS:
        folder = ROOT / pathlib.Path(*adapter.split("."))
        files = list(folder.rglob("*.py"))
        assert files, f"{adapter} has no files"
        assert adapter_violations(adapter, files) == []


def test_an_adapter_importing_another_is_caught(tmp_path):
    """The check above is not vacuous: a fake adapter module that imports the MMS
    adapter, or the 2030.5 engine, is reported."""
    fake = tmp_path / "fake_adapter.py"
    fake.write_text("from inverter_agent.adapters.mms.server import MmsServer\n")
    assert adapter_violations("inverter_agent.adapters.ieee2030_5", [fake])
    fake.write_text("def f():\n    import py20305.client\n")
    assert adapter_violations("inverter_agent.adapters.mms", [fake])
    fake.write_text("from inverter_agent.core.api import Core\n")
    assert adapter_violations("inverter_agent.adapters.mms", [fake]) == []


def test_hal_imports_no_adapter_and_no_core():
    for f in (ROOT / "hal").rglob("*.py"):
        bad = {n for n in _imports_anywhere(f) if n.split(".")[0] in
               ("inverter_agent", "py20305", "pyiec61850")}
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"


def test_the_2030_5_adapter_is_not_imported_unless_configured(tmp_path):
    """Building the gateway through the composition root without [ieee2030_5] loads
    only MMS, and imports neither the 2030.5 adapter nor its engine."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from inverter_agent import app, config\n"
            "cfg = config.load(None, {'inverter.modbus_tcp': '127.0.0.1:1', "
            f"'agent.state_dir': {str(tmp_path)!r}}})\n"
            "a = app.App(cfg)\n"
            "assert [x.name for x in a.adapters] == ['mms'], a.adapters\n"
            # its keys (the config schema) are read; nothing else of it, nor its engine
            "bad = [m for m in sys.modules if m.startswith(('py20305', "
            "'inverter_agent.adapters.ieee2030_5.')) and not m.endswith('.keys')]\n"
            "assert not bad, bad\n"
            "a.stop()\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr


#: The security package every adapter shares: it knows no adapter and no protocol engine.
SECURITY = "inverter_agent.security"


def _resolved_imports(path: pathlib.Path, root: pathlib.Path) -> set[str]:
    """Every import of ``path`` (a module under ``root``), relative ones made absolute."""
    package = list(path.relative_to(root).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            if not node.module:  # "from . import x": x is a module too
                names.update(f"{module}.{a.name}" for a in node.names)
    return names


def _adapter_or_engine_imports(path: pathlib.Path, root: pathlib.Path = ROOT) -> set[str]:
    """What ``path`` imports of any adapter (every package under inverter_agent.adapters,
    listed or not) or any protocol engine."""
    engines = {e for names in ENGINES.values() for e in names}
    return {n for n in _resolved_imports(path, root)
            if n == "inverter_agent.adapters" or n.startswith("inverter_agent.adapters.")
            or n.split(".")[0] in engines}


def test_security_imports_no_adapter_and_no_protocol_engine():
    files = list((ROOT / pathlib.Path(*SECURITY.split("."))).rglob("*.py"))
    assert {"access.py", "tls.py", "admission.py", "audit.py"} <= {f.name for f in files}
    for f in files:
        bad = _adapter_or_engine_imports(f)
        assert not bad, f"{f.relative_to(ROOT)} (shared security) imports {bad}"


@pytest.mark.parametrize("source, caught", [
    ("from inverter_agent.adapters.mms.security import TLS_PORT\n",
     "inverter_agent.adapters.mms.security"),
    ("def f():\n    from ..adapters.ieee2030_5 import client\n",
     "inverter_agent.adapters.ieee2030_5"),
    ("from .. import adapters\n", "inverter_agent.adapters"),
    ("import py20305.security\n", "py20305.security"),
    ("from pyiec61850 import pyiec61850\n", "pyiec61850"),
])
def test_the_security_check_catches_an_adapter_import(tmp_path, source, caught):
    folder = tmp_path / "inverter_agent" / "security"
    folder.mkdir(parents=True)
    bad = folder / "leaky.py"
    bad.write_text("from .access import Identity\n" + source)
    assert caught in _adapter_or_engine_imports(bad, tmp_path)
    fine = folder / "fine.py"
    fine.write_text("from .access import Identity\nfrom inverter_agent.core.files import "
                    "write_atomic\nfrom . import certs\n")
    assert _adapter_or_engine_imports(fine, tmp_path) == set()


def test_the_core_reads_no_protocols_config_section():
    """The core never reads an adapter's config keys (``cfg["mms.ld_inst"]``): what it
    needs is in its own sections; each adapter owns its section."""
    sections = tuple(s.name for s in REGISTRY)
    alternatives = "|".join(sections)
    pattern = re.compile(r"""["'](""" + alternatives + r""")\.[a-z_]+["']""")
    for f in _core_files():
        if f.parent.name == "adapters" or f.name == "config.py":
            continue  # the registry and the schema name every section by design
        hit = pattern.search(f.read_text())
        assert hit is None, f"{f.relative_to(ROOT)} reads {hit.group(0)}"
