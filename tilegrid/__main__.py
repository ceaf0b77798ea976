"""`python -m tilegrid` is the `tilegrid` command."""
import sys

from tilegrid.cli import console_main

sys.exit(console_main())
