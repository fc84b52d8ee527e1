"""The merge rule: what a job-info line may change on a job the database already has.

Pure functions of the stored row and the line, kept apart from the import's
reading and writing so the rule can be read (and tested) on its own.

A job is never moved backwards:

- The state group (``state``, ``update_time``, ``end_time``, ``dest_file_name``)
  is taken from the line only when the line is newer: the database knows no
  state yet; or the line is terminal and the database is not; or neither is
  terminal and the line's ``update_time`` is later (or the database has none).
  A terminal state in the database is final.
- Every other field only fills a value the database does not have (NULL);
  unknown keys only add keys the database's ``extra_json`` lacks. A state-group
  field is filled that way too when line and database agree on the state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gembatch.common import states
from gembatch.jobinfo.lines import RECORD_FIELDS, JobRecord

_STATE_GROUP = ("state", "update_time", "end_time", "dest_file_name")
# What this machine did with a job (downloaded, cleaned up) is the database's
# own record: a line seeds it for a new job but never overrides it, or a result
# found missing and forgotten would be "restored" by the next merge.
_LOCAL_PROGRESS = ("result_path", "result_size", "result_sha256", "downloaded_at", "cleaned_at")
# A job's kind is fixed when it is created (by submit, or a first import).
_FIXED = ("extra_json", "kind")
_PLAIN_FIELDS = tuple(
    f
    for f in RECORD_FIELDS
    if f not in _STATE_GROUP and f not in _FIXED and f not in _LOCAL_PROGRESS
)


def incoming_is_newer(current: Mapping[str, Any], incoming: JobRecord) -> bool:
    """Whether the line's state group replaces the database's (see the module docstring)."""
    if incoming.state is None:
        return False
    if current.get("last_polled_at") is not None:
        # gembatch has asked the API itself: a line's state is a hint at best, and
        # an old line must never flip a job the API reports running to "finished".
        return False
    if current["state"] is None:
        return True
    if states.is_terminal(current["state"]):
        return False
    if states.is_terminal(incoming.state):
        return True
    if current["update_time"] is None:
        return incoming.update_time is not None
    return incoming.update_time is not None and incoming.update_time > current["update_time"]


def merge_values(current: Mapping[str, Any], incoming: JobRecord) -> dict[str, Any]:
    """The column values an incoming record changes on an existing row ({} = unchanged)."""
    changes: dict[str, Any] = {}
    for name in _PLAIN_FIELDS:
        value = getattr(incoming, name)
        if value is not None and current[name] is None:
            changes[name] = value
    newer = incoming_is_newer(current, incoming)
    same_state = incoming.state is not None and incoming.state == current["state"]
    for name in _STATE_GROUP:
        value = getattr(incoming, name)
        if value is None or value == current[name]:
            continue
        if newer or (same_state and current[name] is None):
            changes[name] = value
    if incoming.extra_json:
        mine = current["extra_json"] or {}
        added = {k: v for k, v in incoming.extra_json.items() if k not in mine}
        if added:
            changes["extra_json"] = {**mine, **added}
    return changes
