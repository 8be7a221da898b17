"""``python -m stella``: the same CLI as the ``stella`` console script."""

import sys

from stella.cli import main

sys.exit(main())
