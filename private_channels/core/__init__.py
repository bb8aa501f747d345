"""What every ecosystem shares: the upload URL, archive reading, blobs, downloads, caches.

``pypi/``, ``cran/`` (and ``conda/``) hold only format knowledge; this package holds
everything else, once.  See ``docs/architecture.md``.
"""
