"""The declarative model, its libiec61850 build and the quality mapping (no network)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hal.reading import Detail, Quality, Validity
from inverter_agent.adapters.mms import _native as nat
from inverter_agent.adapters.mms import der_model
from inverter_agent.adapters.mms.client import quality_from_bits
from inverter_agent.adapters.mms.der_model import POINT_TABLE, Health, der_model_spec
from inverter_agent.adapters.mms.model import Binding, Cdc, ModelSpec, build_model
from inverter_agent.adapters.mms.server import mms_quality

HAS_QT = {Cdc.MV, Cdc.WYE, Cdc.ENS, Cdc.SPS, Cdc.INS, Cdc.ENC, Cdc.BCR}


@pytest.fixture
def built():
    model = build_model(der_model_spec(), "GW")
    yield model
    model.destroy()


def test_every_binding_resolves_with_q_and_t_where_the_cdc_has_them(built):
    for point, target, _ in POINT_TABLE:
        key = f"INV1/{target}"
        handles = built.points[key]
        cdc = built.spec.data_object(key).cdc
        assert bool(handles.q) == bool(handles.t) == (cdc in HAS_QT), (point, target)
        if cdc in (Cdc.MV, Cdc.WYE, Cdc.ASG):
            assert handles.value_type == nat.DA_FLOAT32, target
        elif cdc is Cdc.SPS:
            assert handles.value_type == nat.DA_BOOLEAN, target
        elif cdc is Cdc.BCR:
            assert handles.value_type == nat.DA_INT64, target
        elif cdc in (Cdc.ENS, Cdc.ENG):
            assert handles.value_type == nat.DA_ENUMERATED, target
        else:
            assert handles.value_type == nat.DA_VISIBLE_STRING_255, target


def test_wye_has_only_the_phases_we_serve(built):
    assert "INV1/MMXU1.PhV.phsA" in built.points
    with pytest.raises(KeyError):
        built.attribute("INV1/MMXU1.PhV.neut.cVal.mag.f")


def test_logical_device_instance_and_ied_name_are_configurable():
    model = build_model(der_model_spec("INV7"), "SITE")
    try:
        assert "INV7/MMXU1.TotW" in model.points
        assert model.reference("INV7/MMXU1.TotW") == "SITEINV7/MMXU1.TotW"
        assert model.attribute("INV7/MMXU1.TotW.mag.f")
    finally:
        model.destroy()


def test_binding_to_an_unknown_data_object_is_an_error():
    spec = der_model_spec()
    bad = ModelSpec(spec.logical_devices, (Binding("W", "INV1/MMXU1.TotWatts"),))
    with pytest.raises(ValueError, match="TotWatts"):
        build_model(bad)


def test_docstring_table_matches_the_point_table():
    rows = re.findall(r"^(\w+)\s+([\w.]+)\s+(MV|WYE|ASG|ENS|ENG|SPS|DPL|BCR)\s", der_model.__doc__,
                      re.MULTILINE)
    assert [(p, t) for p, t, _ in rows] == [(p, t) for p, t, _ in POINT_TABLE]
    spec = der_model_spec()
    for _, target, cdc in rows:
        assert spec.data_object(f"INV1/{target}").cdc.value == cdc, target


def test_converters():
    assert der_model.health_from_link(True) == Health.OK
    assert der_model.health_from_link(False) == Health.ALARM
    assert der_model.health_from_st(7) == Health.ALARM
    assert der_model.health_from_st(4) == Health.OK
    # SunSpec St 1..8 -> 7-420 Ed.2 DERStateKind
    assert [der_model.deropst_from_st(s) for s in range(1, 9)] == [3, 3, 2, 6, 6, 8, 11, 4]
    assert der_model.deropst_from_st(99) == 98
    assert der_model.ac_type_from_phase_c(240.0) == 3
    assert der_model.ac_type_from_phase_c(None) == 1


@pytest.mark.parametrize(("validity", "libiec61850_bits"), [
    (Validity.GOOD, 0), (Validity.INVALID, 2), (Validity.RESERVED, 1),
    (Validity.QUESTIONABLE, 3)])
def test_validity_is_in_libiec61850_bit_order(validity, libiec61850_bits):
    # iec61850_common.h: QUALITY_VALIDITY_INVALID 2, QUALITY_VALIDITY_RESERVED 1.
    assert mms_quality(Quality(validity)) == libiec61850_bits


@given(st.sampled_from(list(Validity)),
       st.sets(st.sampled_from([d for d in Detail if d])))
def test_quality_survives_the_wire_encoding(validity, details):
    detail = Detail.NONE
    for d in details:
        detail |= d
    quality = Quality(validity, detail)
    word = mms_quality(quality)
    assert word & ~0b11 == int(detail)  # detail bits are copied straight
    bits = [bool(word & (1 << i)) for i in range(13)]  # libiec61850: bit i = bit string bit i
    assert quality_from_bits(bits) == quality
