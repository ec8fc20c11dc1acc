"""docs/embedding.md's example runs as written, against the simulator."""

from __future__ import annotations

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_embedding_example_runs(tmp_path):
    with open(os.path.join(ROOT, "docs", "embedding.md"), encoding="utf-8") as fh:
        blocks = re.findall(r"^```python\n(.*?)^```", fh.read(), re.S | re.M)
    assert len(blocks) == 1
    script = tmp_path / "example.py"
    script.write_text(blocks[0])
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert re.search(r"^W \d+(\.\d+)? good$", out, re.M), out
    assert "limit 50.0" in out
    assert re.search(r"^INV1 W \d", out, re.M), out
    assert re.search(r"^refused: INVALID_VALUE .*allowed range", out, re.M), out
    assert "commanded limit 60.0 %" in out
