"""Sending one e-mail over SMTP, and telling apart what became of it.

aiosmtplib rather than the standard library's smtplib in a thread: it is
asyncio-native (no thread per send, timeouts and cancellation work as for any
coroutine) and exposes each SMTP step (MAIL, RCPT, DATA) with its reply code,
which is what deciding "not sent" from "maybe sent" needs; it is small, typed
and maintained.

What a send can end in, and what the sender makes of it:

- accepted (the server answered 250 to the end of DATA): sent;
- ``SmtpPermanentError``: the server refused this message with a 5xx reply
  (every recipient refused, or DATA refused); not sent, and never will be;
- ``SmtpTransientError``: certainly not sent, and may be tried again: no
  connection, a 4xx reply, a refused login, TLS or sender, a timeout before
  DATA. Login, TLS and sender refusals are configuration problems that would
  fail every message alike: they wait for the operator rather than failing
  each notification for good. ``SmtpRecipientsDeferred``, one of them: every
  recipient of this message answered 4xx (not 421) to RCPT (a full mailbox,
  greylisting, a throttle): the server works, these recipients may not yet;
- ``SmtpUnknownOutcome``: the connection was lost or timed out while the
  message itself was being transferred; the server may have it. Never tried
  again (at most once).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime

import aiosmtplib

from connectors.notify.settings import NotifySettings
from models.notifications import clean_inline

#: An address we send to: printable ASCII without specials, and a host name.
_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


def valid_email(address: str) -> bool:
    """True for a plain ASCII address (``local@host``) that is safe in a header and an RCPT."""
    return len(address) <= 320 and _ADDRESS.match(address) is not None


def message_id(notification_id: str, domain: str) -> str:
    """``Message-ID`` of a notification: a pure function of its id (so a copy, if any, is recognisable)."""
    digest = hashlib.sha256(notification_id.encode()).hexdigest()[:40]
    return f"<ops.{digest}@{domain}>"


def build_message(
    *,
    notification_id: str,
    sender: str,
    recipients: list[str],
    subject: str,
    body: str,
    at: datetime | None = None,
) -> EmailMessage:
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = clean_inline(subject, 200)
    msg["Date"] = format_datetime(at or datetime.now(timezone.utc))
    msg["Message-ID"] = message_id(notification_id, sender.rpartition("@")[2])
    msg["X-Ops-Notification-Id"] = clean_inline(notification_id, 300)
    # RFC 3834: no auto-replies (vacation notices) to machine-sent mail.
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(body)
    return msg


class SmtpError(Exception):
    """Base of what a send can fail with."""


class SmtpPermanentError(SmtpError):
    """The server refused the message (5xx): not sent, never will be."""


class SmtpTransientError(SmtpError):
    """Certainly not sent; may be tried again later."""


class SmtpRecipientsDeferred(SmtpTransientError):
    """Every recipient answered 4xx to RCPT: not sent; may be tried again later."""


class SmtpUnknownOutcome(SmtpError):
    """Lost while the message was transferred: the server may have it."""


@dataclass
class SendProgress:
    """How far a send got; ``data_started`` once the message may have reached the server."""

    data_started: bool = False


@dataclass
class SendResult:
    accepted: list[str]
    refused: dict[str, str] = field(default_factory=dict)


def _reply(exc: aiosmtplib.SMTPResponseException) -> str:
    return f"{exc.code} {exc.message}".strip()


class SmtpClient:
    """Sends one message per connection (notifications are few; nothing to keep open)."""

    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings

    async def send(
        self, message: EmailMessage, recipients: list[str], progress: SendProgress | None = None
    ) -> SendResult:
        progress = progress if progress is not None else SendProgress()
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            timeout=s.smtp_timeout,
            # True: STARTTLS or refuse to go on; False: never (not opportunistic,
            # so what happens is what the setting says).
            start_tls=s.smtp_starttls,
        )
        try:
            try:
                await client.connect()
                if s.smtp_username:
                    password = s.smtp_password.get_secret_value() if s.smtp_password else ""
                    await client.login(s.smtp_username, password)
                await client.mail(s.smtp_from)
                accepted: list[str] = []
                refused: dict[str, str] = {}
                codes: list[int] = []
                for rcpt in recipients:
                    try:
                        await client.rcpt(rcpt)
                        accepted.append(rcpt)
                    except aiosmtplib.SMTPRecipientRefused as exc:
                        refused[rcpt] = _reply(exc)
                        codes.append(exc.code)
                if not accepted:
                    detail = "; ".join(f"{r}: {why}" for r, why in refused.items())
                    if codes and all(500 <= c < 600 for c in codes):
                        raise SmtpPermanentError(f"all recipients refused: {detail}")
                    if codes and 421 not in codes:  # 421: the server closes, whoever the recipient
                        raise SmtpRecipientsDeferred(f"recipients refused for now: {detail}")
                    raise SmtpTransientError(f"recipients refused for now: {detail}")
            except SmtpError:
                raise
            except aiosmtplib.SMTPResponseException as exc:
                # Before DATA: login, TLS, HELO or MAIL refused, whatever the code.
                raise SmtpTransientError(f"{type(exc).__name__}: {_reply(exc)}") from exc
            except (aiosmtplib.SMTPException, OSError) as exc:
                raise SmtpTransientError(f"{type(exc).__name__}: {exc}") from exc

            progress.data_started = True
            try:
                await client.data(message.as_bytes())
            except aiosmtplib.SMTPDataError as exc:
                # The server answered: it does not have the message.
                if 500 <= exc.code < 600:
                    raise SmtpPermanentError(f"message refused: {_reply(exc)}") from exc
                raise SmtpTransientError(f"message refused for now: {_reply(exc)}") from exc
            except (aiosmtplib.SMTPException, OSError) as exc:
                raise SmtpUnknownOutcome(f"{type(exc).__name__} during DATA: {exc}") from exc
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                pass  # the message was accepted; the goodbye does not matter
            return SendResult(accepted=accepted, refused=refused)
        finally:
            if client.is_connected:
                client.close()
