"""py20305's schema classes loaded on use, and the modules the client defers, are the same
as imported whole (inverter_agent/adapters/ieee2030_5/lazy_imports.py).

Each side runs in a fresh interpreter: the lazy one imports the adapter first (as the
gateway does), the whole one imports py20305's models directly.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from inverter_agent.adapters.ieee2030_5.lazy_imports import _Plan

#: A DERControl with a curve reference, as a server sends it, and a CSIP-AUS limit.
XML = (
    '<DERControl xmlns="urn:ieee:std:2030.5:ns" xmlns:csipaus="https://csipaus.org/ns" '
    'href="/derp/1/derc/7" replyTo="/rsps" responseRequired="03"><mRID>0A1B</mRID>'
    "<description>t</description><creationTime>1700000000</creationTime><EventStatus>"
    "<currentStatus>0</currentStatus><dateTime>1700000000</dateTime>"
    "<potentiallySuperseded>false</potentiallySuperseded></EventStatus><interval>"
    "<duration>300</duration><start>1700000100</start></interval><DERControlBase>"
    "<opModMaxLimW>5000</opModMaxLimW><opModVoltVar href=\"/derp/1/dc/1\"/>"
    "<csipaus:opModExpLimW><multiplier>0</multiplier>"
    "<value>1500</value></csipaus:opModExpLimW></DERControlBase></DERControl>"
)

PROBE = textwrap.dedent("""
    import json, sys
    if sys.argv[1] == "lazy":
        import inverter_agent.adapters.ieee2030_5.client  # installs, as the gateway
        import py20305.client.csip_client, py20305.telemetry, py20305.connectors.dispatcher
    import py20305.models.sep.sep as sep
    from py20305.xml.serialization import from_xml, to_xml
    out = {"type": type(sep).__name__,
           "defined": sum(1 for v in vars(sep).values()
                          if isinstance(v, type) and v.__module__ == sep.__name__),
           "deferred": {m: type(sys.modules[m]).__name__ if m in sys.modules else None
                        for m in ("aiohttp.web", "sqlite3")}}
    derc = from_xml(sys.argv[2].encode(), sep.Dercontrol1)
    out["roundtrip"] = to_xml(derc, include_csipaus=True).decode()
    out["base_extra"] = sorted(type(x).__qualname__ for x in derc.dercontrol_base.other_element)
    import py20305.models.sep as package
    names = sorted(n for n in dir(sep) if isinstance(getattr(sep, n), type)
                   and getattr(sep, n).__module__ == sep.__name__)
    out["package_same"] = all(getattr(package, n) is getattr(sep, n) for n in package.__all__)
    out["package_all"] = sorted(package.__all__)
    out["classes"] = {n: [[b.__name__ for b in getattr(sep, n).__bases__],
                          {k: str(f.annotation) for k, f in getattr(sep, n).model_fields.items()}
                          if hasattr(getattr(sep, n), "model_fields") else None]
                      for n in names}
    print(json.dumps(out))
""")


def _probe(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode, XML], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def both() -> tuple[dict, dict]:
    return _probe("lazy"), _probe("whole")


def test_the_adapter_loads_only_the_classes_it_uses(both) -> None:
    lazy, whole = both
    assert lazy["type"] == "LazyBindings" and whole["type"] == "module"
    assert whole["defined"] == len(whole["classes"]) > 400
    assert lazy["defined"] < whole["defined"] / 2, lazy["defined"]


def test_every_class_is_the_same_once_used(both) -> None:
    """Same names, bases and pydantic fields (with their types) for all of them."""
    lazy, whole = both
    assert lazy["classes"] == whole["classes"]
    assert lazy["package_same"] and whole["package_same"]
    assert lazy["package_all"] == whole["package_all"]


def test_a_control_parses_and_serializes_the_same(both) -> None:
    lazy, whole = both
    assert lazy["roundtrip"] == whole["roundtrip"]
    assert "opModExpLimW" in lazy["roundtrip"] and "opModVoltVar" in lazy["roundtrip"]
    assert lazy["base_extra"] == whole["base_extra"] != []  # the CSIP-AUS limit typed


def test_unused_modules_are_deferred_not_missing(both) -> None:
    lazy, whole = both
    assert lazy["deferred"] == {"aiohttp.web": "_LazyModule", "sqlite3": "_LazyModule"}
    out = subprocess.run([sys.executable, "-c", (
        "import inverter_agent.adapters.ieee2030_5.client, py20305.history.database as d\n"
        "c = d.sqlite3.connect(':memory:'); print(c.execute('select 41 + 1').fetchone()[0])\n"
        "import py20305.subscription.notification_server as n; print(n.web.Application)")],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[0] == "42" and "Application" in out.stdout


def test_a_file_that_cannot_be_cut_is_refused() -> None:
    """Anything between the classes but more classes: the models are imported whole."""
    good = "from x import y\nN = 1\n\n\nclass A(y):\n    a: int\n\n\nclass B(A):\n    pass\n"
    assert set(_Plan(good, "m.py").classes) == {"A", "B"}
    for bad in (good + "A.model_rebuild()\n", good + "class A(y):\n    pass\n",
                "from x import y\n"):
        with pytest.raises(ValueError):
            _Plan(bad, "m.py")
