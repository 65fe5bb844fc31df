"""``python -m adlib``: ``bench``, ``table`` and ``list`` (:mod:`adlib.bench`), ``book``
(:mod:`adlib.book`), ``lab`` (:mod:`adlib.labs`)."""
import sys

if len(sys.argv) > 1 and sys.argv[1] == "book":
    from .book import main
    sys.exit(main(sys.argv[2:]))

if len(sys.argv) > 1 and sys.argv[1] == "lab":
    from .labs import main
    sys.exit(main(sys.argv[2:]))

from .bench import main  # noqa: E402

sys.exit(main())
