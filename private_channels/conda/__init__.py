"""Conda packages: uploads, the conda channel (repodata, CEP-16 shards), yank and delete."""
