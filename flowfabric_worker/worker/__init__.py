"""The process that claims and runs: claim loop and scheduler, executor,
lease renewal, drain."""
