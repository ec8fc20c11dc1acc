"""The audit chain detects an edited, inserted or deleted entry, survives
rotation and restarts, and keeps secrets out."""

import json

import pytest

from inverter_agent.security.audit import AuditLog, verify


def _fill(log, n=20):
    for i in range(n):
        log.record("write", who=f"client-{i % 3}", obj="DVVR1.VVArCrv", old=i, new=i + 1)


def _lines(path):
    return path.read_text().splitlines()


def test_an_untouched_log_verifies(tmp_path):
    log = AuditLog(str(tmp_path))
    _fill(log)
    v = verify(log)
    assert v.ok and v.entries == 20


def test_restart_continues_the_chain(tmp_path):
    _fill(AuditLog(str(tmp_path)), 5)
    log = AuditLog(str(tmp_path))
    log.record("connect", who="10.0.0.9")
    assert verify(log).ok and log.entries()[-1]["seq"] == 6


@pytest.mark.parametrize("tamper", ["edit", "delete", "insert", "reorder"])
def test_tampering_is_detected(tmp_path, tamper):
    log = AuditLog(str(tmp_path))
    _fill(log)
    path = tmp_path / "audit.jsonl"
    lines = _lines(path)
    if tamper == "edit":
        e = json.loads(lines[7])
        e["new"] = 999
        lines[7] = json.dumps(e, separators=(",", ":"))
    elif tamper == "delete":
        del lines[7]
    elif tamper == "insert":
        e = json.loads(lines[7])
        lines.insert(8, json.dumps(e, separators=(",", ":")))
    else:
        lines[7], lines[8] = lines[8], lines[7]
    path.write_text("\n".join(lines) + "\n")
    v = verify(AuditLog(str(tmp_path)))
    assert not v.ok and v.problem


def test_an_edit_that_recomputes_its_own_hash_still_breaks_the_chain(tmp_path):
    import hashlib
    log = AuditLog(str(tmp_path))
    _fill(log)
    path = tmp_path / "audit.jsonl"
    lines = _lines(path)
    e = json.loads(lines[5])
    e["who"] = "someone-else"
    body = {k: v for k, v in e.items() if k != "hash"}
    e["hash"] = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"))
                               .encode()).hexdigest()
    lines[5] = json.dumps(e, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n")
    v = verify(AuditLog(str(tmp_path)))
    assert not v.ok and "chain broken" in v.problem


def test_rotation_keeps_size_bounded_and_chain_intact(tmp_path):
    # retain_s=0: nothing is protected by age, so the oldest files go (see below).
    log = AuditLog(str(tmp_path), max_bytes=4096, keep=2, retain_s=0)
    _fill(log, 300)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    assert all((tmp_path / f).stat().st_size <= 4096 for f in files)
    v = verify(log)
    assert v.ok and log.entries()[-1]["seq"] == 300


def test_secrets_never_reach_the_log(tmp_path):
    log = AuditLog(str(tmp_path))
    log.record("login", who="engineer", obj="acse_password", old=None, new="hunter2")
    log.record("install", who="secadmin", obj="tls", new={"private_key": "k3y-m4teri4l-xyz",
               "cert": "-----BEGIN CERTIFICATE-----\nMIIB..."})
    text = (tmp_path / "audit.jsonl").read_text()
    assert "hunter2" not in text and "k3y-m4teri4l-xyz" not in text
    assert "BEGIN CERTIFICATE" not in text
    assert verify(log).ok
