"""``python -m adlib``: ``bench``, ``table``, ``list`` and ``cost`` (:mod:`adlib.bench`), ``book``
(:mod:`adlib.book`), ``lab`` (:mod:`adlib.labs`); ``python -m adlib --help`` lists them."""
import sys

from .bench import main

sys.exit(main())
