"""Task authoring: the ``@task`` / ``@flow`` decorators and the
:class:`TaskDefinition` they return."""
