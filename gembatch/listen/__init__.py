"""``gembatch listen``: a webhook receiver that turns the API's batch events into polls.

The third-party libraries this part stands on (uvicorn for the ASGI server,
``standardwebhooks`` for the HMAC scheme, PyJWT with ``cryptography`` for RS256 tokens) come
with the optional ``listen`` extra. Nothing here imports them at module level: the modules
that need them import them inside their functions, after :func:`require_extra` has said, in
one line, what to install if they are missing.
"""

from __future__ import annotations

import importlib

from gembatch.common.errors import BadInput

# The import name of each library, and the distribution that provides it.
EXTRA_MODULES = (("uvicorn", "uvicorn"), ("standardwebhooks", "standardwebhooks"), ("jwt", "PyJWT"))


class MissingExtra(BadInput):
    """The ``listen`` extra is not installed (exit 2, like any other usage problem)."""


def require_extra() -> None:
    """Raise :class:`MissingExtra` naming what is missing, unless every library imports."""
    missing: list[str] = []
    for module, distribution in EXTRA_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(distribution)
    if not missing:
        try:
            crypto = importlib.import_module("jwt.algorithms").has_crypto
        except ImportError:
            crypto = False
        if not crypto:
            missing.append("cryptography")
    if missing:
        raise MissingExtra(
            f"gembatch listen needs {', '.join(missing)}: pip install 'gembatch[listen]'"
        )
