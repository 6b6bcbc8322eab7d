"""Offline evaluation of the retrieval modes (``textrec eval``), apart from the modes."""
