"""The ``textrec`` command line."""

from textrec.cli.main import main

__all__ = ["main"]
