"""``python -m qnetlearn`` is the ``qnetlearn`` command."""
from .cli import main

raise SystemExit(main())
