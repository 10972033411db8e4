"""Mail out: rendered and queued in the caller's transaction (outbox), then sent by
the worker over SMTP, with retries decided apart from the sending."""
