"""docs/iec61850-model.md lists exactly the data objects served, with their CDC and
whether they are private (the utility engineer's map must not drift from the model)."""

from __future__ import annotations

import re
from pathlib import Path

from inverter_agent.adapters.mms.functions_model import functions_model_spec

DOC = Path(__file__).resolve().parents[3] / "docs" / "iec61850-model.md"


def test_the_data_object_table_is_the_served_model():
    text = DOC.read_text(encoding="utf-8").split("## Every data object", 1)[1]
    rows = re.findall(r"^\| (\w+) \| (\w+) \| (\w+) \| (private|7-420/7-4) \|", text, re.M)
    (ld,) = functions_model_spec().logical_devices
    served = [(ln.name, do.name, do.cdc.value, "private" if do.ns else "7-420/7-4")
              for ln in ld.logical_nodes for do in ln.data_objects]
    assert rows == served


def test_every_private_object_is_explained():
    text = DOC.read_text(encoding="utf-8")
    why = text.split("## Private extensions", 1)[1].split("\n## ", 1)[0]
    (ld,) = functions_model_spec().logical_devices
    for ln in ld.logical_nodes:
        for do in ln.data_objects:
            if do.ns:
                assert re.search(rf"\b{do.name}\b", why), f"{ln.name}.{do.name} not explained"
