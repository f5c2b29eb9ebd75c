"""Webhooks: endpoints admins manage, events written in the transaction of the change that
caused them (a transactional outbox), and deliveries signed per Standard Webhooks, retried
as jobs (`core.work`) and sent through the one outbound client (`core.outbound`).

Domains publish events with `publish(conn, type, data)` and declare their event types with
`declare_events`; nothing here knows which domain they come from.
"""

from wharf.core.webhooks.outbox import publish
from wharf.core.webhooks.service import declare_events

__all__ = ["declare_events", "publish"]
