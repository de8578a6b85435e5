"""``python -m probsym``: the same as the ``probsym`` command."""

import sys

from probsym.cli import main

sys.exit(main())
