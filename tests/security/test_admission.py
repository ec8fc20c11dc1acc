"""Admission bookkeeping: per-address rate, failures and penalty (time is an argument)."""

from __future__ import annotations

import pytest

from inverter_agent.security.admission import PRIVILEGED_ROLES, Admission, AdmissionLimits
from inverter_agent.security.errors import SecurityConfigError


@pytest.mark.parametrize("field, value, message", [
    ("associate_within_s", 0, "admission associate_within_s must be > 0"),
    ("rate", -1.0, "admission rate must be > 0"),
    ("failure_window_s", 0, "admission failure_window_s must be > 0"),
    ("penalty_s", 0, "admission penalty_s must be > 0"),
    ("burst", 0, "admission burst must be >= 1"),
    ("failures", 0, "admission failures must be >= 1"),
    ("pending_per_peer", 0, "admission pending_per_peer must be >= 1"),
    ("reserved", -1, "admission reserved must be >= 0"),
])
def test_limits_are_checked(field, value, message):
    with pytest.raises(SecurityConfigError) as err:
        AdmissionLimits(**{field: value})
    assert str(err.value) == message


def test_describe_names_every_limit():
    text = AdmissionLimits(associate_within_s=2, rate=3, burst=4, failures=5,
                           failure_window_s=6, penalty_s=7, reserved=1).describe()
    assert text == ("association within 2 s; per peer address more than 4 connections at "
                    "once or 3/s after, or 5 failures in 6 s -> 7 s penalty; 1 slot(s) kept "
                    f"for {'/'.join(sorted(PRIVILEGED_ROLES))}")


def test_a_burst_is_allowed_and_one_more_is_penalised():
    admission = Admission(AdmissionLimits(burst=3, rate=1.0, penalty_s=10.0))
    assert [admission.opened("10.0.0.1", 0.0) for _ in range(3)] == [None] * 3
    reason = admission.opened("10.0.0.1", 0.0)
    assert reason is not None and "connecting faster than 1/s (burst 3)" in reason
    assert admission.penalised(0.0) == ["10.0.0.1"]
    assert "in penalty for 5 s more" in admission.opened("10.0.0.1", 5.0)
    assert admission.opened("10.0.0.2", 5.0) is None  # another address is not affected
    assert admission.penalised(10.0) == []
    assert admission.opened("10.0.0.1", 10.0) is None  # the bucket refilled meanwhile


def test_the_bucket_refills_at_the_rate():
    admission = Admission(AdmissionLimits(burst=2, rate=2.0))
    assert admission.opened("h", 0.0) is None and admission.opened("h", 0.0) is None
    assert admission.opened("h", 0.5) is None  # one token back after 0.5 s at 2/s
    assert admission.opened("h", 0.5) is not None


def test_connections_that_associate_cost_nothing():
    admission = Admission(AdmissionLimits(burst=2, rate=0.001))
    for i in range(20):
        assert admission.opened("h", float(i)) is None
        admission.associated("h", float(i))
    assert admission.penalised(20.0) == []


def test_failures_in_the_window_put_the_address_in_penalty():
    admission = Admission(AdmissionLimits(failures=3, failure_window_s=10.0, penalty_s=5.0))
    assert admission.failed("h", 0.0) is False
    assert admission.failed("h", 1.0) is False
    assert admission.failed("h", 2.0) is True
    assert admission.penalised(2.0) == ["h"] and admission.penalised(7.0) == []


def test_failures_spread_out_or_forgiven_by_an_association_do_not():
    admission = Admission(AdmissionLimits(failures=3, failure_window_s=10.0))
    assert not any(admission.failed("h", t) for t in (0.0, 6.0, 12.0, 18.0))  # two at most
    admission.failed("g", 0.0)
    admission.failed("g", 1.0)
    admission.associated("g", 2.0)
    assert admission.failed("g", 3.0) is False
    assert admission.penalised(3.0) == []


def test_memory_is_bounded_by_max_peers():
    admission = Admission(AdmissionLimits(), max_peers=8)
    for i in range(100):
        assert admission.opened(f"10.0.{i}.1", float(i)) is None
    assert len(admission._tokens) <= 8
