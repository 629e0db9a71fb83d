"""The worker encrypts, keys and shreds (CONTRACT §8, §10, G4, G6), both runtimes, real broker.

One lean scenario per runtime: two subjects' purchases reach the `email` engine with
`email`/`phone` as envelopes; the SDK decrypts them; `pfilter erase` of one makes every
earlier record of it unreadable from offset 0 while the other still decrypts; the erased
subject who comes back gets a new key; a wrong KEK is a clear error; the worker log
holds no plaintext, KEK or key material.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from streams.cli import cli
from streams.config import Settings, settings_env
from streams.crypto import Kek, WrongKeyError, envelope_version, is_envelope, new_kek_text, parse_key_record
from streams.kafka.replay import replay
from streams.sdk import EngineConsumer
from streams.verify import render_report, run_verify
from tests.integration import kit

pytestmark = pytest.mark.kafka

GONE, STAYS = "s-gone", "s-stays"


def _purchase(event_id: str, subject: str, ts: int) -> dict:
    e = kit.purchase(event_id, subject, ts)
    e["email"], e["phone"] = f"{subject}-mail@example.com", f"+49 30 {abs(hash(subject)) % 10**7:07d}"
    return e


def _drain(c: EngineConsumer, n: int, timeout: float = 20.0) -> list[dict]:
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        got += list(c.iter(max_records=n - len(got), timeout=1.0))
    return got


def _sdk(s: Settings, group: str, **kw) -> EngineConsumer:
    kw.setdefault("on_erasure", lambda _s: None)
    return EngineConsumer.from_settings(s, "email", group, keys_catchup_timeout_s=20.0, **kw)


@pytest.mark.parametrize("runtime", ["fast", "faust"])
def test_worker_encrypts_and_erase_shreds(kafka_settings: Settings, tmp_path: Path, runtime: str) -> None:
    s = kafka_settings.model_copy(update={
        "runtime": runtime, "processing_guarantee": "exactly_once" if runtime == "fast" else "at_least_once"})
    kit.setup_topics(s)
    now = int(time.time() * 1000)
    p = kit.producer(s)
    for subject in (GONE, STAYS):
        kit.send(p, s.topic_consent, subject, kit.consent(subject, now))
        kit.send(p, s.topic_purchases, subject, _purchase(f"e-{subject}", subject, now))
    email_topic = s.topic_output_prefix + "email"
    w = kit.start_worker(s, tmp_path)
    try:
        kit.wait_decisions(s, 2 * 3)
        # on the wire: envelopes, never the plaintext; one key record per subject
        raw = [orjson.loads(v) for *_x, v, _h, _t in replay(s, [email_topic], read_committed=True)]
        assert {r["subject_id"] for r in raw} == {GONE, STAYS}
        for r in raw:
            assert is_envelope(r["email"]) and is_envelope(r["phone"]), "email/phone must be encrypted"
            assert "example.com" not in orjson.dumps(r).decode()
        keys = [(k, v) for _t, _p, _o, k, v, _h, _ts in replay(s, [s.topic_keys], read_committed=True)]
        assert sorted(k.decode() for k, v in keys if v is not None) == [GONE, STAYS]
        old_version = next(envelope_version(r["email"]) for r in raw if r["subject_id"] == GONE)

        c = _sdk(s, s.group_id + "-before")
        got = {e["subject_id"]: e for e in _drain(c, 2)}
        assert got[GONE]["email"] == f"{GONE}-mail@example.com" and got[STAYS]["phone"].startswith("+49 30 ")
        c.close()

        res = CliRunner().invoke(cli, ["erase", GONE, "--json", "--timeout", "60"], env=settings_env(s),
                                 catch_exceptions=False)
        assert res.exit_code == 0, res.output
        receipt = orjson.loads(res.stdout)
        assert receipt["key_tombstone"]["topic"] == s.topic_keys

        # the worker tombstoned the key too (G4), in the keys partition of the subject
        tombs = [k for _t, _p, _o, k, v, _h, _ts in replay(s, [s.topic_keys], read_committed=True) if v is None]
        assert tombs.count(GONE.encode()) >= 2  # erase's and the worker's

        # from offset 0, a new group: GONE's fields are unreadable, STAYS still decrypts
        c = _sdk(s, s.group_id + "-after")
        got = {e["subject_id"]: e for e in _drain(c, 2)}
        assert "email" not in got[GONE] and "phone" not in got[GONE] and got[GONE]["order_id"] == "o-1"
        assert got[STAYS]["email"] == f"{STAYS}-mail@example.com"
        assert c.stats["unreadable"] == 2
        c.close()

        # the erased subject comes back: a new key, never the old one
        kit.send(p, s.topic_consent, GONE, kit.consent(GONE, now + 1000))
        kit.send(p, s.topic_purchases, GONE, _purchase("e-back", GONE, now + 2000))
        kit.wait_decisions(s, 3 * 3)
        c = _sdk(s, s.group_id + "-back")
        got = [e for e in _drain(c, 3) if e["event_id"] == "e-back"]
        assert got and got[0]["email"] == f"{GONE}-mail@example.com"
        c.close()
        back = [orjson.loads(v) for *_x, v, _h, _t in replay(s, [email_topic], read_committed=True)]
        new_version = next(envelope_version(r["email"]) for r in back if r["event_id"] == "e-back")
        assert new_version != old_version

        # a wrong KEK: a clear error, never garbage
        c = _sdk(s, s.group_id + "-wrong", kek=Kek.from_text(new_kek_text()))
        with pytest.raises(WrongKeyError, match="wrapped by KEK"):
            _drain(c, 3)  # the erased subject's first record has no key left: read them all
        c.close()
        # pfilter verify: with the KEK it decrypts and checks the plaintext against the rule
        # (the erased subject's old version is still in the log until compaction), without it
        # the envelope shape
        with_kek = run_verify(s, exactly_once=runtime == "fast")
        assert with_kek.ok, render_report(with_kek)
        assert with_kek.encrypted["decrypted"] == 6 and with_kek.encrypted["shape_only"] == 0
        no_kek = run_verify(s.model_copy(update={"kek": None}), exactly_once=runtime == "fast")
        assert no_kek.ok and no_kek.encrypted["shape_only"] == 6, render_report(no_kek)
    finally:
        w.stop()

    # G6: the worker's log holds no field value, no KEK, no key material
    log = (tmp_path / "worker.log").read_text()
    assert "data keys restored" in log  # the ring was restored from the keys topic
    kek = Kek.from_text(s.kek)
    raw_kek = bytes.fromhex(s.kek)
    secrets_ = [f"{x}-mail@example.com" for x in (GONE, STAYS)] + [s.kek, base64.b64encode(raw_kek).decode(),
                                                                  base64.urlsafe_b64encode(raw_kek).decode()]
    for k, v in keys:
        if v is not None:
            rec = parse_key_record(v)
            dk = kek.unwrap(rec.subject_id, rec.key_version, rec.wrapped_key)
            secrets_ += [dk.hex(), base64.urlsafe_b64encode(dk).rstrip(b"=").decode(),
                         base64.urlsafe_b64encode(rec.wrapped_key).rstrip(b"=").decode()]
    for secret in secrets_:
        assert secret not in log
