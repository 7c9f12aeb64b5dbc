"""python -m mcpedge.drift: see :mod:`mcpedge.drift`."""

import sys

from .cli import main

sys.exit(main())
