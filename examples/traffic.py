"""Steady traffic for trying rollouts: call SERVICE.FUNCTION about RATE times a second until stopped.

    python examples/traffic.py user-service.createUser --rate 40 &

Each call goes through ``dormant.Client``, which picks a version by the ``live`` alias's weights as
every caller does, so a rollout in progress sees its share of the calls and the controller can judge
each step. ``{n}`` in ``--input`` is replaced by a counter (the default makes a new user per call).
On SIGTERM or Ctrl-C it prints how many calls succeeded and the errors by type.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections import Counter

from dormant import DormantError
from dormant.client import Client

DEFAULT_INPUT = '{"email": "load-{n}@example.com", "name": "Load {n}"}'


async def run(target: str, rate: float, template: str) -> Counter[str]:
    service, function = target.split(".", 1)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    outcomes: Counter[str] = Counter()
    n = 0
    async with Client() as client:
        while not stop.is_set():
            n += 1
            params = template.replace("{n}", str(n))
            try:
                await client.call(service, function, json.loads(params), timeout=10)
                outcomes["ok"] += 1
            except DormantError as exc:
                outcomes[type(exc).__name__] += 1
            try:
                await asyncio.wait_for(stop.wait(), 1 / rate)
            except TimeoutError:
                pass
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", help="SERVICE.FUNCTION, e.g. user-service.createUser")
    parser.add_argument("--rate", type=float, default=20.0, help="calls per second (default 20)")
    parser.add_argument("--input", default=DEFAULT_INPUT, help="JSON input; {n} is a counter")
    args = parser.parse_args()
    outcomes = asyncio.run(run(args.target, args.rate, args.input))
    print(", ".join(f"{name}: {count}" for name, count in sorted(outcomes.items())) or "no calls")
    return 0


if __name__ == "__main__":
    sys.exit(main())
