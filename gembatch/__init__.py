"""gembatch: track, poll, download and clean up Gemini Batch API jobs."""

__version__ = "0.1.0"
