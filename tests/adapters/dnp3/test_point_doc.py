"""docs/dnp3.md lists exactly the points the outstation serves."""

import argparse
import re
from pathlib import Path

from inverter_agent.adapters.dnp3.commands import _outstation, markdown, served_rows

DOC = Path(__file__).resolve().parents[3] / "docs" / "dnp3.md"


def test_the_documented_point_list_is_the_served_map():
    served = markdown(served_rows(_outstation(argparse.Namespace(config=None))))
    text = DOC.read_text()
    doc = re.search(r"<!-- points:begin -->\n(.*?)<!-- points:end -->", text, re.S)
    assert doc is not None, "docs/dnp3.md has no point table markers"
    assert doc.group(1) == served, "regenerate with: inverter-agent dnp3-points --markdown"
