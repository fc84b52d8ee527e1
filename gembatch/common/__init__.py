"""Small pieces every part may use: atomic files, hashing, time, job states, errors
with exit codes, locations, and the value types two parts exchange (``batch``,
``snapshot``).

Imports no other part of gembatch, and none of SQLAlchemy, google-genai, click or
rich. See docs/architecture.md.
"""
