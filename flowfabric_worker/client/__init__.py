"""The submitting side: :class:`Client`, run and flow handles, the flow
builder, signal sending, stream reading and the keystore."""
