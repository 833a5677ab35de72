"""Hosts on one machine for multi-host fault tests: Linux network namespaces joined to a bridge.

``topology()`` is a context manager that yields a ``Topology``: a bridge in the root namespace, whose
address is the test process's own host, and, per ``add_host(name)``, a network namespace joined to
the bridge by a veth pair (``eth0`` inside, a bridge port outside), with one address of a /24 taken
from 198.18.0.0/15 (RFC 2544's range for network tests; nothing real lives there and the bridge has
no way out of the machine). Every name carries a random tag (``dm`` and six hex digits), so parallel
test workers never collide. Processes run on a host through ``ip netns exec``.

Faults, all on the bridge side of a host's link (nothing inside the host changes):

- ``cut(host)`` / ``heal(host)``: the link down and up again (the cable pulled out).
- ``block(a, b)`` / ``unblock(a, b)``: every IPv4 packet between two hosts is dropped silently (u32
  filters on both bridge ports redirect them to a sink link that is down), the rest flows.
- ``impaired(hosts, peer, delay_ms=, loss=)``: the packets between ``hosts`` and ``peer`` are held
  ``delay_ms`` and a fraction ``loss`` of them dropped, in both directions, like ``tc netem delay 50ms
  loss 1%`` on both ends' links. Kernels built without ``sch_netem`` (this machine's: no
  CONFIG_NET_SCH_NETEM, no modules) cannot do that in the kernel, so the filters redirect those
  packets to a TAP device where ``netem.py``, a user-space forwarder, holds and drops them. Either
  way it is per packet: TCP sees real delay and real loss (retransmissions, its RTO).

On the way out (also after a failure) the topology ends the processes it started, in the reverse
order, waits until no process is left in any of its namespaces (``ip netns pids``), SIGKILLs and
reports any that is, deletes the namespaces, links and bridge, and raises ``LeftBehind`` if anything
with its tag (a namespace, a link, a process) is still there. Its processes die with the test process
(a parent-death signal), and a test process killed before it could clean up leaves a marker naming its
tag and pid in ``MARKERS``: the next topology made on the machine removes what that one left.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

NETWORK = ipaddress.IPv4Network("198.18.0.0/15")
NETEM = Path(__file__).with_name("netem.py")
MARKERS = Path("/run/dormant-test-netns") if Path("/run").is_dir() else Path("/tmp/dormant-test-netns")
"""One file per live topology: its tag as the name, the pid of the test process that made it inside."""
COMMAND_TIMEOUT_S = 30.0
PROCESS_EXIT_WAIT_S = 15.0


class LeftBehind(AssertionError):
    """Something the topology made (a namespace, a link, a process) was still there at the end."""


class CommandFailed(RuntimeError):
    pass


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one iproute2 (or other) command; raise ``CommandFailed`` with its stderr when it fails."""
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL
    )
    if check and done.returncode != 0:
        raise CommandFailed(f"`{' '.join(argv)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done


def unavailable_reason() -> str | None:
    """Why namespaced hosts cannot be made here (None when they can): not Linux, not root, no
    iproute2, or the kernel or a sandbox refusing a namespace, a veth pair or a bridge."""
    if not sys.platform.startswith("linux"):
        return f"network namespaces need Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN and CAP_SYS_ADMIN); run the tests as root"
    for tool in ("ip", "tc", "bridge"):
        if shutil.which(tool) is None and not os.access(f"/usr/sbin/{tool}", os.X_OK):
            return f"`{tool}` is missing: install iproute2"
    tag = _new_tag()
    probe = f"{tag}-probe"
    try:
        sh("ip", "netns", "add", probe)
        try:
            sh("ip", "link", "add", f"{tag}pb", "type", "bridge")
            sh("ip", "link", "add", f"{tag}pv", "type", "veth", "peer", "name", "eth0", "netns", probe)
            try:  # what block() and impaired() use: a clsact qdisc, u32 filters, mirred redirects
                sh("tc", "qdisc", "add", "dev", f"{tag}pv", "clsact")
                sh(
                    "tc", "filter", "add", "dev", f"{tag}pv", "ingress", "protocol", "ip", "pref", "1",
                    "u32", "match", "ip", "dst", "198.18.0.1/32",
                    "action", "mirred", "egress", "redirect", "dev", f"{tag}pb",
                )  # fmt: skip
            except CommandFailed as exc:
                return f"the kernel cannot filter and redirect packets (tc clsact, u32, mirred): {exc}"
        finally:
            sh("ip", "link", "del", f"{tag}pb", check=False)
            sh("ip", "link", "del", f"{tag}pv", check=False)
            sh("ip", "netns", "del", probe, check=False)
    except (CommandFailed, OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot make network namespaces, veth pairs or bridges here (unshare refused?): {exc}"
    return None


def impairment_unavailable_reason() -> str | None:
    """Why ``impaired`` cannot work here: it needs a TAP device (``/dev/net/tun``)."""
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun: the user-space netem forwarder needs a TAP device"
    return None


def _new_tag() -> str:
    return f"dm{random.randbytes(3).hex()}"


class HostProcess:
    """One process started on a host: its own session and process group, stopped by its pid."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str,
        env: Mapping[str, str],
        log_file: Path,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.log_file = log_file
        self.stop_signal = stop_signal
        log_file.parent.mkdir(parents=True, exist_ok=True)
        prefix: list[str] = []
        setpriv = shutil.which("setpriv")
        if setpriv is not None:  # dies with the test process, even a SIGKILLed one
            prefix = [setpriv, "--pdeathsig=KILL", "--"]
        with log_file.open("ab") as log:
            self._proc = subprocess.Popen(
                [*prefix, *argv],
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll()

    def signal(self, signum: signal.Signals) -> None:
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signum)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def kill(self) -> None:
        """SIGKILL the process and its process group, and reap it."""
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(5)

    def wait(self, timeout: float) -> bool:
        """True once the process has exited (within ``timeout`` seconds)."""
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True


@dataclass
class Host:
    """One namespaced host: ``address`` on the bridge, its bridge port ``link``."""

    name: str
    netns: str
    address: str
    link: str
    processes: list[HostProcess] = field(default_factory=list)

    def argv(self, command: Sequence[str]) -> list[str]:
        """``command`` run on this host."""
        return ["ip", "netns", "exec", self.netns, *command]

    def spawn(
        self,
        command: Sequence[str],
        *,
        name: str,
        log_file: Path,
        env: Mapping[str, str] | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> HostProcess:
        process = HostProcess(
            self.argv(command),
            name=name,
            env=os.environ if env is None else env,
            log_file=log_file,
            stop_signal=stop_signal,
        )
        self.processes.append(process)
        return process

    def pids(self) -> list[int]:
        """Every process in this host's namespace now (``ip netns pids``)."""
        done = sh("ip", "netns", "pids", self.netns, check=False)
        return [int(p) for p in done.stdout.split()] if done.returncode == 0 else []


@dataclass
class ImpairStats:
    """What the netem forwarder did, known once the impairment ended."""

    forwarded: int = 0
    dropped: int = 0


class Topology:
    def __init__(self, work_dir: Path, *, exit_wait_s: float = PROCESS_EXIT_WAIT_S) -> None:
        self.work_dir = work_dir
        self.exit_wait_s = exit_wait_s
        """How long ``close`` waits for each process to end after its stop signal."""
        self.tag = _new_tag()
        self.bridge = f"{self.tag}br"
        self.sink = f"{self.tag}sk"
        self.hosts: dict[str, Host] = {}
        self.subnet = ipaddress.IPv4Network("198.18.0.0/24")
        self.address = ""
        """The test process's own address on the bridge."""
        self._next_index = 10
        self._filter_pref = 100
        self._blocks: dict[frozenset[str], list[tuple[str, int]]] = {}
        self._clsact: set[str] = set()
        self._made_links: list[str] = []
        self._made_netns: list[str] = []
        self._on_close: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ set-up

    def create(self) -> None:
        sweep_stale()
        with contextlib.suppress(OSError):
            MARKERS.mkdir(parents=True, exist_ok=True)
            (MARKERS / self.tag).write_text(str(os.getpid()))
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        self._made_links.append(self.bridge)
        sh("ip", "link", "add", self.sink, "type", "veth", "peer", "name", f"{self.tag}sp")
        self._made_links.append(self.sink)  # left down: what is redirected here is dropped
        self._claim_subnet()
        sh("ip", "link", "set", self.bridge, "up")

    def _claim_subnet(self) -> None:
        """A /24 of 198.18.0.0/15 that no interface of this machine uses (another worker's bridge)."""
        subnets = list(NETWORK.subnets(new_prefix=24))
        for _ in range(50):
            subnet = random.choice(subnets)
            if self._subnet_used(subnet):
                continue
            address = f"{subnet.network_address + 1}"
            sh("ip", "addr", "add", f"{address}/24", "dev", self.bridge)
            if self._subnet_used(subnet):  # a worker took the same one at the same moment
                sh("ip", "addr", "del", f"{address}/24", "dev", self.bridge)
                continue
            self.subnet, self.address = subnet, address
            return
        raise CommandFailed("no free /24 in 198.18.0.0/15")

    def _subnet_used(self, subnet: ipaddress.IPv4Network) -> bool:
        """Whether an interface other than this topology's bridge has an address in ``subnet``."""
        for line in sh("ip", "-4", "-o", "addr", "show").stdout.splitlines():
            parts = line.split()
            device, cidr = parts[1], parts[3]
            if device == self.bridge:
                continue
            if ipaddress.ip_interface(cidr).network.overlaps(subnet):
                return True
        return False

    def add_host(self, name: str) -> Host:
        """A new namespace on the bridge, with the next address of the subnet and loopback up."""
        self._next_index += 1
        netns = f"{self.tag}-{name}"
        link = f"{self.tag}v{self._next_index}"
        address = str(self.subnet.network_address + self._next_index)
        sh("ip", "netns", "add", netns)
        self._made_netns.append(netns)
        sh("ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", netns)
        self._made_links.append(link)
        sh("ip", "link", "set", link, "master", self.bridge, "up")
        sh("ip", "-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
        sh("ip", "-n", netns, "link", "set", "eth0", "up")
        sh("ip", "-n", netns, "link", "set", "lo", "up")
        host = Host(name=name, netns=netns, address=address, link=link)
        self.hosts[name] = host
        return host

    # ------------------------------------------------------------------ faults

    def cut(self, host: Host) -> None:
        """Pull ``host``'s cable: its link goes down on the bridge side."""
        sh("ip", "link", "set", host.link, "down")

    def heal(self, host: Host) -> None:
        sh("ip", "link", "set", host.link, "up")

    def _ensure_clsact(self, link: str) -> None:
        if link not in self._clsact:
            sh("tc", "qdisc", "add", "dev", link, "clsact")
            self._clsact.add(link)

    def _redirect(self, link: str, dst: str, device: str) -> tuple[str, int]:
        """Send the IPv4 packets ``link``'s host sends to ``dst`` to ``device`` instead (a filter on the
        bridge port's ingress, before the bridge sees them); returns what ``_unfilter`` removes."""
        self._ensure_clsact(link)
        self._filter_pref += 1
        pref = self._filter_pref
        sh(
            "tc", "filter", "add", "dev", link, "ingress", "protocol", "ip", "pref", str(pref),
            "u32", "match", "ip", "dst", f"{dst}/32",
            "action", "mirred", "egress", "redirect", "dev", device,
        )  # fmt: skip
        return link, pref

    def _unfilter(self, link: str, pref: int) -> None:
        sh("tc", "filter", "del", "dev", link, "ingress", "pref", str(pref), check=False)

    def block(self, a: Host, b: Host) -> None:
        """Drop every IPv4 packet between ``a`` and ``b``, silently, both ways."""
        key = frozenset((a.name, b.name))
        if key in self._blocks:
            return
        self._blocks[key] = [
            self._redirect(a.link, b.address, self.sink),
            self._redirect(b.link, a.address, self.sink),
        ]

    def unblock(self, a: Host, b: Host) -> None:
        for link, pref in self._blocks.pop(frozenset((a.name, b.name)), []):
            self._unfilter(link, pref)

    @contextlib.contextmanager
    def impaired(
        self, hosts: Sequence[Host], peer: Host, *, delay_ms: float, loss: float, seed: int = 14
    ) -> Iterator[ImpairStats]:
        """Delay and loss on every IPv4 packet between each of ``hosts`` and ``peer`` (module doc)."""
        stats = ImpairStats()
        tap = f"{self.tag}t{self._filter_pref + 1}"
        log_file = self.work_dir / f"netem-{tap}.log"
        forwarder = subprocess.Popen(
            [
                sys.executable, str(NETEM), "--dev", tap, "--delay-ms", str(delay_ms),
                "--loss", str(loss), "--seed", str(seed),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log_file.open("ab"),
            text=True,
        )  # fmt: skip
        filters: list[tuple[str, int]] = []
        try:
            assert forwarder.stdout is not None
            ready = _read_line(forwarder.stdout, within=20.0)
            if ready.strip() != "ready":
                raise CommandFailed(f"the netem forwarder did not start: {ready!r} {log_file.read_text()}")
            sh("sysctl", "-q", "-w", f"net.ipv6.conf.{tap}.disable_ipv6=1", check=False)
            sh("ip", "link", "set", tap, "master", self.bridge)
            # The bridge only ever hands this port what the filters redirect to it: frames written
            # back keep their source MAC address, and must not teach the bridge that hosts live here.
            sh("bridge", "link", "set", "dev", tap, "learning", "off", "flood", "off")
            for flag in ("mcast_flood", "bcast_flood"):  # older iproute2 or kernels lack these: harmless,
                sh("bridge", "link", "set", "dev", tap, flag, "off", check=False)  # the forwarder drops ARP
            sh("ip", "link", "set", tap, "up")
            for host in hosts:
                filters.append(self._redirect(host.link, peer.address, tap))
                filters.append(self._redirect(peer.link, host.address, tap))
            yield stats
        finally:
            for link, pref in filters:
                self._unfilter(link, pref)
            forwarder.send_signal(signal.SIGTERM)
            try:
                out, _ = forwarder.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                forwarder.kill()
                out, _ = forwarder.communicate()
            for line in out.splitlines():
                if line.startswith("{"):
                    summary = json.loads(line)
                    stats.forwarded, stats.dropped = int(summary["forwarded"]), int(summary["dropped"])

    # ------------------------------------------------------------------ tear-down

    def on_close(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the way out, once every process has ended (to remove their files)."""
        self._on_close.append(callback)

    def close(self) -> None:
        """End every process (newest host first), then remove everything; raise ``LeftBehind``."""
        problems: list[str] = []
        for host in self.hosts.values():  # links up again: stopping pods drain and release their slots
            sh("ip", "link", "set", host.link, "up", check=False)
        for key in list(self._blocks):
            for link, pref in self._blocks.pop(key):
                self._unfilter(link, pref)
        for host in reversed(list(self.hosts.values())):
            for process in reversed(host.processes):
                process.signal(process.stop_signal)
            for process in reversed(host.processes):
                if not process.wait(self.exit_wait_s):
                    problems.append(f"{host.name}: {process.name} (pid {process.pid}) did not stop")
                    process.kill()
        deadline = time.monotonic() + self.exit_wait_s
        for host in self.hosts.values():
            while host.pids() and time.monotonic() < deadline:
                time.sleep(0.1)
            for pid in host.pids():
                problems.append(f"{host.name}: process {pid} ({_cmdline(pid)}) was still in the namespace")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for callback in self._on_close:
            callback()
        for netns in self._made_netns:
            sh("ip", "netns", "del", netns, check=False)
        for link in reversed(self._made_links):
            sh("ip", "link", "del", link, check=False)
        remaining = self.leftovers()
        if not remaining:
            (MARKERS / self.tag).unlink(missing_ok=True)
        problems += remaining
        if problems:
            raise LeftBehind("the multi-host topology left things behind:\n" + "\n".join(problems))

    def leftovers(self) -> list[str]:
        """Namespaces and links with this topology's tag that still exist (namespaces and the veth
        ends in them go away asynchronously: waits a little for that)."""
        deadline = time.monotonic() + 10
        while True:
            found = [f"namespace {n}" for n in netns_names() if n.startswith(self.tag)]
            found += [f"link {n}" for n in link_names() if n.startswith(self.tag)]
            if not found or time.monotonic() > deadline:
                return found
            time.sleep(0.1)


def sweep_stale() -> list[str]:
    """Delete the namespaces and links of topologies whose test process died without removing them
    (killed with SIGKILL, say: its processes died with it); returns what was deleted."""
    removed: list[str] = []
    if not MARKERS.is_dir():
        return removed
    for marker in MARKERS.iterdir():
        try:
            pid = int(marker.read_text().strip())
        except (OSError, ValueError):
            continue
        if alive(pid):
            continue  # a live test process's (or, pid reused, one kept to be safe)
        tag = marker.name
        for name in netns_names():
            if name.startswith(f"{tag}-"):
                sh("ip", "netns", "del", name, check=False)
                removed.append(f"namespace {name}")
        for name in link_names():
            if name.startswith(tag):
                sh("ip", "link", "del", name, check=False)
                removed.append(f"link {name}")
        marker.unlink(missing_ok=True)
    return removed


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not reaped yet, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def netns_names() -> list[str]:
    return [line.split()[0] for line in sh("ip", "netns", "list").stdout.splitlines() if line.strip()]


def link_names() -> list[str]:
    names = []
    for line in sh("ip", "-o", "link", "show").stdout.splitlines():
        name = line.split(":", 2)[1].strip().split("@")[0]
        names.append(name)
    return names


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return "?"


def _read_line(stream: IO[str], *, within: float) -> str:
    """One line from a child's pipe, or '' when none comes ``within`` seconds."""
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(within):
            return ""
    return stream.readline()


@contextlib.contextmanager
def topology(work_dir: Path, *, exit_wait_s: float = PROCESS_EXIT_WAIT_S) -> Iterator[Topology]:
    """A ``Topology`` (see the module doc), removed on the way out even when the block fails."""
    net = Topology(work_dir, exit_wait_s=exit_wait_s)
    try:
        net.create()
        yield net
    finally:
        net.close()
