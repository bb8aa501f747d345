"""Python packages: the upload API twine and ``uv publish`` speak, and the simple index."""
