"""Command-line interface ``pathosam-wsi``: one module per command, assembled in ``app.py``.

``options.py`` holds the option factories shared by commands and turns options into a
``RunConfig``; ``errors.py`` the one error path; ``progress.py`` the progress display.
"""

from pathosam_wsi.cli.app import main

__all__ = ["main"]
