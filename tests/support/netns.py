"""Hosts of their own on this machine: network namespaces joined to the host by veth pairs.

A `Lab` makes namespaces (`ip netns add`) and, per namespace, links: each a veth pair with a
/30 of its own from 198.18.0.0/15 (the range reserved for benchmarks, RFC 2544): the host end
gets `.1`, the namespace end `.2`. A namespace has no other route: what runs in it reaches
only the host-end addresses of its links, and nothing leaves the machine. `Link.cut()` sets
the host end down, so that packets in both directions vanish, as when a host's link fails:
established connections stall (TCP retransmits into the void), new ones fail after about 3 s
with "No route to host" (the neighbour lookup gets no answer). `Link.heal()` sets it up again,
and stalled connections resume where TCP has not given up on them.

Names carry the creating process's pid (`bofault-PID-TOKEN-LABEL`): `remove_leftovers()` deletes
the namespaces of runs whose process is gone (a test run killed before its cleanup), with any
process still in them. Everything here needs root and the `ip` command (iproute2);
`unavailable()` says why it cannot run.
"""

from __future__ import annotations

import ipaddress
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field

PREFIX = "bofault"
NETWORK = ipaddress.ip_network("198.18.0.0/15")


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux's"
    if os.geteuid() != 0:
        return "making network namespaces and veth pairs needs root"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = f"{PREFIX}-{os.getpid()}-probe"
    try:
        ip("netns", "add", probe)
    except subprocess.CalledProcessError as exc:
        return f"`ip netns add` failed: {exc.stderr.strip()}"
    ip("netns", "delete", probe)
    return None


def ip(*args: str) -> str:
    """Run `ip ARGS`; CalledProcessError (with stderr) when it fails."""
    done = subprocess.run(  # noqa: S603 - fixed program, our own arguments
        ["ip", *args],  # noqa: S607 - iproute2 from PATH
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def namespaces() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def _kill_inside(namespace: str) -> None:
    """SIGKILL every process still in `namespace` (the workers of a killed run)."""
    try:
        pids = ip("netns", "pids", namespace).split()
    except subprocess.CalledProcessError:
        return
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            continue


def remove_leftovers() -> list[str]:
    """Delete the namespaces of earlier runs whose process has ended; returns their names."""
    removed = []
    for name in namespaces():
        parts = name.split("-")
        if len(parts) < 3 or parts[0] != PREFIX or not parts[1].isdigit():
            continue
        if _alive(int(parts[1])):
            continue
        _kill_inside(name)
        try:
            ip("netns", "delete", name)
        except subprocess.CalledProcessError:
            continue
        removed.append(name)
    return removed


@dataclass
class Link:
    """A veth pair between the host and one namespace."""

    namespace: str
    host_device: str
    namespace_device: str
    host_address: str
    """Where processes in the namespace reach the host side (a proxy listens here)."""
    namespace_address: str

    def cut(self) -> None:
        ip("link", "set", self.host_device, "down")

    def heal(self) -> None:
        ip("link", "set", self.host_device, "up")


@dataclass
class Namespace:
    name: str
    links: dict[str, Link] = field(default_factory=dict)

    def command(self, *argv: str) -> list[str]:
        """`argv` run inside the namespace (`ip netns exec` execs it: the pid is argv's)."""
        return ["ip", "netns", "exec", self.name, *argv]


@dataclass
class Lab:
    """Namespaces and links made by this test run, all removed by `close` (also after a
    failure: use it as a context manager)."""

    token: str = field(default_factory=lambda: secrets.token_hex(2))
    namespaces: list[Namespace] = field(default_factory=list)
    _subnets: list[ipaddress.IPv4Network] = field(default_factory=list)

    def __enter__(self) -> Lab:
        remove_leftovers()
        self._subnets = list(self._free_block().subnets(new_prefix=30))
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _free_block(self) -> ipaddress.IPv4Network:
        """A /24 of 198.18.0.0/15 with no address on this machine yet."""
        existing = [
            ipaddress.ip_interface(line.split()[3]).network
            for line in ip("-o", "-4", "addr", "show").splitlines()
        ]
        blocks = [
            block
            for block in NETWORK.subnets(new_prefix=24)
            if not any(block.overlaps(network) for network in existing)
        ]
        chosen = random.choice(blocks)
        assert isinstance(chosen, ipaddress.IPv4Network)
        return chosen

    def namespace(self, label: str) -> Namespace:
        name = f"{PREFIX}-{os.getpid()}-{self.token}-{label}"
        ip("netns", "add", name)
        namespace = Namespace(name)
        self.namespaces.append(namespace)
        ip("-n", name, "link", "set", "lo", "up")
        return namespace

    def link(self, namespace: Namespace, label: str) -> Link:
        """A new link of `namespace` to the host; its device in the namespace is `to-LABEL`."""
        subnet = self._subnets.pop(0)
        host, inside = list(subnet.hosts())
        index = sum(len(ns.links) for ns in self.namespaces)
        link = Link(
            namespace=namespace.name,
            host_device=f"bf{self.token}{index:02d}",
            namespace_device=f"to-{label}"[:15],
            host_address=str(host),
            namespace_address=str(inside),
        )
        ip(
            "link", "add", link.host_device, "type", "veth",
            "peer", "name", link.namespace_device, "netns", namespace.name,
        )  # fmt: skip
        ip("addr", "add", f"{host}/30", "dev", link.host_device)
        ip("-n", namespace.name, "addr", "add", f"{inside}/30", "dev", link.namespace_device)
        ip("link", "set", link.host_device, "up")
        ip("-n", namespace.name, "link", "set", link.namespace_device, "up")
        namespace.links[label] = link
        return link

    def close(self) -> None:
        for namespace in self.namespaces:
            _kill_inside(namespace.name)
            for link in namespace.links.values():
                # Deleting one end deletes the pair; gone already if the namespace went first.
                subprocess.run(  # noqa: S603
                    ["ip", "link", "delete", link.host_device],  # noqa: S607
                    capture_output=True,
                    check=False,
                )
            subprocess.run(  # noqa: S603
                ["ip", "netns", "delete", namespace.name],  # noqa: S607
                capture_output=True,
                check=False,
            )
        self.namespaces.clear()
