"""The :class:`Emulator`: server, state, faults and stats behind one Python handle."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gembatch.emulator.config import EmulatorConfig, OutcomeRule
from gembatch.emulator.faults import FaultInjector
from gembatch.emulator.hooks import Hooks
from gembatch.emulator.server import EmulatorHTTPServer
from gembatch.emulator.state import Clock
from gembatch.emulator.stats import RequestRecord, Stats, StatsSnapshot
from gembatch.emulator.store import BatchStatus, Store
from gembatch.emulator.switches import Switches
from gembatch.emulator.webhooks_api import HooksApi


@dataclass(frozen=True)
class CreatedBatch:
    """A batch the emulator made, whether or not it still exists (see ``created_batches``)."""

    name: str
    display_name: str | None
    model: str
    input_file: str | None  # "files/<id>" of a file batch, None for inline requests
    inline_requests: list[dict[str, Any]] | None
    # The inline answers it served, in request order (None until it succeeded, and for file
    # batches); with the shuffle_inline switch the wire carries them in another order.
    inlined: list[dict[str, Any]] | None
    deleted: bool
    kind: str = "generate"  # or "embed"
    priority: int = 0
    webhook_config: dict[str, Any] | None = None


class Emulator:
    """A local Gemini Batch API.

    ``Emulator(pending_s=0.1, running_s=0.2).start()`` serves on a free loopback port in a
    daemon thread; ``.base_url`` is what the SDK needs; ``.stop()`` ends it and removes its
    files. Use it as a context manager, or :func:`gembatch.emulator.running_emulator`.
    """

    def __init__(self, config: EmulatorConfig | None = None, **options: Any) -> None:
        base = config or EmulatorConfig()
        self.config = dataclasses.replace(base, **options) if options else base
        cfg = self.config
        self.clock = Clock()
        self.stats_ = Stats()
        self.faults = FaultInjector(
            cfg.seed,
            rate=cfg.fault_rate,
            codes=cfg.fault_codes,
            endpoints=cfg.fault_endpoints,
            latency_s=cfg.latency_s,
        )
        self.switches = Switches(
            max_running=cfg.max_running,
            shuffle_inline=cfg.shuffle_inline,
            output_delay_s=cfg.output_delay_s,
            long_file_ids=cfg.long_file_ids,
            batch_stats=cfg.batch_stats,
        )
        self.root = Path(tempfile.mkdtemp(prefix="gembatch-emulator-", dir=cfg.data_dir))
        self.store = Store(cfg, self.clock, self.root, self.switches)
        self.webhooks = Hooks(self.store)
        self.api = HooksApi(self.store, cfg, self.webhooks)
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._base_url = ""

    # ------------------------------------------------------------------- start and stop

    def bind(self) -> str:
        """Bind the listening socket (no serving yet) and return the base URL."""
        if self._server is None:
            self._server = EmulatorHTTPServer((self.config.host, self.config.port), self)
            host, port = self._server.server_address[:2]
            shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
            self._base_url = f"http://{shown}:{port}"
        return self._base_url

    def start(self) -> Emulator:
        """Serve in a daemon thread; returns self once the socket is listening."""
        self.bind()
        assert self._server is not None
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="gembatch-emulator",
                daemon=True,
            )
            self._thread.start()
        self.webhooks.start(self._base_url)
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and delete the emulator's files."""
        self.webhooks.stop()
        server, self._server = self._server, None
        if server is not None:
            if self._thread is not None:
                server.shutdown()
                self._thread.join()
                self._thread = None
            server.close_connections()
            server.server_close()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if not self._base_url:
            raise RuntimeError("the emulator is not bound yet; call start()")
        return self._base_url

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    # ------------------------------------------------------------------------ counting

    def stats(self) -> StatsSnapshot:
        """Counts by (endpoint, HTTP status) and recent requests (never API keys)."""
        return self.stats_.snapshot()

    def count(self, endpoint: str | None = None, status: int | None = None) -> int:
        """How many API requests were seen, optionally for one endpoint glob and/or status."""
        return self.stats().count(endpoint, status)

    def reset_stats(self) -> None:
        self.stats_.reset()

    def on_request(self, listener: Any) -> None:
        """Call ``listener(RequestRecord)`` after each API request (the CLI's ``--verbose``)."""
        self.stats_.listener = listener

    # ------------------------------------------------------------------ time and outcome

    def advance(self, seconds: float) -> None:
        """Move the emulator's clock forward: batches progress as if time had passed."""
        self.clock.advance(seconds)

    def set_state(self, name: str, state: str, message: str | None = None) -> None:
        """Force a batch into a state. Terminal states are final (SUCCEEDED writes the
        output); PENDING/RUNNING hold the batch there until forced again or cancelled."""
        self.store.set_state(name, state, message)
        self.webhooks.poke()

    def finish_all(self) -> int:
        """End every live batch now with its planned outcome; returns how many."""
        finished = self.store.finish_all()
        self.webhooks.poke()
        return finished

    def add_rule(self, rule: OutcomeRule) -> None:
        """Append an outcome rule; it applies to batches created from now on."""
        self.store.rules.append(rule)

    def state_of(self, name: str) -> str:
        """The batch's state without the ``BATCH_STATE_`` prefix, e.g. ``"RUNNING"``."""
        return self.store.status(name).state

    def status(self, name: str) -> BatchStatus:
        """The batch's state, end time, kind, priority and webhook config (see
        :class:`~gembatch.emulator.store.BatchStatus`)."""
        return self.store.status(name)

    def batch_names(self) -> list[str]:
        return [record.name for record in self.store.batch_records()]

    def created_batches(self) -> list[CreatedBatch]:
        """Every batch ever created, in creation order, deleted ones included: a create
        answered with an error (``fail_after``, a hang-up) that was carried out is here too."""
        self.store.settle_due()
        registry = self.store.registry
        with registry.lock:
            records = list(registry.created)
            alive = set(registry.batches.by_id)
        return [
            CreatedBatch(
                name=r.name,
                display_name=r.display_name,
                model=r.model,
                input_file=r.input_file,
                inline_requests=r.inline_requests,
                inlined=r.inlined,
                deleted=r.id not in alive,
                kind=r.kind,
                priority=r.priority,
                webhook_config=r.webhook_config,
            )
            for r in records
        ]

    def file_names(self) -> list[str]:
        self.store.settle_due()
        records, _ = self.store.list_files(1 << 30, None)
        return [r.name for r in records]

    def operation(self, name: str) -> dict[str, Any]:
        """The batch's wire JSON, exactly as ``batches.get`` would answer (not counted)."""
        return self.store.operation(self.store.get_batch(name))

    # ------------------------------------------------------------------ data shortcuts

    def add_file(
        self, data: bytes, *, display_name: str | None = None, mime_type: str = "jsonl"
    ) -> str:
        """Create an uploaded file without the API (not counted); returns ``files/<id>``."""
        return self.store.add_file(data, display_name=display_name, mime_type=mime_type).name

    def make_large_result(
        self,
        size_bytes: int,
        *,
        display_name: str | None = None,
        model: str = "models/gemini-2.5-flash",
    ) -> str:
        """A SUCCEEDED batch whose result file is ``size_bytes`` of valid result lines with
        filler answer texts, written to disk once (for download benchmarks). Returns its name."""
        record = self.store.create_large_batch(size_bytes, display_name=display_name, model=model)
        return record.name

    def result_file(self, name: str) -> str | None:
        """``files/batch-<id>`` once the batch has succeeded with a file source, else None."""
        output = self.operation(name)["metadata"].get("output") or {}
        return output.get("responsesFile")

    def result_path(self, name: str) -> Path | None:
        """The result file on the emulator's disk (for byte comparisons in tests)."""
        file_name = self.result_file(name)
        return self.store.get_file(file_name).path if file_name else None


__all__ = ["BatchStatus", "CreatedBatch", "Emulator", "RequestRecord"]
