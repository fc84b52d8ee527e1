"""A local Gemini Batch API that the unmodified google-genai SDK talks to.

Point any script at it with ``GOOGLE_GEMINI_BASE_URL=<base url>`` (and any API key), or
``HttpOptions(base_url=..., api_version="v1beta")``. It serves the Developer API batch
endpoints under ``v1``, ``v1beta`` and ``v1alpha`` as the project's reference
``shared/docs/gemini-batch-protocol.md`` (beside the checkout) records them: resumable
upload, files get/list/delete/download, batch create (file or inline), embeddings batch
create (``asyncBatchEmbedContent``, file or inline), get, list, cancel, delete. It is a
server: it never imports the SDK. Its 2026 features and quirk switches, and how each wire
fact is known, are in ``docs/emulator-2026.md``.

Python::

    from gembatch.emulator import Emulator, OutcomeRule, running_emulator

    with running_emulator(pending_s=0.1, running_s=0.2) as emu:
        emu.base_url                      # "http://127.0.0.1:<port>"
        emu.set_state("batches/x", "SUCCEEDED")   # or emu.finish_all(), emu.advance(60)
        emu.add_rule(OutcomeRule("FAILED", display_name="bad-*"))
        emu.faults.fail_next("batches.get", 503, count=2)
        emu.faults.fail_after("batches.create", 500)     # carried out, then an error
        emu.faults.drop_download(after_bytes=1000)
        emu.faults.configure(rate=0.1, codes=(429, 503), latency_s=0.01)
        emu.count("batches.get", 200)     # what the server saw
        emu.switches.set(max_running=1, shuffle_inline=True, output_delay_s=5,
                         long_file_ids=True, batch_stats="numbers")
        emu.status("batches/x")           # BatchStatus: state, end_ns, kind, webhook_config

Module map: ``app`` (the Emulator handle), ``server`` (HTTP), ``api`` (endpoints),
``control`` (``/_emulator/...`` paths), ``store`` (the registry the endpoints use) over
``records`` (shared dictionaries, paging), ``files`` (uploads, file records), ``batches``
(create, list, cancel, delete, forced states), ``queue`` (capacity and priority) and
``outcomes`` (planned endings, output, the Operation), ``state`` (records and the
lifecycle), ``results`` (validation and generated results) with ``embeddings`` (embedding
requests and answers), ``switches`` (capacity and quirks), ``faults``, ``stats``, ``wire``
(ids, timestamps, error shape), ``testing`` (``running_emulator``).

Lifecycle: PENDING for ``pending_s``, RUNNING for ``running_s`` (each plus a seeded
U(0, ``jitter_s``)), then the outcome chosen at creation by the first matching
:class:`OutcomeRule` (by display name, creation index or seeded fraction), else SUCCEEDED.
State is computed from the clock on each read. A batch not done 48 h after creation
EXPIRES. With ``max_running`` set, a batch whose pending time is over waits for a slot; a
freed slot goes to the highest ``batch.priority`` (int64, default 0, negatives allowed), the
oldest first among equals; the start is fixed when the slot frees, replayed from the clock on
the next read (no background thread). The output of a SUCCEEDED batch is written when it is
first observed (or when ``files.list`` runs), streamed line by line from the input.

Choices where the live service is unverified (protocol doc §9), made here deliberately:

- Missing or wrong key: no key → 403 PERMISSION_DENIED; a wrong key (only when
  ``api_key`` is configured) → 400 INVALID_ARGUMENT "API key not valid" with ErrorInfo
  ``API_KEY_INVALID``, as the live service answers. Upload data chunks need no key (the
  upload URL carries the session id, as on the live service).
- Cancel of a finished batch → 200 ``{}``, nothing changes. Cancel of a live batch ends it
  as CANCELLED at once (the live service is asynchronous; clients must poll either way).
- Delete of a live batch → allowed (the reference says delete does not cancel); the batch
  is forgotten. The result file of a deleted batch stays: it is a separate resource.
- A missing or deleted file (get, delete, download, or as batch input) → 404 NOT_FOUND;
  ``missing_file_status=403`` mimics the PERMISSION_DENIED the live service is reported
  to send. A missing batch → 404 NOT_FOUND.
- Downloading an uploaded (non-generated) file → 400 INVALID_ARGUMENT. The download path
  without ``alt=media`` → 400 INVALID_ARGUMENT. Both ``/{v}/files/x:download`` and
  ``/download/{v}/files/x:download`` are served.
- Page sizes: default 10, at most 100 (larger values are clamped, negative → 400). Lists
  are newest first; page tokens are cursors, so creating items between pages neither
  repeats nor skips older ones. An empty list is ``{}``.
- Operation errors: FAILED → gRPC 13 INTERNAL (3 INVALID_ARGUMENT for a broken input
  file, naming the line), EXPIRED → 4 DEADLINE_EXCEEDED, CANCELLED → 1 CANCELLED.
  Per-request errors in results → 13 INTERNAL by default (``request_error_code``), and
  3 INVALID_ARGUMENT for a request without ``contents``. No ``details`` in statuses.
- A cancelled (or failed, or expired) batch keeps no partial output. ``batchStats``:
  FAILED counts every request as failed, EXPIRED as pending, CANCELLED freezes the
  progress at the moment of cancellation (progress is linear over the running time).
- Input validation: every non-blank line must be a JSON object with a ``request`` object
  (``key`` is optional and echoed when present); otherwise the batch FAILS when it starts.
  Blank lines are skipped. Inline requests are validated at create time (400).
- A rejected upload chunk (bad offset, size mismatch) carries ``X-Goog-Upload-Status:
  final`` so the SDK raises at once; an injected fault on ``files.upload_data`` does not,
  so the SDK re-sends the chunk as it would after a transient failure.
- Control paths (``/_emulator/...``, see ``control``) need no key and are not counted.
- Embeddings batches: the Operation's ``@type`` is ``...v1main.EmbedContentBatch`` (the
  response's ``...EmbedContentBatchOutput``); inline answers sit under
  ``output.inlinedResponses.inlinedResponses`` as for generation, and the SDK moves them to
  ``dest.inlined_embed_content_responses``. A request without ``content`` (or with an
  ``outputDimensionality`` outside 1..3072) gets a per-request error, code 3. Values are
  seeded by the text, 3072 by default, a prefix when fewer are asked for.
- ``batch.priority`` is echoed in the metadata as an int64 string when not 0;
  ``batch.webhookConfig`` is kept on the batch (``uris``, ``userMetadata``) but not echoed.
- Quirk switches (off by default, see ``switches``): shuffled inline answers, output that
  appears only ``output_delay_s`` after SUCCEEDED, files.get/delete refusing ids over 40
  characters, ``batchStats`` as numbers or missing.
"""

from __future__ import annotations

from gembatch.emulator.app import Emulator
from gembatch.emulator.config import EmulatorConfig, OutcomeRule, parse_rule
from gembatch.emulator.faults import ENDPOINTS, FaultInjector
from gembatch.emulator.stats import RequestRecord, StatsSnapshot
from gembatch.emulator.store import BatchStatus
from gembatch.emulator.switches import Switches
from gembatch.emulator.testing import running_emulator

__all__ = [
    "ENDPOINTS",
    "BatchStatus",
    "Emulator",
    "EmulatorConfig",
    "FaultInjector",
    "OutcomeRule",
    "RequestRecord",
    "StatsSnapshot",
    "Switches",
    "parse_rule",
    "running_emulator",
]
