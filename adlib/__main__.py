"""``python -m adlib``: the command line of :mod:`adlib.cli` (``bench``, ``table``, ``list``,
``cost``, ``fit``, ``score``, ``book``, ``lab``); ``python -m adlib --help`` lists them."""
import sys

from .cli import main

sys.exit(main())
