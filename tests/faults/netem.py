"""A user-space netem: holds every frame it is handed for a fixed delay and drops a random fraction.

Run as a script by ``netns.Topology.impaired`` (for kernels built without ``sch_netem``): it opens the
TAP device ``--dev`` (creating it; it goes away when this process ends), prints ``ready``, then reads
the frames that tc filters redirect to the device, drops each with probability ``--loss``, and
writes the others back into the device ``--delay-ms`` after they came, in the order they came (the
bridge then forwards them to where they were going). Only IPv4 frames are forwarded: the filters
redirect nothing else, and whatever else the device emits itself is not traffic to pass on.
On SIGTERM it writes out what it still holds, prints ``{"forwarded": N, "dropped": N}`` and exits.
Standard library only.
"""

from __future__ import annotations

import argparse
import collections
import fcntl
import json
import os
import random
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
ETH_P_IP = 0x0800
MAX_FRAME = 65536
IDLE_WAIT_S = 0.05


def open_tap(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dev", required=True)
    parser.add_argument("--delay-ms", type=float, required=True)
    parser.add_argument("--loss", type=float, required=True, help="the fraction of frames dropped, 0..1")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 0 <= args.loss <= 1 or args.delay_ms < 0:
        parser.error("--loss must be within 0..1 and --delay-ms at least 0")
    delay = args.delay_ms / 1000
    rng = random.Random(args.seed)
    fd = open_tap(args.dev)
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("ready", flush=True)
    held: collections.deque[tuple[float, bytes]] = collections.deque()
    forwarded = dropped = 0
    while not stopping:
        wait = max(0.0, held[0][0] - time.monotonic()) if held else IDLE_WAIT_S
        readable, _, _ = select.select([fd], [], [], min(wait, IDLE_WAIT_S))
        if readable:
            while True:
                try:
                    frame = os.read(fd, MAX_FRAME)
                except BlockingIOError:
                    break
                if len(frame) < 14 or struct.unpack_from("!H", frame, 12)[0] != ETH_P_IP:
                    continue
                if rng.random() < args.loss:
                    dropped += 1
                else:
                    held.append((time.monotonic() + delay, frame))
        now = time.monotonic()
        while held and held[0][0] <= now:
            _, frame = held.popleft()
            forwarded += _write(fd, frame)
    while held:
        forwarded += _write(fd, held.popleft()[1])
    os.close(fd)
    print(json.dumps({"forwarded": forwarded, "dropped": dropped}), flush=True)
    return 0


def _write(fd: int, frame: bytes) -> int:
    try:
        os.write(fd, frame)
    except OSError:  # the device's queue is full or it is going away: the frame is lost like on a wire
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
