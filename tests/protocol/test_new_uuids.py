"""Lease and attempt ids minted for a claim round in one go
(``protocol.ids.new_uuids``): canonical random version-4 UUID text, as
``str(uuid.uuid4())`` gave, and all distinct."""

from __future__ import annotations

import uuid

from flowfabric_worker.protocol.ids import new_uuids


def test_ids_are_canonical_version_4_uuids() -> None:
    ids = new_uuids(5000)
    assert len(ids) == 5000 and len(set(ids)) == 5000
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == text  # lowercase, dashed: the canonical form


def test_no_ids_asked_none_made() -> None:
    assert new_uuids(0) == []
