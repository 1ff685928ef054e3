"""Simulated hosts for the multi-machine tests: network namespaces on one Linux bridge.

Each host is a namespace ``snt-<name>`` with a loopback and an ``eth0`` (a veth pair whose
other end is a port of the bridge ``sntbr0``) at ``198.18.0.<10+i>/24``, a range reserved for
tests: addresses exist only inside the namespaces, so no packet leaves the machine. The
filesystem is shared, as on machines that mount the same volume. A host can:

- ``run`` a process (its own process group, output to a log), or ``exec`` a command;
- be ``partition``-ed (its bridge port down: packets vanish, as with a pulled cable; or its
  firewall resetting every TCP connection) and ``heal``-ed;
- be ``kill``-ed: every process in it gets SIGKILL, as when the machine loses power.

Docker sets the iptables FORWARD policy to DROP, which would drop bridged packets: an
ACCEPT rule for this bridge only is added and removed again. ``close`` removes everything
the harness made even when a test failed, and ``Hosts.start`` first removes what a killed
run left (namespaces named ``snt-*``, the bridge, the rule).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sentiment.settings import setting

PREFIX = "snt-"
BRIDGE = "sntbr0"
SUBNET = "198.18.0"
REFUSE = ["-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"]
RULE = ["FORWARD", "-i", BRIDGE, "-o", BRIDGE, "-m", "comment", "--comment", "snt-hosts"]


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def can_make_hosts() -> str | None:
    """Why hosts cannot be made here (not root, no ``ip``), or None."""
    if os.geteuid() != 0:
        return "simulated hosts need root (network namespaces)"
    if not shutil.which("ip"):
        return "simulated hosts need iproute2's ip"
    return None


def require_hosts() -> None:
    """Skip the calling test where hosts cannot be made, with the reason; fail it instead
    under ``SENTIMENT_REQUIRE_SERVERS=1`` (as ``.ci/run`` sets)."""
    reason = can_make_hosts()
    if reason and setting("SENTIMENT_REQUIRE_SERVERS"):
        pytest.fail(reason)
    if reason:
        pytest.skip(reason)


def iptables(*args: str) -> bool:
    if not shutil.which("iptables"):
        return False
    return subprocess.run(["iptables", *args], capture_output=True).returncode == 0


def remove_leftovers() -> None:
    """What an earlier run that was killed left behind."""
    for line in ip("netns", "list").stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith(PREFIX):
            kill_namespace(name)
            ip("netns", "delete", name, check=False)
    ip("link", "delete", BRIDGE, check=False)
    for line in ip("-o", "link", "show").stdout.splitlines():
        link = line.split(":")[1].strip().split("@")[0]
        if link.startswith(PREFIX):  # a port whose namespace a live process still held
            ip("link", "delete", link, check=False)
    while iptables("-D", *RULE, "-j", "ACCEPT"):
        pass


def kill_namespace(namespace: str) -> None:
    pids = ip("netns", "pids", namespace, check=False).stdout.split()
    for pid in pids:
        with suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


@dataclass
class Host:
    """One simulated machine."""

    name: str
    address: str
    logs: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def namespace(self) -> str:
        return f"{PREFIX}{self.name}"

    @property
    def port(self) -> str:
        return f"{PREFIX}{self.name}-p"[:15]

    def command(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *cmd]

    def run(
        self, *cmd: str, env: dict[str, str], log: str, cwd: Path | None = None
    ) -> subprocess.Popen:
        """Start ``cmd`` in this host in its own process group; output to ``logs/<log>``."""
        proc = subprocess.Popen(
            self.command(*cmd),
            env=env,
            cwd=cwd,
            stdout=open(self.logs / log, "ab"),  # noqa: SIM115 (the process's lifetime)
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(proc)
        return proc

    def exec(
        self, *cmd: str, env: dict[str, str], timeout: float = 600, cwd: Path | None = None
    ) -> subprocess.CompletedProcess:
        """Run ``cmd`` in this host to completion."""
        return subprocess.run(
            self.command(*cmd), env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
        )

    def partition(self, refuse: bool = False) -> None:
        """Cut the host off: its bridge port down, so packets vanish (a pulled cable); or,
        with ``refuse``, its firewall answering every TCP packet with a reset (a closed
        port), which ends open connections at once."""
        if refuse:
            ip("netns", "exec", self.namespace, "iptables", "-I", "INPUT", *REFUSE)
        else:
            ip("link", "set", self.port, "down")

    def heal(self) -> None:
        ip("link", "set", self.port, "up")
        while (
            ip(
                "netns", "exec", self.namespace, "iptables", "-D", "INPUT", *REFUSE, check=False
            ).returncode
            == 0
        ):
            pass

    def kill(self) -> None:
        """SIGKILL every process in the host, as a power cut would."""
        kill_namespace(self.namespace)
        for proc in self.processes:
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)

    def reaches(self, address: str, port: int, timeout: float = 1) -> bool:
        """Whether a TCP connect from this host to ``address:port`` succeeds."""
        probe = (
            "import socket,sys\n"
            f"socket.create_connection(('{address}', {port}), timeout={timeout}).close()"
        )
        return self.exec("python3", "-c", probe, env=dict(os.environ), timeout=30).returncode == 0


class Hosts:
    """``names`` as hosts on one bridge; a context manager that removes them all."""

    def __init__(self, names: list[str], logs: Path) -> None:
        self.logs = logs
        self.hosts = {
            name: Host(name, f"{SUBNET}.{10 + i}", logs) for i, name in enumerate(names, start=1)
        }

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def __enter__(self) -> Hosts:
        remove_leftovers()
        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            ip("link", "add", BRIDGE, "type", "bridge")
            ip("link", "set", BRIDGE, "up")
            iptables("-I", *RULE, "-j", "ACCEPT")
            for host in self.hosts.values():
                ns = host.namespace
                ip("netns", "add", ns)
                ip("link", "add", host.port, "type", "veth", "peer", "name", "eth0", "netns", ns)
                ip("link", "set", host.port, "master", BRIDGE, "up")
                ip("-n", ns, "addr", "add", f"{host.address}/24", "dev", "eth0")
                ip("-n", ns, "link", "set", "eth0", "up")
                ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for host in self.hosts.values():
            for proc in host.processes:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for host in self.hosts.values():
            for proc in host.processes:
                with suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        remove_leftovers()


def wait_port(host: Host, address: str, port: int, seconds: float = 60) -> None:
    """Until ``host`` reaches ``address:port``; fails after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if host.reaches(address, port):
            return
        time.sleep(0.5)
    raise TimeoutError(f"{host.name} cannot reach {address}:{port} after {seconds} s")
