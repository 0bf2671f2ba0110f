"""The promotion's image side under faults, between two real registries: 5xx answers, connections dropped
between and in the middle of chunks, slow answers; a promoter killed with SIGKILL and run again; a tag that
another promoter moves between the check and the write."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlci.oci.copy import RegistryEndpoint
from mlci.oci.manifest import NotFound
from mlci.oci.registry import Registry as Client
from mlci.promote import copy
from tests.testing import faultproxy
from tests.testing.faultproxy import Fault, FaultProxy
from tests.testing.registry import Registry, access_log, push_random_image

fault_proxies = faultproxy.fault_proxies  # the fixture
CHUNK = 1 << 20
LAYERS = (9 << 20, 7 << 20, (4 << 20) + 12345)  # a 20 MB image in three layers
SIZE = sum(LAYERS)


@pytest.fixture(scope="module")
def image(pair: tuple[Registry, Registry]) -> str:
    return push_random_image(pair[0], "ml/model", "1.0", LAYERS)


def _endpoint(host: str, repository: str) -> RegistryEndpoint:
    return RegistryEndpoint(Client(host, plain_http=True, chunk_size=CHUNK), repository)


# One fault per promotion, in turn: (the fault, the bound on bytes sent as a multiple of the image's size).
FAULTS: list[tuple[list[Fault], float]] = [
    ([Fault("PATCH", 3, "drop_before")], 1.1),
    ([Fault("PATCH", 4, "drop_mid_body")], 2.1),
    ([Fault("PATCH", 2, "error_503"), Fault("PUT", 1, "error_503", path="/manifests/")], 1.1),
    ([Fault("PATCH", 5, "drop_before"), Fault("PATCH", 9, "drop_mid_body")], 2.1),
]


def test_twenty_promotions_through_faults_all_finish_with_the_same_digest_and_bounded_resends(
        pair: tuple[Registry, Registry], image: str, fault_proxies: list[FaultProxy]) -> None:
    dev, stage = pair
    source = _endpoint(dev.host, "ml/model")
    for run in range(20):
        faults, bound = FAULTS[run % len(FAULTS)]
        proxy = FaultProxy(stage.host, [Fault(f.method, f.nth, f.action, f.path) for f in faults],
                           delay=0.02 if run % 5 == 0 else 0.0)  # every fifth: slow answers too
        fault_proxies.append(proxy)
        destination = _endpoint(proxy.host, f"stage/model-{run}")
        seen = copy.check_tag(destination, "1.0", image, force=False)
        staged = copy.stage(source, "1.0", destination)
        tagged = copy.tag(destination, staged, "1.0", aliases=False, force=False, seen=seen)
        assert staged.digest == image and tagged.tags == ["1.0"]
        assert _endpoint(stage.host, f"stage/model-{run}").get_manifest("1.0").digest == image
        assert proxy.fired(), f"run {run}: no fault fired"
        assert proxy.upload_bytes() <= bound * SIZE, (run, proxy.upload_bytes() / SIZE)


def test_a_promotion_killed_mid_copy_completes_on_a_rerun_reusing_what_arrived(
        pair: tuple[Registry, Registry], image: str, fault_proxies: list[FaultProxy], tmp_path: Path) -> None:
    dev, stage = pair
    slow = FaultProxy(stage.host, delay=0.05)  # slow enough to be killed halfway
    fault_proxies.append(slow)
    script = ("import sys\nfrom mlci.oci.copy import RegistryEndpoint\nfrom mlci.oci.registry import Registry\n"
              "from mlci.promote import copy\n"
              f"src = RegistryEndpoint(Registry({dev.host!r}, plain_http=True, chunk_size={CHUNK}), 'ml/model')\n"
              "dst = RegistryEndpoint(Registry(sys.argv[1], plain_http=True, chunk_size="
              f"{CHUNK}), 'stage/killed')\n"
              "staged = copy.stage(src, '1.0', dst)\n"
              "copy.tag(dst, staged, '1.0', aliases=False, force=False, seen=None)\n")
    (tmp_path / "promote.py").write_text(script)
    child = subprocess.Popen([sys.executable, str(tmp_path / "promote.py"), slow.host])
    deadline = time.monotonic() + 60
    while slow.upload_bytes() < SIZE // 3 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    destination = _endpoint(stage.host, "stage/killed")
    with pytest.raises(NotFound):
        destination.get_manifest("1.0")  # no partial tag
    mark = len(access_log(stage))
    staged = copy.stage(_endpoint(dev.host, "ml/model"), "1.0", destination)
    copy.tag(destination, staged, "1.0", aliases=False, force=False, seen=None)
    assert destination.get_manifest("1.0").digest == image
    assert staged.reused, "nothing that arrived before the kill was reused"
    finished = [e for e in access_log(stage)[mark:] if e.method == "PUT" and "digest=" in e.target]
    assert len(finished) < len(LAYERS) + 1  # layers that arrived before the kill were not sent again


def test_a_tag_moved_between_the_check_and_the_write_is_detected_not_overwritten(
        pair: tuple[Registry, Registry], image: str) -> None:
    dev, stage = pair
    destination = _endpoint(stage.host, "stage/raced")
    seen = copy.check_tag(destination, "1.0", image, force=False)
    staged = copy.stage(_endpoint(dev.host, "ml/model"), "1.0", destination)
    other = push_random_image(stage, "stage/raced", "1.0", (2048,))  # another promoter got there first
    with pytest.raises(copy.TagMoved, match="moved at the destination during this promotion"):
        copy.tag(destination, staged, "1.0", aliases=False, force=False, seen=seen)
    assert destination.get_manifest("1.0").digest == other
