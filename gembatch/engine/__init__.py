"""The work: poll cycles and their per-job steps, downloads, submit, cancel, cleanup,
retry, the wired-up poll run and the demo.

Reads and writes only through the data layer (``gembatch.store``), calls the API
only through ``gembatch.remote``, and reports progress through
:mod:`gembatch.engine.progress`; never imports SQLAlchemy, click, rich, the view or
the report. See docs/architecture.md.
"""
