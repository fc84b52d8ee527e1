"""The one adapter to the Gemini Batch API: google-genai calls (``client``), their
errors, retries and shared throttle, wire parsing, streamed transfers, and the
key and endpoint (``config``).

The only code outside the emulator that imports google-genai; never imports
SQLAlchemy, click, rich or any other part but ``common``. See docs/architecture.md.
"""
