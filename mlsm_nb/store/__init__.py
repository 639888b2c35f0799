"""Where results go: the run directory (always) and MongoDB (when configured)."""
