"""The state dir's light mode (docs/scale.md): slots are hard links to one content-addressed
copy of each bundle shared by every device; each device still reads and clears its own."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from edgeloop.agent._store import StateDir


def test_devices_holding_the_same_bundle_share_one_copy(tmp_path: Path) -> None:
    blobs = tmp_path / "blobs"
    dirs = [StateDir(tmp_path / f"device-{i}", blobs=blobs) for i in range(8)]
    data, other = b"bundle-v1" * 1000, b"bundle-v2" * 1000
    threads = [threading.Thread(target=d.write_slot, args=("a", data)) for d in dirs]
    for t in threads:  # racing writers of the same bytes: one copy wins, all link to it
        t.start()
    for t in threads:
        t.join()
    inodes = {d.slot_path("a").stat().st_ino for d in dirs}
    assert len(inodes) == 1
    assert sorted(p.name for p in blobs.iterdir()) == [hashlib.sha256(data).hexdigest()]
    assert all(d.slot_path("a").read_bytes() == data for d in dirs)
    dirs[0].write_slot("b", other)
    assert dirs[0].slot_path("b").read_bytes() == other and len(list(blobs.iterdir())) == 2
    dirs[0].clear_slot("a")  # a device's slot goes; the shared copy stays for the others
    assert not dirs[0].slot_path("a").exists()
    assert dirs[1].slot_path("a").read_bytes() == data
    # no temp files left behind anywhere
    assert not list(tmp_path.rglob("*.tmp"))


def test_without_blobs_each_device_has_its_own_copy(tmp_path: Path) -> None:
    a, b = StateDir(tmp_path / "a"), StateDir(tmp_path / "b")
    a.write_slot("a", b"x" * 100)
    b.write_slot("a", b"x" * 100)
    assert a.slot_path("a").stat().st_ino != b.slot_path("a").stat().st_ino
    assert a.slot_path("a").stat().st_nlink == 1
