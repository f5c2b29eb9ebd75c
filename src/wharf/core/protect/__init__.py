"""What protects the service in front of and around routing: the never-stale response
cache, rate limits and idempotency keys."""
