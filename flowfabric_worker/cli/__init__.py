"""The ``flowfabric-worker`` command line."""
