"""Inverters we did not write: the whole gateway against every device profile.

Each profile (simulator/profiles/*.json, built from a public register map,
pysunspec2's shipped device data or a public field report, which it names)
gets one agent run over a real Modbus TCP socket, and a few also over RTU on
a pseudo-terminal; the runs go side by side (tests/corpus/runner.py). One
test per profile and transport asserts every check of that run.
"""

from __future__ import annotations

import json

import pytest

from simulator.profile import PROFILE_DIR, ProfileError, all_profiles, load_profile
from tests.corpus.runner import run_all

#: One module fixture runs every profile (27 agent runs, four side by side): about
#: 120 s on the CI machine alone, more on a shared one; the suite's 120 s per test
#: would cut it short as profiles are added.
pytestmark = pytest.mark.timeout(360)

PROFILES = all_profiles()
PROFILES_BY_NAME = {p.name: p for p in PROFILES}
RUNS = [(p.name, "tcp") for p in PROFILES] + \
    [(p.name, "rtu") for p in PROFILES if p.expect.get("rtu")]


@pytest.fixture(scope="module")
def results():
    return run_all([p.path for p in PROFILES],
                   rtu_for={p.name for p in PROFILES if p.expect.get("rtu")}, workers=4)


def test_the_corpus_covers_the_issue():
    names = {p.name for p in PROFILES}
    assert len(PROFILES) >= 12
    assert all(p.source.strip() for p in PROFILES)
    models = {p.name: set(p.models) for p in PROFILES}
    q = {p.name: p.quirks for p in PROFILES}
    assert any(q[n].unused_phases_zero for n in names)
    assert any(102 in m for m in models.values()) and any(103 in m for m in models.values())
    assert any(113 in m for m in models.values())
    assert any(701 in m and not m & {101, 102, 103, 111, 112, 113} for m in models.values())
    assert any(123 in m and 704 not in m for m in models.values())  # 704 absent
    assert any(not m & {123, 704} for m in models.values())  # monitor only
    assert any(q[n].refuse_points for n in names)  # exception 2 spans
    assert any(q[n].max_read < 125 for n in names)
    assert any(any(64000 <= x < 65535 for x in m) for m in models.values())
    assert any(not q[n].end_marker for n in names)
    assert any(not p.expect.get("understood", True) for p in PROFILES)
    # issue 18: a device running its own volt-var (705) with exclusive reactive modes, and
    # one that refuses to adopt a programmed curve
    assert any(q[n].exclusive_reactive_modes and 705 in models[n] for n in names)
    assert any(q[n].refuse_adoption and 705 in models[n] for n in names)
    # ... and devices carrying their own protection in 707-710, one refusing a 708 program
    assert any({707, 708, 709, 710} <= models[n] for n in names)
    assert any(708 in q[n].refuse_adoption_models for n in names)
    assert sum(1 for _, t in RUNS if t == "rtu") >= 3
    # issue 20: hybrids, one with 124 as its only storage model, one with 713 and 802
    hybrids = [n for n in names if PROFILES_BY_NAME[n].expect.get("storage")]
    assert any(not models[n] & {713, 802} for n in hybrids if 124 in models[n])
    assert any({124, 713, 802} <= models[n] for n in hybrids)


@pytest.mark.parametrize(("name", "transport"), RUNS)
def test_profile_end_to_end(results, name, transport):
    r = results[f"{name}/{transport}"]
    shown = {k: v for k, v in r.items() if k not in ("source", "traceback")}
    assert "error" not in r, json.dumps(shown, default=str)[:3000] + r.get("traceback", "")
    failed = [c for c, ok in r["checks"].items() if not ok]
    assert not failed, f"{failed}: {json.dumps(shown, default=str)[:3000]}"
    exp = r["expect"]
    must = {"discovered", "readings_within_2pct", "missing_phases_not_good",
            "no_trip_cease_curtailment"}
    if exp.get("understood", True):
        must |= {"volt_var_within_5pct"} if exp.get("volt_var", True) else \
            {"reactive_left_to_device"}
    else:
        must |= {"alarm_over_mms", "status_says_why", "stand_aside_event", "no_reduction"}
    must |= {"backup_trip_at_1_25pu"} if exp.get("trip", True) else \
        {"no_cease_when_not_understood"}
    assert must <= set(r["checks"]), sorted(must - set(r["checks"]))
    assert r["agent_exit"] == 0


def test_a_bad_profile_is_refused_by_name(tmp_path):
    good = json.loads((PROFILE_DIR / "101-unused-phases-zero.json").read_text())
    for change, words in (({"sorce": "x"}, "unknown key"), ({"source": " "}, "source"),
                          ({"models": [103, 1]}, "starts with common model 1"),
                          ({"quirks": {"max_read": 500}}, "max_read"),
                          ({"points": {"704": {"X": 1}}}, "not in the chain"),
                          ({"ratings": {"watts": 5}}, "ratings.watts")):
        bad = {**good, **change}
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(bad))
        with pytest.raises(ProfileError, match=words) as info:
            load_profile(path)
        assert str(path) in str(info.value)
