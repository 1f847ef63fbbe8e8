#!/usr/bin/env python3
"""valkyrie-bench: the entry point. The benchmark itself is the valkyrie_bench package
(valkyrie_bench/cli.py: the command line; docs/benchmarks.md: what each figure means), found
next to this script (source tree), in bench/ beside it (build tree), or where python3 finds
installed packages (install)."""
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
for d in (here, os.path.join(here, "bench")):
    if os.path.isfile(os.path.join(d, "valkyrie_bench", "cli.py")):
        sys.path.insert(0, d)
        break

from valkyrie_bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
