"""Everything a running task reaches through ``ctx``: signals and waits,
durable steps, children, output frames, usage reports."""
