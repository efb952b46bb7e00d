"""``python -m ghostkit.cli``: the ``ghostkit`` command."""

import sys

from . import main

sys.exit(main())
