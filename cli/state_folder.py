"""One embedded stack per state folder, and no leftovers of an earlier one.

A running `backorders dev` (or a demo that started its own stack) holds an exclusive lock on
`stack.lock` in its state folder (`fcntl.flock`: the kernel releases it when the process ends,
however it ends) and keeps `stack.json` beside it: its own identity and that of each child
process it started (the Temporal dev server), each with its start time and command line.

- A second stack on the same folder cannot take the lock and is refused, with the folder and
  the pid of the stack that has it.
- A stack that takes the lock and finds a record left by a stack that ended without removing
  it (`kill -9` on a system without the parent-death signal, a power cut of the terminal's
  machine...) stops each recorded child that is still the very process recorded (same pid,
  start time and command), and starts cleanly. A pid since reused by another process is left
  alone.
- A clean stop removes the record and releases the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from cli.processes import ProcessIdentity, alive_as, identify, stop_process

log = logging.getLogger("backorders.cli")

LOCK_FILE = "stack.lock"
RECORD_FILE = "stack.json"


class StateFolderInUseError(Exception):
    """The state folder belongs to a running stack, or holds what a stack left running; the
    message names the folder, the process and what to do."""


@dataclass
class StackRecord:
    """`stack.json`: who runs the stack of this folder, and the children it started."""

    owner: ProcessIdentity
    started_at: str
    children: dict[str, ProcessIdentity] = field(default_factory=dict)
    """role (say, "Temporal dev server") -> the child process."""

    def to_json(self) -> dict[str, Any]:
        return {
            "owner": self.owner.to_json(),
            "started_at": self.started_at,
            "children": {role: child.to_json() for role, child in self.children.items()},
        }

    @classmethod
    def from_json(cls, data: Any) -> StackRecord | None:
        if not isinstance(data, dict):
            return None
        owner = ProcessIdentity.from_json(data.get("owner"))
        if owner is None:
            return None
        children = {}
        raw_children = data.get("children")
        if isinstance(raw_children, dict):
            for role, raw in raw_children.items():
                child = ProcessIdentity.from_json(raw)
                if child is not None:
                    children[str(role)] = child
        return cls(owner, str(data.get("started_at", "")), children)

    def write(self, folder: Path) -> None:
        """Replace the record at once: a reader never sees half of it."""
        path = folder / RECORD_FILE
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        os.replace(partial, path)

    @classmethod
    def read(cls, folder: Path) -> StackRecord | None:
        try:
            return cls.from_json(json.loads((folder / RECORD_FILE).read_text()))
        except (OSError, ValueError):
            return None


def _lock_holder(lock_path: Path) -> int | None:
    """The pid holding a flock on `lock_path`, from /proc/locks (Linux), else None."""
    try:
        status = os.stat(lock_path)
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    wanted = f"{os.major(status.st_dev):02x}:{os.minor(status.st_dev):02x}:{status.st_ino}"
    for row in table.splitlines():
        fields = row.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"; blocked waiters start with "->".
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
            return int(fields[4])
    return None


@dataclass
class Claim:
    """This process's hold on a state folder; `release` on a clean stop."""

    folder: Path
    lock: IO[str] | None
    record: StackRecord

    def record_child(self, role: str, pid: int) -> None:
        """Note a child process as soon as it starts, so that a stack killed at any later
        moment leaves a record of it."""
        identity = identify(pid)
        if identity is not None:
            self.record.children[role] = identity
            self.record.write(self.folder)

    def release(self) -> None:
        if self.lock is None:
            return
        with contextlib.suppress(FileNotFoundError):
            (self.folder / RECORD_FILE).unlink()
        fcntl.flock(self.lock, fcntl.LOCK_UN)
        self.lock.close()
        self.lock = None


def claim(folder: Path) -> Claim:
    """Take the state folder for this process's stack, or raise StateFolderInUseError.

    Leftover children recorded by a stack that died are stopped first (each only if it is still
    the recorded process), and said so in the log."""
    folder.mkdir(parents=True, exist_ok=True)
    folder = folder.resolve()
    lock_path = folder / LOCK_FILE
    lock = lock_path.open("a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise StateFolderInUseError(_in_use_message(folder, lock_path)) from None
    try:
        stale = StackRecord.read(folder)
        if stale is not None:
            _clean_up_after(stale, folder)
        me = identify(os.getpid())
        if me is None:  # pragma: no cover - we are running
            raise RuntimeError("cannot read this process's own identity")
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        record = StackRecord(me, started_at)
        record.write(folder)
    except BaseException:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
        raise
    return Claim(folder, lock, record)


def _in_use_message(folder: Path, lock_path: Path) -> str:
    record = StackRecord.read(folder)
    pid = _lock_holder(lock_path) or (record.owner.pid if record is not None else None)
    owner = identify(pid) if pid is not None else None
    who = f"pid {pid}" if pid is not None else "another process"
    if owner is not None:
        who = owner.describe(60)
    since = f", since {record.started_at}" if record is not None and record.started_at else ""
    stop = f"kill {pid}" if pid is not None else "stop it"
    return (
        f"the state folder {folder} is in use by another backorders stack ({who}{since}): "
        f"stop it first (Ctrl-C where it runs, or `{stop}`), or set BACKORDERS_STATE_DIR to "
        "another folder"
    )


def _clean_up_after(stale: StackRecord, folder: Path) -> None:
    """What a stack that ended without a clean stop left behind: stop its recorded children
    that still run, and refuse if the recorded owner itself still runs (a stack whose lock
    file was removed under it)."""
    if stale.owner.pid != os.getpid() and alive_as(stale.owner):
        raise StateFolderInUseError(
            f"the state folder {folder} is in use by another backorders stack "
            f"({stale.owner.describe(60)}, since {stale.started_at}; its lock file was removed): "
            f"stop it first (`kill {stale.owner.pid}`), or set BACKORDERS_STATE_DIR to another "
            "folder"
        )
    for role, child in stale.children.items():
        if stop_process(child):
            log.warning(
                "stopped the %s (pid %d) left running by an earlier stack on %s that did not "
                "stop cleanly (pid %d)",
                role,
                child.pid,
                folder,
                stale.owner.pid,
            )
    with contextlib.suppress(FileNotFoundError):
        (folder / RECORD_FILE).unlink()
