"""`python -m services.cli`: what the `creditledger` script runs (tests start services so)."""

import sys

from services.cli import main

sys.exit(main())
