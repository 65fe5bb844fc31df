"""One module per method; importing this package registers every detector."""
from . import adacl, alps, baselines  # noqa: F401
