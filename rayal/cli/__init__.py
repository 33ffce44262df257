"""The ``rayal`` command."""
