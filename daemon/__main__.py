"""`python -m clonusd.daemon ...` is the `clonusd` command."""

from clonusd.daemon.cli import main

raise SystemExit(main())
