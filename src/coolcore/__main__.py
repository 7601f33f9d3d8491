"""``python -m coolcore``: the same as the ``coolcore`` command."""

import sys

from coolcore.cli.main import main

sys.exit(main())
