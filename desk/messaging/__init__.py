"""WhatsApp and SMS for the desk (not to be confused with Django Channels, the websocket layer).

- `base`: the adapter interface (send text, send a template, verify and parse an inbound webhook).
- `whatsapp` (Meta's WhatsApp Cloud API), `clickatell` (Clickatell One API, SMS and WhatsApp): adapters.
  Every HTTP call to a provider lives there, never inside a transaction.
- `outbox`: a message to the customer is written with an `OutboundDelivery` row in the same transaction; a
  Celery task (`tasks`) transmits it after commit, with retries and backoff, and beat picks up any row whose
  task was lost. `inbound`: what a verified webhook does (new or continued conversation, delivery status).
- `views`: /webhooks/whatsapp/ and /webhooks/clickatell/.
"""
