"""``python -m textrec``: the ``textrec`` command line."""

import sys

from textrec.cli import main

sys.exit(main())
