"""`python -m tilegrid` is the `tilegrid` command."""
import sys

from tilegrid.cli import main

sys.exit(main())
