"""The bot's secrets: every configured secret value (what the log redactor masks), and the webhook secret,
generated once into the data directory when none is configured."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from execution.keys import BadKey, key_text, secret_forms
from walltrack.settings import Settings


def secret_values(s: Settings) -> list[str]:
    """Every configured secret value in every spelling an error or a log line could print."""
    values = [
        v.get_secret_value()
        for v in (
            s.helius_webhook_secret,
            s.helius_api_key,
            s.jupiter_api_key,
            s.rugcheck_api_key,
            s.walltrack_panel_password,
            s.metrics_token,
            s.telegram_bot_token,
            s.alert_webhook_url,
        )
        if v is not None
    ]
    try:
        key = key_text(s)
    except BadKey:
        key = None
    if key:
        values.extend(secret_forms(key))  # every spelling of it: as given, base58, the JSON array
    if s.alert_webhook_url is not None:  # its path and query alone too (an error may print only those)
        parts = urlsplit(s.alert_webhook_url.get_secret_value())
        values += [p for p in (parts.path + (f"?{parts.query}" if parts.query else ""), parts.query) if len(p) >= 8]
    if s.database_url is not None:
        values.append(urlsplit(s.database_url.get_secret_value()).password or "")
    for url in s.cluster_nats_url.get_secret_value().split(",") if s.cluster_nats_url is not None else ():
        parts = urlsplit(url.strip())  # nats://user:password@host, or nats://token@host
        values.append(parts.password or parts.username or "")
    return [v for v in values if v]


def webhook_secret(settings: Settings) -> str:
    """The webhook secret: from HELIUS_WEBHOOK_SECRET, else generated once into the data directory.

    The webhook never runs open: without a configured secret a random one is created (mode 0600) and the
    operator reads it from that file to configure Helius' `authHeader`.
    """
    if settings.helius_webhook_secret is not None:
        return settings.helius_webhook_secret.get_secret_value()
    path = settings.walltrack_data_dir / "secrets" / "helius_webhook_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()
