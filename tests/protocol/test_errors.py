"""The contract error catalogue (spec 01 §7.3), listed here explicitly."""

from __future__ import annotations

import pytest

from flowfabric_worker.errors import ContractError, ErrorClass, UnknownContractError
from flowfabric_worker.protocol import errors as pe

T, R, C, I, B, E, S = "T", "R", "C", "I", "B", "E", "S"  # noqa: E741
_CLASS = {
    "T": ErrorClass.TERMINAL, "R": ErrorClass.RETRYABLE, "C": ErrorClass.COOPERATIVE,
    "I": ErrorClass.INFORMATIONAL, "B": ErrorClass.BUG, "E": ErrorClass.EXPECTED,
    "S": ErrorClass.SOFT,
}

# code, class, group, raw class (Class column), engine-level class
CATALOGUE: list[tuple[str, str, type[ContractError], str, str]] = [
    ("stale_lease", "StaleLease", pe.LeaseError, T, T),
    ("lease_expired", "LeaseExpired", pe.LeaseError, T, T),
    ("lease_revoked", "LeaseRevoked", pe.LeaseError, T, T),
    ("execution_not_active", "ExecutionNotActive", pe.LeaseError, T, R),
    ("no_active_lease", "NoActiveLease", pe.LeaseError, I, R),
    ("fence_required", "FenceRequired", pe.LeaseError, T, T),
    ("partial_fence_triple", "PartialFenceTriple", pe.LeaseError, T, T),
    ("active_attempt_exists", "ActiveAttemptExists", pe.LeaseError, B, T),
    ("use_claim_resumed_execution", "UseClaimResumedExecution", pe.ClaimError, R, R),
    ("not_a_resumed_execution", "NotAResumedExecution", pe.ClaimError, R, R),
    ("execution_not_leaseable", "ExecutionNotLeaseable", pe.ClaimError, R, R),
    ("lease_conflict", "LeaseConflict", pe.ClaimError, R, R),
    ("invalid_claim_grant", "InvalidClaimGrant", pe.ClaimError, R, R),
    ("claim_grant_expired", "ClaimGrantExpired", pe.ClaimError, R, R),
    ("no_eligible_execution", "NoEligibleExecution", pe.ClaimError, R, R),
    ("execution_not_eligible", "ExecutionNotEligible", pe.ClaimError, I, R),
    ("execution_not_in_eligible_set", "ExecutionNotInEligibleSet", pe.ClaimError, I, R),
    ("grant_already_exists", "GrantAlreadyExists", pe.ClaimError, I, I),
    ("execution_not_reclaimable", "ExecutionNotReclaimable", pe.ClaimError, I, R),
    ("capability_mismatch", "CapabilityMismatch", pe.ClaimError, R, T),
    ("invalid_capabilities", "InvalidCapabilities", pe.ClaimError, T, T),
    ("max_retries_exhausted", "MaxRetriesExhausted", pe.ClaimError, T, T),
    ("execution_not_eligible_for_attempt", "ExecutionNotEligibleForAttempt",
     pe.ClaimError, T, T),
    ("replay_not_allowed", "ReplayNotAllowed", pe.ClaimError, T, T),
    ("execution_not_suspended", "ExecutionNotSuspended", pe.SuspensionError, I, I),
    ("already_suspended", "AlreadySuspended", pe.SuspensionError, I, I),
    ("waitpoint_closed", "WaitpointClosed", pe.SignalError, I, I),
    ("waitpoint_not_found", "WaitpointNotFound", pe.SuspensionError, R, R),
    ("waitpoint_pending_use_buffer_script", "WaitpointPendingUseBufferScript",
     pe.SignalError, R, R),
    ("target_not_signalable", "TargetNotSignalable", pe.SignalError, T, T),
    ("waitpoint_already_exists", "WaitpointAlreadyExists", pe.SuspensionError, I, T),
    ("waitpoint_not_pending", "WaitpointNotPending", pe.SuspensionError, I, I),
    ("waitpoint_not_open", "WaitpointNotOpen", pe.SuspensionError, I, I),
    ("pending_waitpoint_expired", "PendingWaitpointExpired", pe.SuspensionError, I, I),
    ("invalid_waitpoint_for_execution", "InvalidWaitpointForExecution",
     pe.SuspensionError, T, T),
    ("waitpoint_not_token_bound", "WaitpointNotTokenBound", pe.SuspensionError, T, T),
    ("invalid_lease_for_suspend", "InvalidLeaseForSuspend", pe.SuspensionError, T, T),
    ("signal_limit_exceeded", "SignalLimitExceeded", pe.SignalError, T, T),
    ("use_pending_with_extras_unsupported", "UsePendingWithExtrasUnsupported",
     pe.SuspensionError, T, T),
    ("additional_waitpoint_binding_malformed", "AdditionalWaitpointBindingMalformed",
     pe.SuspensionError, T, T),
    ("duplicate_signal", "DuplicateSignal", pe.SignalError, I, I),
    ("payload_too_large", "PayloadTooLarge", pe.SignalError, T, T),
    ("invalid_waitpoint_key", "InvalidWaitpointKey", pe.SuspensionError, T, T),
    ("resume_condition_not_met", "ResumeConditionNotMet", pe.SuspensionError, T, T),
    ("missing_token", "MissingToken", pe.TokenError, T, T),
    ("invalid_token", "InvalidToken", pe.TokenError, T, T),
    ("token_expired", "TokenExpired", pe.TokenError, T, T),
    ("hmac_secret_not_initialized", "HmacSecretNotInitialized", pe.TokenError, T, T),
    ("invalid_secret", "InvalidSecret", pe.TokenError, T, T),
    ("invalid_keys_missing_hmac", "InvalidKeysMissingHmac", pe.TokenError, T, T),
    ("invalid_kid", "InvalidKid", pe.TokenError, T, T),
    ("invalid_secret_hex", "InvalidSecretHex", pe.TokenError, T, T),
    ("invalid_grace_ms", "InvalidGraceMs", pe.TokenError, T, T),
    ("rotation_conflict", "RotationConflict", pe.TokenError, T, T),
    ("stream_closed", "StreamClosed", pe.StreamError, T, T),
    ("stale_owner_cannot_append", "StaleOwnerCannotAppend", pe.StreamError, T, T),
    ("retention_limit_exceeded", "RetentionLimitExceeded", pe.StreamError, T, T),
    ("corruption", "Corruption", pe.StreamError, T, T),
    ("execution_not_terminal", "ExecutionNotTerminal", pe.StreamError, T, T),
    ("max_replays_exhausted", "MaxReplaysExhausted", pe.StreamError, T, T),
    ("stream_not_found", "StreamNotFound", pe.StreamError, E, T),
    ("stream_already_closed", "StreamAlreadyClosed", pe.StreamError, I, I),
    ("invalid_frame_type", "InvalidFrameType", pe.StreamError, S, T),
    ("invalid_offset", "InvalidOffset", pe.StreamError, R, T),
    ("attempt_not_found", "AttemptNotFound", pe.StreamError, T, T),
    ("attempt_not_in_created_state", "AttemptNotInCreatedState", pe.StreamError, B, B),
    ("attempt_not_started", "AttemptNotStarted", pe.StreamError, T, T),
    ("attempt_already_terminal", "AttemptAlreadyTerminal", pe.StreamError, I, I),
    ("flow_not_found", "FlowNotFound", pe.FlowError, T, T),
    ("execution_not_in_flow", "ExecutionNotInFlow", pe.FlowError, T, T),
    ("execution_already_in_flow", "ExecutionAlreadyInFlow", pe.FlowError, T, T),
    ("flow_already_terminal", "FlowAlreadyTerminal", pe.FlowError, T, T),
    ("stale_graph_revision", "StaleGraphRevision", pe.FlowError, R, R),
    ("dependency_already_exists", "DependencyAlreadyExists", pe.FlowError, T, T),
    ("self_referencing_edge", "SelfReferencingEdge", pe.FlowError, T, T),
    ("cycle_detected", "CycleDetected", pe.FlowError, T, T),
    ("invalid_dependency", "InvalidDependency", pe.FlowError, T, T),
    ("deps_not_satisfied", "DepsNotSatisfied", pe.FlowError, I, I),
    ("not_blocked_by_deps", "NotBlockedByDeps", pe.FlowError, I, I),
    ("not_runnable", "NotRunnable", pe.FlowError, T, T),
    ("terminal", "Terminal", pe.FlowError, T, T),
    # spec 04 §1: the Python SDK maps these two to the Bug / Validation kinds
    ("invariant_violation", "InvariantViolation", pe.FlowError, T, B),
    ("invalid_args", "InvalidArgs", pe.ValidationContractError, T, T),
    ("invalid_blocking_reason", "InvalidBlockingReason", pe.ValidationContractError, T, T),
    ("invalid_input", "ContractInvalidInput", pe.ValidationContractError, T, T),
    ("invalid_policy_json", "InvalidPolicyJson", pe.ValidationContractError, T, T),
    ("invalid_tag_key", "InvalidTagKey", pe.ValidationContractError, T, T),
    ("execution_not_found", "ExecutionNotFound", pe.ExecutionContractError, T, T),
    ("budget_exceeded", "BudgetExceeded", pe.BudgetError, C, C),
    ("budget_soft_exceeded", "BudgetSoftExceeded", pe.BudgetError, I, I),
    ("ok_already_applied", "OkAlreadyApplied", pe.BudgetError, I, I),
    ("rate_limit_exceeded", "RateLimitExceeded", pe.AdmissionError, R, R),
    ("concurrency_limit_exceeded", "ConcurrencyLimitExceeded", pe.AdmissionError, R, R),
    ("budget_not_found", "BudgetNotFound", pe.BudgetError, T, T),
    ("quota_policy_not_found", "QuotaPolicyNotFound", pe.BudgetError, T, T),
    ("invalid_budget_scope", "InvalidBudgetScope", pe.BudgetError, T, T),
    ("budget_override_not_allowed", "BudgetOverrideNotAllowed", pe.BudgetError, T, T),
    ("invalid_quota_spec", "InvalidQuotaSpec", pe.BudgetError, T, T),
    ("unauthorized", "Unauthorized", pe.ValidationContractError, T, T),
    ("budget_attach_conflict", "BudgetAttachConflict", pe.BudgetError, T, T),
    ("quota_attach_conflict", "QuotaAttachConflict", pe.BudgetError, T, T),
    ("nondeterministic_step", "NondeterministicStep", pe.CodedContractError, T, T),
    # recurring schedules (ffw library, our extension)
    ("schedule_not_found", "ScheduleNotFound", pe.CodedContractError, T, T),
    ("schedule_exists", "ScheduleExists", pe.CodedContractError, T, T),
]


@pytest.mark.parametrize(("code", "name", "group", "raw", "engine"), CATALOGUE)
def test_code_maps_to_its_class(
    code: str, name: str, group: type[ContractError], raw: str, engine: str
) -> None:
    exc = pe.error_for(code, ("d1",), function="ff_x", execution_id="e")
    assert type(exc).__name__ == name
    assert isinstance(exc, group) and isinstance(exc, ContractError)
    assert exc.code == code and exc.details == ("d1",)
    assert exc.function == "ff_x" and exc.execution_id == "e"
    assert isinstance(exc, pe.CodedContractError)
    assert exc.raw_class is _CLASS[raw]
    assert exc.error_class is _CLASS[engine]
    assert getattr(pe, name) is type(exc)


def test_every_code_has_its_own_class() -> None:
    classes = [type(pe.error_for(c)) for c, *_ in CATALOGUE]
    assert len(set(classes)) == len(classes)
    prefixed = type(pe.error_for("already_member_of_different_flow:x"))
    assert prefixed not in classes
    # the catalogue above plus the one prefix code is the whole map
    assert set(pe.CODE_CLASSES) == {c for c, *_ in CATALOGUE} | {
        "already_member_of_different_flow:"
    }


def test_the_eleven_spec_codes_plus_invariant_violation_differ_by_level() -> None:
    differing = {c for c, _, _, raw, eng in CATALOGUE if raw != eng}
    assert differing == {
        "execution_not_active", "execution_not_eligible", "execution_not_in_eligible_set",
        "execution_not_reclaimable", "no_active_lease", "capability_mismatch",
        "invalid_offset", "invalid_frame_type", "stream_not_found",
        "waitpoint_already_exists", "active_attempt_exists", "invariant_violation",
    }


def test_already_member_of_different_flow_keeps_the_flow_id() -> None:
    exc = pe.error_for("already_member_of_different_flow:0b4d3c0e-7f62-4a53-9a8e-0c1d2e3f4a5b")
    assert isinstance(exc, pe.AlreadyMemberOfDifferentFlow)
    assert isinstance(exc, pe.ExecutionAlreadyInFlow)
    assert exc.flow_id == "0b4d3c0e-7f62-4a53-9a8e-0c1d2e3f4a5b"
    assert exc.error_class is ErrorClass.TERMINAL


def test_execution_not_active_details_are_parsed() -> None:
    exc = pe.error_for("execution_not_active", ("success", "1", "terminal", "aid"))
    assert isinstance(exc, pe.ExecutionNotActive)
    assert (exc.terminal_outcome, exc.lease_epoch, exc.lifecycle_phase, exc.attempt_id) == (
        "success", 1, "terminal", "aid"
    )
    empty = pe.error_for("execution_not_active", ("", "", "", ""))
    assert isinstance(empty, pe.ExecutionNotActive)
    assert empty.lease_epoch is None and empty.attempt_id == ""
    short = pe.ExecutionNotActive()
    assert short.code == "execution_not_active" and short.terminal_outcome == ""


def test_detail_helpers() -> None:
    cm = pe.error_for("capability_mismatch", ("gpu,linux",))
    assert isinstance(cm, pe.CapabilityMismatch) and cm.missing == ["gpu", "linux"]
    dn = pe.error_for("deps_not_satisfied", ("2", "3"))
    assert isinstance(dn, pe.DepsNotSatisfied) and (dn.unsatisfied, dn.unresolved) == (2, 3)


def test_unknown_code_keeps_code_and_details() -> None:
    exc = pe.error_for("brand_new_code", ("a", "b"), function="ff_y")
    assert type(exc) is UnknownContractError
    assert exc.code == "brand_new_code" and exc.details == ("a", "b")
    assert "brand_new_code" in str(exc)
    unknown_prefixed = pe.error_for("something:else")
    assert type(unknown_prefixed) is UnknownContractError
    assert unknown_prefixed.code == "something:else"


def test_caught_by_common_names() -> None:
    with pytest.raises(pe.LeaseError):
        raise pe.error_for("stale_lease")
    assert pe.StaleLease().retryable is False
    assert pe.LeaseConflict().retryable is True
