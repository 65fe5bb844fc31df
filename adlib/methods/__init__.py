"""One module per method; importing this package registers every detector."""
from . import adacl, adnl, alps, baselines, g2d, iwad, memae, oclr, peers  # noqa: F401
