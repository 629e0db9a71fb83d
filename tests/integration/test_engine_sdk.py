"""The engine SDK and the example SQLite engine on the real broker (CONTRACT §10, G4).

The records are produced here in the format the filter will emit (a JSON
filtered event whose ``email``/``phone`` are envelopes, the subject's wrapped
key on the keys topic in the same transaction, erasure notices, a key
tombstone), so the SDK is tested against the bytes, not against the worker.
"""

from __future__ import annotations

import base64
import importlib.util
import logging
import sys
import time
from pathlib import Path

import pytest

from streams.config import Settings
from streams.crypto import Kek, KeyMissingError, WrongKeyError, is_envelope, new_kek_text
from streams.kafka.admin import check_topics, create_topics
from streams.sdk import EngineConsumer, ErasureUnhandled
from streams.wiring import policy_for_topics
from tests.integration.crypto_kit import World

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]


def load_example():
    spec = importlib.util.spec_from_file_location("sqlite_profile_engine", ROOT / "examples" / "sqlite_profile_engine.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def sdk(settings: Settings, group: str, **kw) -> EngineConsumer:
    kw.setdefault("on_erasure", lambda s: None)
    return EngineConsumer.from_settings(settings, "email", group, keys_catchup_timeout_s=20.0, **kw)


def drain(c: EngineConsumer, n: int, timeout: float = 20.0) -> list[dict]:
    """Exactly ``n`` events (a bounded wait for them), then a short look for more."""
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        got += list(c.iter(max_records=n - len(got), timeout=1.0))
    got += list(c.iter(timeout=1.0))
    return got


@pytest.fixture
def settings(kafka_settings: Settings) -> Settings:
    kek = new_kek_text()
    s = kafka_settings.model_copy(update={"kek": kek})
    create_topics(s, [e.topic for e in policy_for_topics(s).engines])
    return s


def test_keys_topic_is_created_compacted_and_checked(settings: Settings) -> None:
    assert check_topics(settings, [e.topic for e in policy_for_topics(settings).engines]) == []
    wrong = settings.model_copy(update={"keys_delete_retention_ms": 5})
    problems = check_topics(wrong, [e.topic for e in policy_for_topics(wrong).engines])
    assert problems == [f"topic {settings.topic_keys!r}: delete.retention.ms is '86400000', expected '5'"]


def test_sdk_decrypts_forgets_and_shreds(settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    kek = Kek.from_text(settings.kek)
    w = World(settings, kek)
    people = [("alice", "alice@example.com", "+49 30 1111111"), ("bob", "bob@example.com", "+49 30 2222222")]
    w.commit(w.outputs(*people))
    w.commit(w.outputs(("carol", "carol@aborted.example", "+49 30 3333333")), abort=True)

    # -- the example engine: decrypted profiles, then an erasure deletes one
    example = load_example()
    engine = example.ProfileEngine(tmp_path / "profiles.sqlite")
    erased: list[str] = []

    def forget(subject: str) -> None:
        erased.append(subject)
        engine.forget(subject)

    c1 = sdk(settings, settings.group_id + "-example", on_erasure=forget)
    assert engine.run(c1, max_records=2, timeout=20.0) == 2
    assert engine.profile("alice")["email"] == "alice@example.com"
    assert engine.profile("bob")["phone"] == "+49 30 2222222"
    assert c1.stats["decrypted"] == 4 and c1.stats["unreadable"] == 0
    assert engine.run(c1, timeout=2.0) == 0  # past the transaction markers too
    assert engine.profile("carol") is None  # aborted: read_committed never shows it
    assert c1.lag() == {0: 0, 1: 0, 2: 0}

    w.commit([w.notice("alice", "offers"), w.notice("alice", "email")])
    assert engine.run(c1, timeout=3.0) == 0
    assert erased == ["alice"]  # only the notice addressed to this engine
    assert engine.profile("alice") is None and engine.profile("bob") is not None

    # -- shredding: a tombstone on the keys topic; a copy of alice's record is still retained
    w.commit([(settings.topic_keys, "alice", None)])
    c1.close()

    # -- read everything again from offset 0, new group
    c2 = sdk(settings, settings.group_id + "-replay")
    events = {e["subject_id"]: e for e in drain(c2, 2)}
    assert set(events) == {"alice", "bob"}
    assert "email" not in events["alice"] and "phone" not in events["alice"]
    assert events["alice"]["order_id"]  # the rest of the record is still there
    assert events["bob"]["email"] == "bob@example.com" and events["bob"]["phone"] == "+49 30 2222222"
    assert c2.stats["unreadable"] == 2 and c2.stats["decrypted"] == 2
    c2.close()

    # -- strict: the same read raises KeyMissingError for alice
    c3 = sdk(settings, settings.group_id + "-strict", strict=True)
    with pytest.raises(KeyMissingError):
        drain(c3, 2)
    c3.close()

    # -- wrong KEK: a clear error, never garbage
    c4 = sdk(settings, settings.group_id + "-wrong", kek=Kek.from_text(new_kek_text()))
    with pytest.raises(WrongKeyError, match="wrapped by KEK"):
        drain(c4, 1)
    c4.close()

    # -- no KEK: envelopes stay envelopes
    c5 = sdk(settings, settings.group_id + "-nokek", kek=None)
    raw = {e["subject_id"]: e for e in drain(c5, 2)}
    assert is_envelope(raw["bob"]["email"]) and is_envelope(raw["alice"]["phone"])
    c5.close()

    # G6: nothing personal nor secret in the logs, at DEBUG
    text = caplog.text
    secrets_ = [p for person in people for p in person[1:]] + ["carol@aborted.example", settings.kek]
    raw_kek = base64.urlsafe_b64decode(settings.kek + "=" * (-len(settings.kek) % 4))
    secrets_ += [raw_kek.hex(), base64.b64encode(raw_kek).decode()]
    for rec in w.key_records:
        data_key = kek.unwrap(rec.subject_id, rec.key_version, rec.wrapped_key)
        secrets_ += [base64.urlsafe_b64encode(rec.wrapped_key).rstrip(b"=").decode(), data_key.hex(),
                     base64.urlsafe_b64encode(data_key).rstrip(b"=").decode(), base64.b64encode(data_key).decode()]
    assert len(secrets_) > 12
    for s in secrets_:
        assert s not in text


def test_running_consumer_loses_the_key_when_the_tombstone_arrives(settings: Settings) -> None:
    kek = Kek.from_text(settings.kek)
    w = World(settings, kek)
    w.commit(w.outputs(("dora", "dora@example.com", "+1 555 0100"), ("emil", "emil@example.com", "+1 555 0101")))
    c = sdk(settings, settings.group_id + "-live")
    first = {e["subject_id"]: e for e in drain(c, 2)}
    assert first["dora"]["email"] == "dora@example.com"
    # a copy of dora's output produced (retained) after her key was shredded
    w.commit([(settings.topic_keys, "dora", None)])
    # the SDK applies keys-topic records as its background fetch brings them; reading to the end
    # makes "the tombstone has been seen" a fact here instead of a race with the next records
    assert c.sync_keys(settle=True) and c.stats["key_tombstones"] == 1
    late = w.outputs(("dora", "dora2@example.com", "+1 555 0102"), ("emil", "emil2@example.com", "+1 555 0103"))
    w.commit([r for r in late if r[0] != settings.topic_keys])  # the key record is not re-sent
    # lag is measured to the last stable offset, which moves when the broker has written the
    # commit markers: after commit_transaction() returns, not at once (seen: lag 0 right after)
    deadline = time.monotonic() + 15
    while sum(c.lag().values()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sum(c.lag().values()) >= 2
    second = {e["subject_id"]: e for e in drain(c, 2)}
    assert "email" not in second["dora"]
    assert second["emil"]["email"] == "emil2@example.com"
    assert c.stats["key_tombstones"] == 1
    c.close()


def test_notice_without_hook_is_an_error(settings: Settings) -> None:
    w = World(settings, Kek.from_text(settings.kek))
    w.commit([w.notice("fred", "email")])
    c = EngineConsumer.from_settings(settings, "email", settings.group_id + "-nohook")
    with pytest.raises(ErasureUnhandled):
        for _ in range(20):
            c.poll(1.0)
    c.close()


def test_avro_outputs_decode_and_decrypt(settings: Settings) -> None:
    s = settings.model_copy(update={"format_output": "avro"})
    w = World(s, Kek.from_text(s.kek))
    w.commit(w.outputs(("ida", "ida@example.com", "+31 20 555 0100")) + [w.notice("ida", "email")])
    erased: list[str] = []
    c = sdk(s, s.group_id + "-avro", on_erasure=erased.append)
    (event,) = drain(c, 1)
    deadline = time.monotonic() + 20
    while not erased and time.monotonic() < deadline:  # the notice is on another topic: wait for it, bounded
        c.poll(0.5)
    assert event["email"] == "ida@example.com" and event["phone"] == "+31 20 555 0100"
    assert event["order_id"] and erased == ["ida"]
    c.close()


def test_replaying_a_shredded_subject_reads_the_keys_topic_once(settings: Settings) -> None:
    w = World(settings, Kek.from_text(settings.kek))
    for i in range(6):
        w.commit(w.outputs(("jon", f"jon{i}@example.com", "+1 555 0199")))
    w.commit(w.outputs(("kim", "kim@example.com", "+1 555 0198")))
    w.commit([(settings.topic_keys, "jon", None)])
    c = sdk(settings, settings.group_id + "-replay-many")
    events = drain(c, 7)
    assert len(events) == 7 and c.stats["unreadable"] == 12 and c.stats["decrypted"] == 2
    # one read finds kim's key, at most one more learns that jon's key is gone: not one per record
    assert c.stats["key_reads"] <= 2
    c.close()


def test_settled_key_read_waits_for_an_undecided_transaction(settings: Settings) -> None:
    """A transaction's markers reach its partitions one by one: a missing key is looked up
    to the high watermark, so a key whose marker is late is waited for, not declared gone."""
    w = World(settings, Kek.from_text(settings.kek))
    c = sdk(settings, settings.group_id + "-settle")
    assert c.poll(0.5) is None  # first read of the (empty) keys topic done
    _, keys = w.event("lena", "lena@example.com", "+1 555 0111")
    w.p.begin_transaction()
    w.p.produce(settings.topic_keys, keys[0], b"lena")
    assert w.p.flush(30) == 0  # written, transaction still open
    assert c.sync_keys(timeout_s=5) and "lena" not in c.ring  # the committed end: not yet there
    assert not c.sync_keys(timeout_s=1, settle=True)  # the written end: waits, bounded
    w.p.commit_transaction(30)
    assert c.sync_keys(settle=True) and "lena" in c.ring
    c.close()
