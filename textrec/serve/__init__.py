"""The HTTP API and the web page (``textrec serve``; needs the ``serve`` extra)."""
