"""Contract error codes (spec 01 §7.3) mapped to exception classes.

Every code the library can return maps to exactly one subclass of
:class:`~flowfabric_worker.errors.ContractError`; unknown codes map to
:class:`~flowfabric_worker.errors.UnknownContractError`.
"""

from __future__ import annotations

from ..errors import ContractError, UnknownContractError

__all__ = ["CODE_CLASSES", "error_for"]

# code -> class; completed by the full catalogue.
CODE_CLASSES: dict[str, type[ContractError]] = {}


def error_for(
    code: str,
    details: tuple[str, ...] = (),
    *,
    function: str = "",
    execution_id: str | None = None,
) -> ContractError:
    """The exception instance for a refusal ``[0, code, details...]``."""
    cls = CODE_CLASSES.get(code)
    if cls is None and ":" in code:
        cls = CODE_CLASSES.get(code.split(":", 1)[0] + ":")
    if cls is None:
        cls = UnknownContractError
    return cls(code, details, function=function, execution_id=execution_id)
