"""How to reach the API: key and endpoint, from flags and the environment."""

from __future__ import annotations

import os

from gembatch.common.errors import BadInput

# The SDK's own order: GOOGLE_API_KEY wins when both are set.
KEY_ENVS = ("GOOGLE_API_KEY", "GEMINI_API_KEY")
BASE_URL_ENV = "GOOGLE_GEMINI_BASE_URL"


def api_key() -> str:
    for name in KEY_ENVS:
        value = os.environ.get(name, "").strip()
        if value:
            # It travels in an HTTP header: only printable ASCII can.
            if not (value.isascii() and value.isprintable()):
                raise BadInput(f"{name}: an API key is printable ASCII; this one is not")
            return value
    raise BadInput(
        "no API key: set GEMINI_API_KEY (or GOOGLE_API_KEY); "
        "for the local emulator any value works, e.g. GEMINI_API_KEY=local"
    )


def base_url(flag: str | None) -> str | None:
    """``--base-url``, else the SDK's ``GOOGLE_GEMINI_BASE_URL``, else the real API."""
    chosen = flag or os.environ.get(BASE_URL_ENV, "").strip() or None
    if chosen and not chosen.startswith(("http://", "https://")):
        raise BadInput(f"--base-url: expected an http(s) URL, got {chosen!r}")
    return chosen
