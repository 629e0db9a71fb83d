"""streams.crypto: envelopes, the key ring, KEK handling and the key record (CONTRACT §10)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import fastavro
import orjson
import pytest
from fastavro.validation import validate

from streams.config import ConfigError, load_settings
from streams.crypto import (
    EnvelopeError,
    Kek,
    KekError,
    KeyMissingError,
    KeyRecordError,
    KeyRing,
    WrongKeyError,
    decrypt_field,
    decrypt_value,
    encrypt_field,
    encrypt_value,
    envelope_version,
    is_envelope,
    load_kek,
    new_kek_text,
    parse_key_record,
    to_binary,
    to_text,
    unwrap_key,
    wrap_key,
)
from streams.crypto.keys import unb64url
from streams.engine.codecs import SCHEMAS_DIR
from streams.errors import PFilterError

EXAMPLE_KEK = Kek(bytes(range(32)))  # the KEK of the checked-in examples (schemas/examples)


def ring_with(subject: str = "s-1") -> KeyRing:
    ring = KeyRing(Kek.from_text(new_kek_text()))
    assert ring.ensure(subject, 1000) is not None
    return ring


def test_round_trip_keeps_type_and_is_not_plaintext() -> None:
    ring = ring_with()
    for value in ("jane@example.com", 42, 1.5, {"street": "Main 1"}, ["a"], None, True):
        env = encrypt_value(ring, "s-1", "email", value)
        assert is_envelope(env) and env.startswith("pfe1.")
        if len(json.dumps(value)) >= 8:  # a short one ("42") may occur in base64 by chance
            assert json.dumps(value) not in env
        assert decrypt_value(ring, "s-1", "email", env) == value


def test_nonce_is_random_per_field() -> None:
    ring = ring_with()
    envs = {encrypt_field(ring, "s-1", "email", b'"x"') for _ in range(200)}
    assert len(envs) == 200
    nonces = {unb64url(e.split(".")[2])[:12] for e in envs}
    assert len(nonces) == 200


def test_associated_data_binds_subject_and_path() -> None:
    ring = ring_with("a")
    ring.ensure("b", 1)
    env = encrypt_field(ring, "a", "email", b'"x"')
    with pytest.raises(WrongKeyError):
        decrypt_field(ring, "a", "phone", env)  # another field
    # another subject's key does not open it, even given the same key version
    with pytest.raises((WrongKeyError, KeyMissingError)):
        decrypt_field(ring, "b", "email", env)


def test_tampered_ciphertext_is_an_error_not_garbage() -> None:
    ring = ring_with()
    env = encrypt_field(ring, "s-1", "email", b'"jane@example.com"')
    head, body = env.rsplit(".", 1)
    raw = bytearray(unb64url(body))
    raw[15] ^= 1
    bad = head + "." + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(WrongKeyError):
        decrypt_field(ring, "s-1", "email", bad)


def test_shredded_key_raises_key_missing() -> None:
    ring = ring_with()
    env = encrypt_value(ring, "s-1", "email", "x@example.com")
    assert ring.forget("s-1")
    with pytest.raises(KeyMissingError) as e:
        decrypt_value(ring, "s-1", "email", env)
    assert isinstance(e.value, PFilterError)


def test_tombstone_record_shreds_and_a_returning_subject_gets_a_new_key() -> None:
    kek = Kek.from_text(new_kek_text())
    worker = KeyRing(kek)
    first = worker.ensure("s", 1)
    old_env = encrypt_value(worker, "s", "email", "old@example.com")
    reader = KeyRing(kek)
    reader.add_record("s", first.to_json())
    assert decrypt_value(reader, "s", "email", old_env) == "old@example.com"
    # erasure: the worker forgets, a tombstone reaches the reader
    worker.forget("s")
    reader.add_record("s", None)
    second = worker.ensure("s", 2)
    assert second.key_version != first.key_version and second.wrapped_key != first.wrapped_key
    reader.add_record("s", second.to_json())
    new_env = encrypt_value(worker, "s", "email", "new@example.com")
    assert decrypt_value(reader, "s", "email", new_env) == "new@example.com"
    with pytest.raises(KeyMissingError):  # never tried under the new key
        decrypt_value(reader, "s", "email", old_env)


def test_wrong_kek_is_a_clear_error() -> None:
    worker = ring_with()
    rec = worker.ensure("t", 1)
    env = encrypt_value(worker, "t", "email", "x@example.com")
    other = KeyRing(Kek.from_text(new_kek_text()))
    other.add_record("t", rec.to_json())
    with pytest.raises(WrongKeyError, match="wrapped by KEK"):
        decrypt_value(other, "t", "email", env)


def test_key_record_bound_to_subject_and_version() -> None:
    kek = Kek.from_text(new_kek_text())
    wrapped = wrap_key(kek, "a", 7, b"k" * 32)
    assert unwrap_key(kek, "a", 7, wrapped) == b"k" * 32
    for subject, version in (("b", 7), ("a", 8)):
        with pytest.raises(WrongKeyError):
            unwrap_key(kek, subject, version, wrapped)
    ring = ring_with("a")
    rec = ring.ensure("x", 1)
    with pytest.raises(KeyRecordError):  # stored under another Kafka key
        KeyRing(kek).add_record("y", rec.to_json())


def test_binary_and_text_envelopes_convert() -> None:
    ring = ring_with()
    env = encrypt_value(ring, "s-1", "email", "x@example.com")
    b = to_binary(env)
    assert b[0] == 1 and is_envelope(b)
    assert to_text(b) == env
    assert decrypt_value(ring, "s-1", "email", b) == "x@example.com"
    assert envelope_version(b) == envelope_version(env) == ring.current_version("s-1")
    assert decrypt_value(ring, "s-1", "email", encrypt_value(ring, "s-1", "email", 5, binary=True)) == 5


@pytest.mark.parametrize("value", ["jane@example.com", "pfe1.0.AAAA", "pfe1.12.short", "", "pfe1..x" + "A" * 40])
def test_non_envelopes(value: str) -> None:
    assert not is_envelope(value)
    with pytest.raises(EnvelopeError):
        decrypt_field(ring_with(), "s-1", "email", value)


def test_cache_eviction_re_unwraps() -> None:
    kek = Kek.from_text(new_kek_text())
    w = KeyRing(kek)
    recs = [w.ensure(f"s{i}", 1) for i in range(5)]
    envs = [encrypt_value(w, f"s{i}", "email", i) for i in range(5)]
    r = KeyRing(kek, max_cached=2)
    for i, rec in enumerate(recs):
        r.add_record(f"s{i}", rec.to_json())
    for _ in range(2):
        assert [decrypt_value(r, f"s{i}", "email", envs[i]) for i in range(5)] == list(range(5))
    assert r.unwraps == 10  # every use evicted: each one unwrapped again
    r2 = KeyRing(kek)
    for i, rec in enumerate(recs):
        r2.add_record(f"s{i}", rec)
    for _ in range(2):
        [decrypt_value(r2, f"s{i}", "email", envs[i]) for i in range(5)]
    assert r2.unwraps == 5  # cached: one unwrap per key


# ---------------------------------------------------------------- KEK


def test_kek_text_forms(tmp_path: Path) -> None:
    raw = bytes(range(32))
    ids = {
        Kek.from_text(raw.hex()).kek_id,
        Kek.from_text(base64.b64encode(raw).decode()).kek_id,
        Kek.from_text(base64.urlsafe_b64encode(raw).rstrip(b"=").decode()).kek_id,
        Kek(raw).kek_id,
    }
    f = tmp_path / "kek"
    f.write_bytes(raw)
    ids.add(Kek.from_file(f).kek_id)
    f.write_text(raw.hex() + "\n")
    ids.add(load_kek(None, f).kek_id)
    assert ids == {EXAMPLE_KEK.kek_id}
    assert load_kek(None, None) is None
    with pytest.raises(KekError):
        load_kek("x", f)
    assert "kek_id" in repr(EXAMPLE_KEK) and raw.hex() not in repr(EXAMPLE_KEK)


@pytest.mark.parametrize("text", ["", "not base64 !!", base64.b64encode(b"short").decode(), "ab" * 31])
def test_bad_kek_stops_start_up_without_showing_it(text: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(kek=text or " ")
    assert "PFILTER_KEK" in str(e.value)
    if len(text) > 3:
        assert text not in str(e.value)


# ---------------------------------------------------------------- the record and its schema


def test_key_record_round_trip_and_rejects() -> None:
    rec = ring_with().ensure("z", 123)
    assert parse_key_record(rec.to_json()) == rec
    assert parse_key_record(rec.to_avro_dict()) == rec
    good = orjson.loads(rec.to_json())
    for bad in ({**good, "key_version": 0}, {**good, "wrapped_key": "AAAA"}, {**good, "alg": "A128KW"},
                {k: v for k, v in good.items() if k != "kek_id"}, {**good, "created_at": True}):
        with pytest.raises(KeyRecordError):
            parse_key_record(orjson.dumps(bad))
    with pytest.raises(KeyRecordError):
        parse_key_record(b"not json")


def test_examples_match_the_schema_and_decrypt_under_the_example_kek() -> None:
    schema = fastavro.parse_schema(json.loads((SCHEMAS_DIR / "data_key.avsc").read_text()))
    key_json = json.loads((SCHEMAS_DIR / "examples" / "keys" / "data_key.cust-000042.json").read_text())
    rec = parse_key_record(orjson.dumps(key_json))
    assert validate(rec.to_avro_dict(), schema, raise_errors=True)
    event = json.loads((SCHEMAS_DIR / "examples" / "filtered_event.email.json").read_text())
    ring = KeyRing(EXAMPLE_KEK)
    ring.add_record(rec.subject_id, rec)
    assert event["subject_id"] == rec.subject_id
    assert decrypt_value(ring, rec.subject_id, "email", event["email"]) == "jane.doe@example.com"
    assert decrypt_value(ring, rec.subject_id, "phone", event["phone"]) == "+49 30 1234567"


def test_pfilter_config_masks_the_kek(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from streams.cli import cli

    kek = new_kek_text()
    res = CliRunner().invoke(cli, ["config"], env={"PFILTER_KEK": kek, "PFILTER_PSEUDONYM_KEY": "pk-secret-1"})
    assert res.exit_code == 0, res.output
    assert "kek = ***" in res.output and "pseudonym_key = ***" in res.output
    assert kek not in res.output and "pk-secret-1" not in res.output
    assert repr(load_settings(kek=kek)).count(kek) == 0  # repr=False keeps it out of tracebacks too
