"""``python -m hil``: see hil/cli.py."""

import sys

from hil.cli import main

sys.exit(main())
