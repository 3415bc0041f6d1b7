"""The ``lendml`` command line: thin calls into the Python API."""
