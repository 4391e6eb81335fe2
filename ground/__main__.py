import sys

from ground.cli import main

sys.exit(main())
