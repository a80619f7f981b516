"""Sources, video access, the store, quality checks, exports: everything about the data."""
