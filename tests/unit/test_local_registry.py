"""Which Java runs the local schema registry (streams/kafka/registry.py); no JVM is started."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.config import load_settings
from streams.kafka.registry import MIN_JAVA, LocalRegistry, RegistryError, find_java, java_major


def _fake_jdk(root: Path, version: str | None) -> Path:
    """A JDK layout whose ``release`` file names ``version``; ``bin/java`` cannot run."""
    (root / "bin").mkdir(parents=True)
    java = root / "bin" / "java"
    java.write_text("not a binary\n")
    if version is not None:
        (root / "release").write_text(f'IMPLEMENTOR="test"\nJAVA_VERSION="{version}"\n')
    return java


@pytest.mark.parametrize(("version", "major"), [("25.0.3", 25), ("21", 21), ("17.0.15", 17), ("1.8.0_392", 8)])
def test_java_major_from_the_release_file(tmp_path: Path, version: str, major: int) -> None:
    assert java_major(_fake_jdk(tmp_path / "jdk", version)) == major


def test_java_major_of_something_that_does_not_run(tmp_path: Path) -> None:
    assert java_major(_fake_jdk(tmp_path / "jdk", None)) is None


def test_an_explicit_java_older_than_21_is_refused_by_name(tmp_path: Path) -> None:
    old = _fake_jdk(tmp_path / "jdk17", "17.0.15")
    with pytest.raises(RegistryError, match=rf"PFILTER_REGISTRY_JAVA={old} is Java 17; .* needs Java {MIN_JAVA}\+"):
        find_java(load_settings(registry_java=old, state_dir=tmp_path))


def test_an_explicit_java_21_is_used(tmp_path: Path) -> None:
    new = _fake_jdk(tmp_path / "jdk21", "21.0.5")
    assert find_java(load_settings(registry_java=new, state_dir=tmp_path)) == new


def test_url_is_the_confluent_api_on_loopback(tmp_path: Path) -> None:
    reg = LocalRegistry(load_settings(registry_port=18123, state_dir=tmp_path))
    assert reg.url == "http://127.0.0.1:18123/apis/ccompat/v7"
    assert reg.home == tmp_path / "registry-18123"
    assert not reg.status().running and not reg.down()  # nothing of ours there: nothing stopped
