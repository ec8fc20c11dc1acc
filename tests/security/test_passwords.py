"""Salted password hashes: what the config holds instead of a password."""

from __future__ import annotations

from inverter_agent.security.passwords import hash_password, is_hash, verify_password


def test_password_hash_round_trip():
    encoded = hash_password("s3cret", n=2 ** 12)
    assert "s3cret" not in encoded and is_hash(encoded)
    assert verify_password(b"s3cret", encoded)
    assert not verify_password(b"s3cret!", encoded)
    assert not verify_password(b"s3cret", "plain")


def test_two_hashes_of_one_password_differ_and_both_verify():
    first, second = hash_password("pw", n=2 ** 12), hash_password("pw", n=2 ** 12)
    assert first != second  # salted
    assert verify_password(b"pw", first) and verify_password(b"pw", second)


def test_malformed_hashes_never_verify():
    good = hash_password("pw", n=2 ** 12)
    assert not verify_password(b"pw", good.replace("scrypt$", "bcrypt$", 1))
    assert not verify_password(b"pw", "scrypt$x$8$1$AAAA$AAAA")
    assert not verify_password(b"pw", "scrypt$16384$8$1$not base64!$AAAA")
    assert not is_hash("pw") and not is_hash("scrypt$1$2")
