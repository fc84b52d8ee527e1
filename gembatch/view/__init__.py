"""What the user sees: the status table, the dashboard, the live loop, plain lines,
the timeline, table/JSON/CSV output.

Pure renderables from snapshots; reads the database through the data layer and
never calls the API (never imports ``gembatch.remote``), nor SQLAlchemy or click.
See docs/architecture.md.
"""
