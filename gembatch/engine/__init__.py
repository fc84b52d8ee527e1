"""The work: poll cycles, downloads, submit, cancel, cleanup, retry, the wired-up poll run, the
demo.
"""
