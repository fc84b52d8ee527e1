"""Who holds a lease: an owner name for this process, and whether a holder is
provably gone.

A holder is a random id plus its heartbeat (the renewed expiry); hostname and
pid alone name no one, since containers on different machines share both. So
a holder is judged dead only when it ran in this very process space (same
boot, same pid namespace) and that process is gone.
"""

from __future__ import annotations

import os
import socket
import uuid

from gembatch.common.processes import UNKNOWN_BOOT, machine_identity, pid_alive


def make_owner(pid: int | None = None) -> str:
    """``host:pid:space:random``: the random part names the holder, the rest only
    lets :func:`holder_is_dead` ask the kernel. ``pid`` is for tests."""
    return f"{_host()}:{pid or os.getpid()}:{_process_space()}:{uuid.uuid4().hex[:12]}"


def _host() -> str:
    # The owner column holds 128 characters; the host part is informative only.
    return socket.gethostname()[:64]


def _process_space() -> str:
    """Which pids ``os.kill`` can see: this machine (pid namespace included) and
    this boot. "-" where the system cannot say which boot (then no lease is
    cleared early)."""
    machine, boot = machine_identity()
    return "-" if boot == UNKNOWN_BOOT else f"{machine}{boot}"


def holder_is_dead(holder: str) -> bool:
    """True only when the holder ran in this process space and its process is gone.

    A holder written by another machine or container, by an older gembatch
    (``host:pid:random``), or where /proc is absent is never judged dead: its
    lease expires by the database's clock once its heartbeat stops.
    """
    parts = holder.split(":")
    if len(parts) != 4:
        return False
    host, pid_text, space, _ = parts
    if host != _host() or space == "-" or space != _process_space():
        return False
    if not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # another poller in this very process (tests): alive by definition
    return not pid_alive(pid)
