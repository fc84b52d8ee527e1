"""The data layer: the schema, opening and migrating the database, every query and
write (one transaction each, with its event row), leases, the read-only SQL runner.

The only code that imports SQLAlchemy or the ORM models or opens a session; other
parts call its named functions, which return plain values. Never imports
google-genai, click or rich. See docs/architecture.md.
"""
