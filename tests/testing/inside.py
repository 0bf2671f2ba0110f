"""The inside of an air gap for a test: run under `unshare -n` (a network namespace with nothing but loopback, as
STAGE and PROD have no route out), bring `lo` up, start the environment's registry and Nexus stand-in on fixed
loopback ports (every port is free in a fresh namespace), run one command there, stop the servers. Their files
stay in the directories given, so the test can look at them (or serve them again) afterwards.

    unshare -n python -m tests.testing.inside WORK REGISTRY_PORT NEXUS_PORT -- COMMAND...

Prints one JSON object: the command's exit code, stdout and stderr, and whether any address but loopback was
up (it must not be)."""
from __future__ import annotations

import fcntl
import json
import socket
import struct
import subprocess
import sys
from pathlib import Path

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def loopback_up() -> None:
    """`ip link set lo up`, without iproute2: the interface flags through ioctl."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))


def interfaces() -> list[str]:
    """The network interfaces of this namespace."""
    return sorted(name for _, name in socket.if_nameindex())


def main(argv: list[str]) -> int:
    from tests.testing.nexus import start_nexus, stop_nexus
    from tests.testing.registry import start_registry, stop_registry

    work, registry_port, nexus_port = Path(argv[0]), int(argv[1]), int(argv[2])
    command = argv[argv.index("--") + 1:]
    loopback_up()
    registry = start_registry(directory=work / "registry", port=registry_port)
    nexus = start_nexus(work / "nexus", port=nexus_port)
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    finally:
        stop_nexus(nexus)
        stop_registry(registry)
    print(json.dumps({"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr,
                      "interfaces": interfaces()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
