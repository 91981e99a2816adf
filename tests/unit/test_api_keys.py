"""API key secrets: `cl_live_` or `cl_test_`, 30 random base62 chars, a 6-char CRC-32 checksum."""

from __future__ import annotations

import hashlib
import re
import string
import zlib

import pytest

from services.api.keys import is_well_formed, new_key_id, new_secret, secret_hash

ALPHABET = string.ascii_letters + string.digits  # base62 digit order: a-z, A-Z, 0-9
BODY = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcd"
# A golden key: its checksum is CRC-32(BODY) = 2812452438 in 6 base62 digits.
GOLDEN = "cl_live_" + BODY + "deuVwg"
SECRET_SHAPE = re.compile(r"^cl_(live|test)_[A-Za-z0-9]{36}$")


def base62(number: int, width: int) -> str:
    digits = ""
    for _ in range(width):
        number, digit = divmod(number, 62)
        digits = ALPHABET[digit] + digits
    return digits


def with_checksum(prefix: str, body: str) -> str:
    return prefix + body + base62(zlib.crc32(body.encode()), 6)


def one_char_changes(secret: str) -> list[str]:
    """Every key that differs from `secret` in exactly one character after the prefix."""
    return [
        secret[:i] + replacement + secret[i + 1 :]
        for i in range(8, len(secret))
        for replacement in (
            ALPHABET[(ALPHABET.index(secret[i]) + 1) % 62],
            "0" if secret[i] != "0" else "1",
        )
    ]


def test_golden_key_checksum_is_crc32_of_the_body_in_base62() -> None:
    assert zlib.crc32(BODY.encode()) == 2812452438
    assert with_checksum("cl_live_", BODY) == GOLDEN
    assert is_well_formed(GOLDEN)
    assert is_well_formed(with_checksum("cl_test_", BODY))


@pytest.mark.parametrize("prefix", ["cl_live_", "cl_test_"])
def test_new_secret_is_well_formed(prefix: str) -> None:
    secret = new_secret(prefix)
    assert SECRET_SHAPE.match(secret)
    assert secret.startswith(prefix)
    assert len(secret) == 44
    assert secret == with_checksum(prefix, secret[8:38])
    assert is_well_formed(secret)


def test_new_secret_defaults_to_live() -> None:
    assert new_secret().startswith("cl_live_")


def test_new_secrets_differ() -> None:
    secrets = {new_secret() for _ in range(200)}
    assert len(secrets) == 200


def test_new_secret_refuses_an_unknown_prefix() -> None:
    with pytest.raises(AssertionError):
        new_secret("cl_prod_")


def test_any_one_character_change_fails_the_checksum() -> None:
    for secret in (GOLDEN, new_secret(), new_secret("cl_test_")):
        changed = one_char_changes(secret)
        assert len(changed) == 72
        accepted = [key for key in changed if is_well_formed(key)]
        assert accepted == []


def test_swapped_adjacent_characters_fail_the_checksum() -> None:
    for i in range(8, len(GOLDEN) - 1):
        if GOLDEN[i] == GOLDEN[i + 1]:
            continue
        swapped = GOLDEN[:i] + GOLDEN[i + 1] + GOLDEN[i] + GOLDEN[i + 2 :]
        assert not is_well_formed(swapped), swapped


@pytest.mark.parametrize(
    "prefix", ["cl_prod_", "CL_LIVE_", "cl-live_", "sk_live_", "cl_live", "xcl_live_"]
)
def test_wrong_prefix_is_refused(prefix: str) -> None:
    assert not is_well_formed(prefix + BODY + "deuVwg")


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "cl_live_",
        GOLDEN[:-1],
        GOLDEN + "a",
        GOLDEN[:8] + GOLDEN[9:],
        with_checksum("cl_live_", BODY + "e"),
        with_checksum("cl_live_", BODY[:-1]),
    ],
    ids=["empty", "prefix-only", "short", "long", "body-short", "body-31", "body-29"],
)
def test_wrong_length_is_refused(secret: str) -> None:
    assert not is_well_formed(secret)


@pytest.mark.parametrize("bad", ["-", "_", " ", "é", "\n", "+"])
def test_characters_outside_base62_are_refused(bad: str) -> None:
    body = bad + BODY[1:]
    assert not is_well_formed(with_checksum("cl_live_", body))


def test_secret_hash_is_the_sha256_hex_of_the_secret() -> None:
    assert secret_hash("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert secret_hash(GOLDEN) == hashlib.sha256(GOLDEN.encode()).hexdigest()


def test_secret_hash_is_stable_lowercase_hex_and_differs_per_secret() -> None:
    secret = new_secret()
    digest = secret_hash(secret)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert secret_hash(secret) == digest
    assert secret_hash(new_secret()) != digest
    assert secret not in digest


def test_new_key_id_is_key_and_16_hex() -> None:
    key_ids = {new_key_id() for _ in range(50)}
    assert len(key_ids) == 50
    assert all(re.fullmatch(r"key_[0-9a-f]{16}", key_id) for key_id in key_ids)
