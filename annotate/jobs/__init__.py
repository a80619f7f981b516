"""What a paid annotation run needs around each request: prices, a response cache, a rate limiter,
retries with backoff, and the OpenAI Batch API."""
