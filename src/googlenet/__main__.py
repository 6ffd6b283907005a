"""`python -m googlenet`: the same command as `googlenet` (torchrun runs it this way)."""

import sys

from googlenet.cli import main

sys.exit(main())
