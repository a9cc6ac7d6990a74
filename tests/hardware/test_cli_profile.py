"""``edgeloop profile`` and ``edgeloop targets`` through the real CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

from edgeloop.artifacts import DeviceProfile

Cli = Callable[..., CompletedProcess[str]]


def test_profile_json_and_save(cli: Cli, tmp_path: Path) -> None:
    r = cli("profile", "--quick", "--json", "--save", "me.json")
    assert r.returncode == 0, r.stderr
    printed = DeviceProfile.from_dict(json.loads(r.stdout))
    saved = DeviceProfile.load(tmp_path / "me.json")
    assert printed == saved
    assert saved.source == "measured" and saved.fp32_gops and saved.int8_gops


def test_profile_table(cli: Cli) -> None:
    r = cli("profile", "--quick")
    assert r.returncode == 0, r.stderr
    for text in ("fp32 throughput", "int8 throughput", "memory bandwidth", "power", "GOPS"):
        assert text in r.stdout


def test_targets_lists_the_builtin_profiles(cli: Cli) -> None:
    r = cli("targets", "--json")
    assert r.returncode == 0, r.stderr
    names = {DeviceProfile.from_dict(d).name for d in json.loads(r.stdout)}
    assert {"rpi4", "rpi5", "jetson-orin-nano-cpu", "cortex-a78-phone", "intel-n100"} <= names
    table = cli("targets")
    assert "rpi5" in table.stdout and "Cortex-A76" in table.stdout


def test_one_target_in_full_with_its_sources(cli: Cli) -> None:
    r = cli("targets", "raspberry-pi-5")
    assert r.returncode == 0, r.stderr
    assert "references" in r.stdout and "raspberrypi.com" in r.stdout and "DERIVED" in r.stdout


def test_unknown_target_fails_with_the_list(cli: Cli) -> None:
    r = cli("targets", "pi9")
    assert r.returncode == 13
    assert "unknown target 'pi9'; built-in targets:" in r.stderr and "Traceback" not in r.stderr
