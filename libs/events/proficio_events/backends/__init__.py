"""One module per storage backend of the log."""
