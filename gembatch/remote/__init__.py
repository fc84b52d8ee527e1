"""The one adapter to the Gemini Batch API (google-genai), its retries, throttling and
configuration.
"""
