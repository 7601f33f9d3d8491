"""Speed and memory of coolcore, side by side: the same as ``coolcore bench``.

Usage::

    python benchmarks/bench.py [--json bench.json] [--quick] [--repeats 5] [--device cpu]

See ``docs/performance.md`` for the method, the targets and the latest figures.
"""

from __future__ import annotations

import sys

from coolcore.cli.bench import main

if __name__ == "__main__":
    sys.exit(main())
