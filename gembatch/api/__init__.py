"""The Python API: ``gembatch.open()`` and the workspace it returns."""
