import pytest

from flowfabric_worker.backend.library import FFW, FLOWFABRIC, library_text

pytestmark = pytest.mark.anyio


async def test_version_answers_34(raw) -> None:  # type: ignore[no-untyped-def]
    assert await raw.execute_command("FCALL", "ff_version", 0) == b"34"
    assert await raw.execute_command("FCALL", "ffw_version", 0) == FFW.version.encode()


def test_library_text_starts_with_shebang() -> None:
    assert library_text(FLOWFABRIC).startswith("#!lua name=flowfabric\n")
    assert library_text(FFW).startswith("#!lua name=ffw\n")
