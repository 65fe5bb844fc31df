"""One module per method; importing this package registers every detector."""
from . import adacl, baselines  # noqa: F401
