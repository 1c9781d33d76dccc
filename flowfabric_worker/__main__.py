"""``python -m flowfabric_worker``: the same command line as ``flowfabric-worker``."""

from flowfabric_worker.cli.parser import main

raise SystemExit(main())
