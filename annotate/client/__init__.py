"""What a paid model backend needs around each request, below the backends: prices and usage, a
response cache, a rate limiter fed by the server's headers, and retries with backoff."""
