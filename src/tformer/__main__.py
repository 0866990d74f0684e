"""`python -m tformer ...` runs the `tformer` command, e.g. from a checkout with PYTHONPATH=src and no install."""

from tformer.cli.main import main

raise SystemExit(main())
