"""job-info.jsonl: parsing every historical line shape, the merge rules of an import,
and the canonical export.

Decides what a line means and what it changes; the data layer executes it. Never
imports SQLAlchemy, google-genai, click or rich. See docs/architecture.md.
"""
