"""Engine roles any process may run (``flowfabric-worker scan``, and every
standalone worker unless ``--no-scanners``): the maintenance scanners, flow
resolution and cancellation, claim-time admission."""
