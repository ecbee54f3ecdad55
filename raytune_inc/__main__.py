"""`python -m raytune_inc`: the `raytune-inc` command."""

import sys

from .cli import main

sys.exit(main())
