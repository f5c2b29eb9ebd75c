"""The HTTP contract: ASGI helpers, the contract layer, error handlers, JSON and problem
responses, the OpenAPI document, observability and /metrics, health probes, conditional
requests, and the base classes of request bodies."""
