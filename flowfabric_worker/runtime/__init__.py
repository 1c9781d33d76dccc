"""Worker runtime: claiming, lease renewal, scanners and task contexts."""
