"""The seam between the feeds (``eowatch.adapters``) and the daemon (``eowatch.daemon``).

Both import this package and neither imports the other (import-linter checks it, see
pyproject.toml): ``messages`` is the contract on the bus, ``feeds`` what a feed is and what it
may ask of the daemon, ``registry`` how feeds are found and configured.
"""
