"""Notifications by e-mail: the notifier (``ops-engine notifier``).

- ``settings``: ``NotifySettings`` (OPS_SMTP_*, OPS_ADMIN_EMAIL, OPS_DIGEST_*);
- ``smtp``: one message to an SMTP server, and what became of it;
- ``sender``: ``NotificationSender``, at most once per notification id;
- ``digest``: per-store digests of the ``alerts`` topic, store e-mail contacts;
- ``consumer``: ``run_notifier``, the Kafka consumer that drives them.

Rendering (templates) is pure and lives in ``models/notifications.py``.
"""
