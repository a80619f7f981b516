"""Orchestration above the backends: build the configured backend a command runs, choose and plan
the episodes, run them as a resumable job (runner), estimate the cost, show progress, and the
OpenAI Batch API."""
