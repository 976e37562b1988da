"""``python -m bench``: run the benchmark (``--help`` for options)."""

import sys

from bench.run import main

sys.exit(main())
