"""Conformance: drain. A runtime asked to stop (SIGTERM) answers the call it is running, takes no new
one, and exits 0.

It runs its own runtime, serving version 7 on its version topic only (``--not-live``), so the suite's
shared runtime (version 1, live) never sees these calls and is not stopped.
"""

from __future__ import annotations

import time

from .conftest import Stack
from .harness import SERVICE, Caller, RuntimeKind, RuntimeProcess, expect_ok, new_call_id, wait_ready

VERSION = 7
TOPIC = f"service/{SERVICE}/v{VERSION}"


def test_drain_answers_the_call_in_flight_takes_no_new_one_and_exits_0(
    runtime_kind: RuntimeKind, stack: Stack, caller: Caller
) -> None:
    process = RuntimeProcess(
        runtime_kind,
        broker_url=stack.broker.url,
        catalog_url=stack.catalog_url,
        log_file=stack.work / f"{runtime_kind.name}-drain.log",
    )
    process.start(version=VERSION, extra=["--not-live"])
    try:
        wait_ready(process, caller, topic=f"{TOPIC}/echo")
        in_flight, in_flight_reply = new_call_id(), caller.new_reply_topic()
        caller.publish(f"{TOPIC}/sleep", {"ms": 1500}, response_topic=in_flight_reply, correlation=in_flight)
        # Requests from one client on one subscription arrive in order: once this echo is answered, the
        # runtime has the sleep call (and is running it).
        marker = new_call_id()
        expect_ok(caller.call(f"{TOPIC}/echo", {"text": "behind the sleep"}, correlation=marker), marker)
        process.drain()
        assert expect_ok(caller.wait_for(in_flight_reply, timeout=30), in_flight) == {"slept": 1500}
        # The runtime stopped taking calls before it finished the one in flight.
        late, late_reply = new_call_id(), caller.new_reply_topic()
        caller.publish(f"{TOPIC}/echo", {"text": "too late"}, response_topic=late_reply, correlation=late)
        assert process.wait(30) == 0, process.log_tail()
        time.sleep(1.0)
        assert caller.seen_on(late_reply) == [], (
            "a draining runtime answered a call sent after its drain began"
        )
        after, after_reply = new_call_id(), caller.new_reply_topic()
        caller.publish(f"{TOPIC}/echo", {"text": "after"}, response_topic=after_reply, correlation=after)
        time.sleep(1.0)
        assert caller.seen_on(after_reply) == []
    finally:
        process.stop()
