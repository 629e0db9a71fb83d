"""`pfilter consent explain` and the consent rules in `pfilter policy check` (issue 11)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.unit.engine.helpers import consent
from tests.unit.engine.test_bases import li_email, tc, usnat
from tests.unit.test_config_cli import _pfilter


def _write(tmp_path: Path, rec: object) -> str:
    p = tmp_path / "record.json"
    p.write_text(json.dumps(rec))
    return str(p)


def test_policy_check_prints_bases_objections_and_the_signals_mapping() -> None:
    r = _pfilter("policy", "check")
    assert r.returncode == 0, r.stderr
    out = " ".join(r.stdout.split())  # rich wraps long lines
    assert "legitimate_interest" in out and "direct_marketing" in out and "profiling" in out
    assert "purpose personalization: TCF purposes 5, 6 all consented" in out
    assert "engine partner_ads: TCF vendor 755" in out
    assert "gpc: set by Sec-GPC" in out


def test_explain_shows_each_signal_and_the_effective_state(tmp_path: Path) -> None:
    rec = li_email(tcf=tc(purposes=(1, 2, 3, 4)), gpp=usnat(SaleOptOut=1), objections=["direct_marketing"])
    r = _pfilter("consent", "explain", _write(tmp_path, rec))
    assert r.returncode == 0, r.stderr
    out = " ".join(r.stdout.split())
    assert "purpose marketing_email: granted on basis legitimate_interest, allowed" in out
    assert "tcf: TCF purpose consent 5 no, 6 no -> denies" in out
    assert "gpp.usnat: opted out: SaleOptOut -> denies" in out
    assert "direct_marketing: purposes marketing_email, marketing_phone" in out
    assert "engine offers: purpose_denied (personalization not granted)" in out
    assert "engine email: objected (step 1a)" in out
    assert "engine partner_ads: purpose_denied" in out


def test_explain_of_a_plain_record_passes_every_engine(tmp_path: Path) -> None:
    r = _pfilter("consent", "explain", _write(tmp_path, consent()))
    assert r.returncode == 0, r.stderr
    assert "signals: none" in r.stdout and "objections: none" in r.stdout
    assert r.stdout.count("passes steps 1a and 2") == 3


def test_explain_of_a_malformed_record_is_one_line_and_exits_1(tmp_path: Path) -> None:
    for rec in (consent(tcf="%%%"), consent(objections=["spam"]), [1, 2]):
        r = _pfilter("consent", "explain", _write(tmp_path, rec))
        assert r.returncode == 1
        assert "malformed consent record" in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert "%%%" not in r.stderr  # G6: never the value
