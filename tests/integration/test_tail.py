"""`pfilter tail ENGINE` on the real broker: decoded, envelopes shown as such unless --decrypt."""

from __future__ import annotations

import base64
import logging

import orjson
import pytest
from click.testing import CliRunner

from streams.cli import cli
from streams.config import Settings, settings_env
from streams.crypto import Kek, new_kek_text
from streams.kafka.admin import create_topics
from streams.wiring import policy_for_topics
from tests.integration.crypto_kit import World

pytestmark = pytest.mark.kafka

PEOPLE = [("ps_3f9a0c1d", "gina@example.com", "+44 20 7946 0001"), ("hank", "hank@example.com", "+44 20 7946 0002")]


@pytest.fixture
def settings(kafka_settings: Settings) -> Settings:
    s = kafka_settings.model_copy(update={"kek": new_kek_text()})
    create_topics(s, [e.topic for e in policy_for_topics(s).engines])
    return s


def run_tail(settings: Settings, *args: str, kek: bool = True):
    env = settings_env(settings)
    if not kek:
        env.pop("PFILTER_KEK")
    env.setdefault("PFILTER_KEK", "")
    return CliRunner().invoke(cli, ["tail", "email", "--from-beginning", "--timeout", "3", *args], env=env,
                              catch_exceptions=False)


def json_lines(output: str) -> list[dict]:
    return [orjson.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_tail_shows_envelopes_decrypts_only_when_asked_and_marks_shredded(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    kek = Kek.from_text(settings.kek)
    w = World(settings, kek)
    w.commit(w.outputs(*PEOPLE) + [w.notice("hank", "email")])

    plain = run_tail(settings, "--json", "--max", "5")
    assert plain.exit_code == 0, plain.output
    lines = json_lines(plain.output)
    events = {e["subject_id"]: e for e in lines if "subject_id" in e}
    assert set(events) == {"ps_3f9a0c1d", "hank"}  # the pseudonym is shown as it is
    assert events["hank"]["email"].startswith("<encrypted: key v")
    assert {"erasure_notice": "hank", "engine": "email"} in lines
    for _, email, phone in PEOPLE:
        assert email not in plain.output and phone not in plain.output

    dec = run_tail(settings, "--json", "--decrypt", "--max", "2")
    assert dec.exit_code == 0, dec.output
    events = {e["subject_id"]: e for e in json_lines(dec.output) if "subject_id" in e}
    assert events["ps_3f9a0c1d"]["email"] == "gina@example.com"
    assert events["hank"]["phone"] == "+44 20 7946 0002"

    # shred hank's key: --decrypt now shows his fields as unreadable, gina's still decrypt
    w.commit([(settings.topic_keys, "hank", None)])
    after = run_tail(settings, "--decrypt", "--max", "2")  # the rich view
    assert after.exit_code == 0, after.output
    assert "gina@example.com" in after.output
    assert "hank@example.com" not in after.output
    assert after.output.count("<unreadable: key shredded>") == 2
    assert f"{w.topic}[" in after.output  # the record's place heads each event

    # G6: nothing personal nor secret in the logs, at DEBUG
    raw_kek = base64.urlsafe_b64decode(settings.kek + "=" * (-len(settings.kek) % 4))
    secret = [p for person in PEOPLE for p in person[1:]] + [settings.kek, raw_kek.hex()]
    for rec in w.key_records:
        key = kek.unwrap(rec.subject_id, rec.key_version, rec.wrapped_key)
        secret += [key.hex(), base64.urlsafe_b64encode(key).rstrip(b"=").decode(), base64.b64encode(key).decode()]
    for s in secret:
        assert s not in caplog.text


def test_decrypt_without_kek_is_refused(settings: Settings) -> None:
    res = run_tail(settings, "--decrypt", "--max", "1", kek=False)
    assert res.exit_code != 0
    assert "--decrypt needs the KEK" in res.output


def test_tail_with_the_wrong_kek_says_so(settings: Settings) -> None:
    w = World(settings, Kek.from_text(settings.kek))
    w.commit(w.outputs(PEOPLE[1]))
    res = run_tail(settings.model_copy(update={"kek": new_kek_text()}), "--decrypt", "--max", "1")
    assert res.exit_code != 0
    assert "wrapped by KEK" in res.output and "hank@example.com" not in res.output
