"""One module per method; importing this package registers every detector."""
from . import adacl, alps, baselines, g2d  # noqa: F401
