"""adlib: the thin library behind the anomaly-detection book.

Modules: :mod:`adlib.data` (finding, checking and caching datasets), :mod:`adlib.protocols`
(one-class and contaminated splits), :mod:`adlib.metrics`, :mod:`adlib.training`,
:mod:`adlib.detectors` (the detector contract and deep training loop), :mod:`adlib.registry`,
:mod:`adlib.methods` (one module per method), :mod:`adlib.results` and :mod:`adlib.bench`
(benchmark rows with provenance), :mod:`adlib.papers` (the papers' published numbers) and
:mod:`adlib.plots` (figures shared by the chapters).
"""
__version__ = "0.1.0"

from .registry import available_detectors, get_detector  # noqa: E402,F401
