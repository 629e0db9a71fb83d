"""The e2e benchmark's figures and report (bench/e2e_results.py, bench/report.py), without a broker.

These check the arithmetic the report quotes (rates, events per CPU-second,
ratios to the peers), that the like-for-like policy is the offers engine only,
and that an earlier run's `--json` output still renders (the `--before-json`
comparison reads main's output).
"""

from __future__ import annotations

from pathlib import Path

import orjson

from bench.e2e_common import RUNTIMES, offers_only_policy
from bench.e2e_results import DrainResult, Sample, before_summary, per_cpu, ratios, ratios_per_cpu, targets
from bench.report import render_markdown

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"


def _drain() -> DrainResult:
    return DrainResult(runtime="fast", processing_guarantee="exactly_once", engine="native", policy="default",
                       budget_s=20.0, machine_busy_before=0.1, load_avg_before=1.0)


def test_window_gives_rates_per_second_and_per_cpu_second_and_stage_shares() -> None:
    d = _drain()
    d.set_window(Sample(10.0, 1_000, 5.0, {"decide": 1.0, "commit": 0.5}),
                 Sample(14.0, 401_000, 7.0, {"decide": 3.0, "commit": 1.5}))
    assert d.events_per_s == 100_000
    assert d.cpu_share == 0.5
    assert d.events_per_cpu_s == 200_000
    assert d.stages == {"decide": 0.5, "commit": 0.25}
    out = d.to_json()
    assert "error" not in out and out["events_in_window"] == 400_000


def test_ratios_to_a_peer_use_its_cpu_share_for_the_per_cpu_figure() -> None:
    r = {"drain": {"fast-eos-native": {"events_per_s": 90_000, "events_per_cpu_s": 120_000}},
         "peers": {"kstreams": {"events_per_s": 60_000, "peer_cpu_share": 1.5}}}
    assert per_cpu(r["peers"]["kstreams"]) == 40_000
    assert ratios(r) == {"fast-eos-native": {"kstreams": 1.5}}
    assert ratios_per_cpu(r) == {"fast-eos-native": {"kstreams": 3.0}}
    met = {t["name"]: t["met"] for t in targets(r)}
    assert met["fast-eos-native (full default policy) events/s vs Kafka Streams"] is True
    assert met["fast-eos-native (full default policy) events per CPU-s vs Kafka Streams"] is True
    r["peers"]["kstreams"]["peer_cpu_share"] = 0.5
    met = {t["name"]: t["met"] for t in targets(r)}
    assert met["fast-eos-native (full default policy) events per CPU-s vs Kafka Streams"] is False


def test_offers_only_policy_keeps_exactly_the_offers_engine(tmp_path: Path) -> None:
    from streams.config import load_settings
    from streams.wiring import load_policy

    path = offers_only_policy(tmp_path / "offers.toml")
    policy = load_policy(load_settings(policy_file=path))
    assert [e.name for e in policy.engines] == ["offers"]
    assert RUNTIMES["fast-eos-offers"].clicks_only and not RUNTIMES["fast-eos-native"].clicks_only


def test_an_earlier_runs_json_renders_and_compares(tmp_path: Path) -> None:
    before = RESULTS / "e2e-20261202-112012-before-main.json"
    old = orjson.loads(before.read_bytes())
    assert "| fast-eos | - | 3 + decisions |" in render_markdown(old)
    r = dict(old, before=before_summary(before))
    md = render_markdown(r)
    assert "Stage table before and after" in md
    assert "| before: fast-eos (run 112012-b83e) |" in md
