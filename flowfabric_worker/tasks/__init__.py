"""What a task is, shared by every role: its spec and retry policy, the
payload codec, the budgets and quotas it is charged to, and the creation
call that submits it."""
