"""Conformance: a runtime acknowledges a request only after it has answered it. A runtime killed
(SIGKILL) while running a call loses nothing: its persistent MQTT session keeps the unacknowledged
request, and the same runtime started again (same client id) gets it back from the broker and answers
the caller, who never sent it twice; the call store hands the dead runtime's claim over once its
lease ends.

It runs its own runtimes on version 8's topic only (``--not-live``), under a fixed pod id, slot and
generation (what keys a runtime's session), with a 2 s call lease.
"""

from __future__ import annotations

import signal
import time

from .conftest import Stack
from .harness import SERVICE, Caller, RuntimeKind, RuntimeProcess, expect_ok, new_call_id, wait_ready

VERSION = 8
TOPIC = f"service/{SERVICE}/v{VERSION}"
ARGS = ["--not-live", "--slot", "0", "--generation", "1"]


def test_a_call_in_flight_when_the_runtime_is_killed_is_answered_after_its_restart(
    runtime_kind: RuntimeKind, stack: Stack, caller: Caller
) -> None:
    env = {"DORMANT_POD_ID": f"crash-{runtime_kind.name}", "DORMANT_CALL_LEASE_S": "2"}
    first = RuntimeProcess(
        runtime_kind,
        broker_url=stack.broker.url,
        catalog_url=stack.catalog_url,
        log_file=stack.work / f"{runtime_kind.name}-crash-1.log",
    )
    second = RuntimeProcess(
        runtime_kind,
        broker_url=stack.broker.url,
        catalog_url=stack.catalog_url,
        log_file=stack.work / f"{runtime_kind.name}-crash-2.log",
    )
    first.start(version=VERSION, extra=ARGS, extra_env=env)
    try:
        wait_ready(first, caller, topic=f"{TOPIC}/echo")
        call, reply = new_call_id(), caller.new_reply_topic()
        caller.publish(f"{TOPIC}/sleep", {"ms": 1500}, response_topic=reply, correlation=call)
        # Requests from one client on one subscription arrive in order: once this echo is answered, the
        # runtime holds the sleep call, unanswered (it sleeps 1.5 s).
        marker = new_call_id()
        expect_ok(caller.call(f"{TOPIC}/echo", {"text": "behind the sleep"}, correlation=marker), marker)
        assert first.proc is not None
        first.proc.send_signal(signal.SIGKILL)
        assert first.wait(15) == -signal.SIGKILL
        assert caller.seen_on(reply) == [], "the killed runtime answered a call it was still sleeping on"

        second.start(version=VERSION, extra=ARGS, extra_env=env)
        # Nobody publishes the call again: the broker redelivers it to the restarted session.
        assert expect_ok(caller.wait_for(reply, timeout=60), call) == {"slept": 1500}
        time.sleep(1.0)
        assert len(caller.seen_on(reply)) == 1, "the call was answered more than once"
    finally:
        first.stop()
        second.stop()
