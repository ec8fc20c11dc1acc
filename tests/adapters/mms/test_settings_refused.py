"""Absurd values to every writable setting over MMS: each one refused, nothing changes.

The writable settings and curves are enumerated from the model's own tables
at run time (``functions_model.SETTINGS`` / ``SETTING_CONTROLS`` / ``CURVES``),
so a renamed or added object is covered without touching this test: FC SP
floats and integers (the 7-420 ``...Tmms`` times) are written, the settings
7-420 makes controllable (APC set points) are operated. Issue 10 item 4: a ramp
rate of -1e12 used to land (a negative opt-float read as "off").
"""

from __future__ import annotations

import copy
import math

from inverter_agent.adapters.mms import client as mms_client
from inverter_agent.adapters.mms import functions_model as fm
from inverter_agent.functions import get_profile, settings_from_dict, settings_to_dict
from inverter_agent.functions.settings import SettingsError

LD = "GWINV1"
ABSURD = (math.nan, math.inf, -math.inf, 1e12, -1e12)
ABSURD_INT = (2**31 - 1, -(2**31), 10**9, -(10**9))
DEFAULTS = settings_to_dict(get_profile("rule21"))


def _accepted(setting: fm.Setting | fm.SettingControl, mms_value: float) -> bool:
    """Would the validator take this value (the oracle for 'out of range')?"""
    d = copy.deepcopy(DEFAULTS)
    node = d
    *path, last = setting.path.split(".")
    for p in path:
        node = node[p]
    try:
        node[last] = (setting.to_setting(mms_value, DEFAULTS) if isinstance(setting, fm.Setting)
                      else setting.to_setting(mms_value))
        settings_from_dict(d)
    except SettingsError:
        return False
    return True


def _out_of_range(setting: fm.Setting | fm.SettingControl) -> float | None:
    """A finite value just outside what the validator takes (None: every tried value is legal)."""
    now = setting.to_mms(DEFAULTS)
    for v in (now + 1e4, now - 1e4, now * 100 + 100, -abs(now) - 100, 1e6, -1e6, -0.5):
        if v != -1 and not _accepted(setting, v):
            return v
    return None


def _float_settings() -> list[fm.Setting]:
    return [s for s in fm.SETTINGS if s.kind in ("float", "opt_float", "per_hz", "above_nom")]


def _int_settings() -> list[fm.Setting]:
    return [s for s in fm.SETTINGS if s.kind in ("ms", "s")]


def _float_controls() -> list[fm.SettingControl]:
    return [c for c in fm.SETTING_CONTROLS if c.kind == "float"]


def test_the_registry_has_writable_settings():
    assert len(_float_settings()) >= 15 and len(_int_settings()) >= 8
    assert len(_float_controls()) >= 3 and len(fm.CURVES) >= 4
    assert len(fm.writable_settings()) >= 60
    assert {s.path for s in fm.SETTINGS} >= {"ramp.up_pct_per_s", "ramp.down_pct_per_s"}


def test_every_absurd_value_to_every_setting_is_refused(functions_server):
    con = mms_client.connect("127.0.0.1", functions_server.port, timeout=5)
    try:
        before_file = functions_server.file_bytes()
        before = functions_server.persisted()
        landed = []
        for s in _float_settings():
            ref = f"{LD}/{s.target}"
            was = con.read_value(ref, "SP")
            extra = _out_of_range(s)
            for value in (*ABSURD, *(() if extra is None else (extra,))):
                try:
                    con.write_float(ref, "SP", value)
                except mms_client.MmsClientError:
                    pass
                else:
                    landed.append((s.target, value))
                now = con.read_value(ref, "SP")
                if now != was and not (isinstance(now, float) and math.isnan(now)
                                       and math.isnan(was)):
                    landed.append((s.target, value, "read back", now))
        for s in _int_settings():
            ref = f"{LD}/{s.target}"
            was = con.read_value(ref, "SP")
            for value in ABSURD_INT:
                try:
                    con.write_int(ref, "SP", value)
                except mms_client.MmsClientError:
                    pass
                else:
                    landed.append((s.target, value))
                if con.read_value(ref, "SP") != was:
                    landed.append((s.target, value, "read back"))
        for c in _float_controls():
            extra = _out_of_range(c)
            for value in (*ABSURD, *(() if extra is None else (extra,))):
                try:
                    con.operate(f"{LD}/{c.target}", value)
                except mms_client.MmsClientError:  # MmsControlError: refused, AddCause
                    pass
                else:
                    landed.append((c.target, value))
        for curve in fm.CURVES:
            numeric = [f for f in curve.fields if f not in ("mode", "incl")]
            whole = con.read(f"{LD}/{curve.target}", "SP")
            for field in numeric:
                ref = f"{LD}/{curve.target}.crvPts(0).{field}"
                for value in ABSURD:
                    try:
                        con.write_float(ref, "SP", value)
                    except mms_client.MmsClientError:
                        pass
                    else:
                        landed.append((curve.target, field, value))
            assert con.read(f"{LD}/{curve.target}", "SP") == whole, curve.target
        assert landed == []
        assert functions_server.file_bytes() == before_file
        assert functions_server.persisted() == before
    finally:
        con.close()


def test_off_is_exactly_minus_one(functions_server):
    """-1 is the "off" of an optional setting; another negative is out of range."""
    con = mms_client.connect("127.0.0.1", functions_server.port, timeout=5)
    try:
        ramp = next(s for s in fm.SETTINGS if s.path == "ramp.up_pct_per_s")
        ref = f"{LD}/{ramp.target}"
        con.write_float(ref, "SP", 20.0)
        assert functions_server.persisted()["ramp"]["up_pct_per_s"] == 20.0
        for value in (-2.0, -1e12, -0.001):
            try:
                con.write_float(ref, "SP", value)
            except mms_client.MmsClientError:
                continue
            raise AssertionError(f"{value} landed")
        assert functions_server.persisted()["ramp"]["up_pct_per_s"] == 20.0
        con.write_float(ref, "SP", -1.0)
        assert functions_server.persisted()["ramp"]["up_pct_per_s"] is None
    finally:
        con.close()
