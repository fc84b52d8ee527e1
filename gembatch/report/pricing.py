"""An estimated cost from token counts: a small price table the user can override.

The figures are an *estimate*. Prices change, some models price long prompts
higher (gemini-2.5-pro above 200k prompt tokens), and cached-content tokens are
billed differently; none of that is modelled here. Override any price with
``--price MODEL=INPUT,OUTPUT`` (US dollars per million tokens, before the batch
discount).
"""

from __future__ import annotations

from dataclasses import dataclass

from gembatch.common.errors import BadInput

# Shown under every cost figure, and carried in ``report --json``.
ESTIMATE_NOTE = (
    "Cost is an estimate: list prices per 1M tokens (thinking billed as output, "
    "embeddings bill input only), "
    "batch discount applied; override with --price MODEL=INPUT,OUTPUT."
)

# Standard (interactive) paid-tier prices in USD per 1M tokens, text input and
# text output, prompts up to 200k tokens. Source: https://ai.google.dev/gemini-api/docs/pricing
# as published in 2025. Thinking tokens are billed as output tokens.
PRICES: dict[str, tuple[float, float]] = {
    "gemini-2.5-pro": (1.25, 10.00),
    "gemini-2.5-flash": (0.30, 2.50),
    "gemini-2.5-flash-lite": (0.10, 0.40),
    "gemini-2.0-flash": (0.10, 0.40),
    "gemini-2.0-flash-lite": (0.075, 0.30),
    # Embeddings bill input tokens only (an embedding has no output tokens): $0.15
    # per 1M standard, $0.075 per 1M through the Batch API, i.e. the same 50% off.
    # Sources, read 2026-12-02: Google's launch post for the model
    # (developers.googleblog.com/en/gemini-embedding-available-gemini-api/, "$0.15 per
    # 1M input tokens") and the Batch API embeddings post of 2025-09-10
    # (developers.googleblog.com/gemini-batch-api-now-supports-embeddings-and-openai-compatibility,
    # "half the price - $0.075 per 1M input tokens"); the pricing page above lists the
    # same figures, as independent summaries of it dated April 2026 quote them (the page
    # itself was not reachable from here to read again).
    "gemini-embedding-001": (0.15, 0.0),
}
# The Batch API bills 50% of the interactive price (same source).
BATCH_DISCOUNT = 0.5
# jobs.kind of an embeddings batch: its tokens are all input tokens.
EMBED_KIND = "embed"


@dataclass(frozen=True, slots=True)
class Price:
    model: str  # the table entry that matched
    input_per_million: float
    output_per_million: float


class PriceTable:
    """Prices by model name; a model matches the longest entry it starts with.

    ``models/gemini-2.5-flash-lite-preview-06-17`` matches ``gemini-2.5-flash-lite``
    (not ``gemini-2.5-flash``): previews and dated versions share their family's price.
    """

    def __init__(
        self,
        prices: dict[str, tuple[float, float]] | None = None,
        *,
        discount: float = BATCH_DISCOUNT,
    ) -> None:
        self.prices = dict(PRICES if prices is None else prices)
        self.discount = discount

    def override(self, model: str, input_price: float, output_price: float) -> None:
        self.prices[normalize_model(model)] = (input_price, output_price)

    def lookup(self, model: str | None) -> Price | None:
        if not model:
            return None
        name = normalize_model(model)
        best = max(
            (entry for entry in self.prices if name == entry or name.startswith(entry + "-")),
            key=len,
            default=None,
        )
        if best is None:
            return None
        input_price, output_price = self.prices[best]
        return Price(best, input_price, output_price)

    def cost(
        self, model: str | None, prompt: int, output: int, thinking: int, *, kind: str = "generate"
    ) -> float | None:
        """Estimated USD with the batch discount; ``None`` when the model has no price.

        An embeddings job (``kind="embed"``) is billed for its input tokens alone.
        """
        price = self.lookup(model)
        if price is None:
            return None
        if kind == EMBED_KIND:
            output = thinking = 0
        full = (
            prompt * price.input_per_million + (output + thinking) * price.output_per_million
        ) / 1_000_000
        return full * (1.0 - self.discount)


def normalize_model(model: str) -> str:
    """``models/Gemini-2.5-Flash`` -> ``gemini-2.5-flash``."""
    return model.strip().removeprefix("models/").lower()


def parse_price(text: str) -> tuple[str, float, float]:
    """``gemini-2.5-flash=0.30,2.50`` -> (model, input, output); a one-line error otherwise."""
    model, sep, rest = text.partition("=")
    parts = rest.split(",")
    if not sep or not model.strip() or len(parts) != 2:
        raise BadInput(f"--price {text!r}: expected MODEL=INPUT,OUTPUT (USD per 1M tokens)")
    try:
        input_price, output_price = float(parts[0]), float(parts[1])
    except ValueError:
        raise BadInput(f"--price {text!r}: prices must be numbers") from None
    if input_price < 0 or output_price < 0:
        raise BadInput(f"--price {text!r}: prices cannot be negative")
    return model.strip(), input_price, output_price
