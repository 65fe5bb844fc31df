"""``python -m adlib``: see :mod:`adlib.bench`."""
import sys

from .bench import main

sys.exit(main())
