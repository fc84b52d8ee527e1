"""Which process owns something, and whether it is still alive.

Poll leases and temporary files both name their owner by machine, boot and
pid: a pid means something only on the machine and boot that issued it, so a
same-named host in another container or machine is never taken for this one.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import socket

# The boot part where the system does not say which boot this is (not Linux).
UNKNOWN_BOOT = "0" * 6


def _first_line(*paths: str) -> str:
    for path in paths:
        with contextlib.suppress(OSError), open(path, encoding="ascii", errors="replace") as f:
            text = f.readline().strip()
            if text:
                return text
    return ""


def _short_hash(text: str, length: int) -> str:
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:length]


@functools.cache
def machine_identity() -> tuple[str, str]:
    """(machine, boot) as short hashes: pids are comparable only within one of each.

    The pid namespace is part of the machine: two containers sharing a volume,
    the machine-id and the hostname still cannot see each other's processes.
    Without a boot id (not Linux) the boot part is constant.
    """
    machine_id = _first_line("/etc/machine-id", "/var/lib/dbus/machine-id")
    pid_ns = ""
    with contextlib.suppress(OSError):
        pid_ns = os.readlink("/proc/self/ns/pid")
    machine = _short_hash(f"{machine_id}|{socket.gethostname()}|{pid_ns}", 8)
    boot = _first_line("/proc/sys/kernel/random/boot_id")
    return machine, _short_hash(boot, 6) if boot else UNKNOWN_BOOT


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` (on this machine and boot) still runs; this very process
    counts as alive, and so does anything the system will not tell about."""
    if pid <= 0 or pid == os.getpid():
        return True
    if os.name == "nt":
        return True  # os.kill(pid, 0) would terminate it there; age decides instead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    # A killed child not yet reaped still answers kill(0); /proc tells the truth on Linux.
    with contextlib.suppress(OSError, IndexError), open(f"/proc/{pid}/stat", "rb") as handle:
        return handle.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    return True
