"""Settings from the environment and `.env` (pydantic-settings).

Every setting is listed, with a one-line comment, in `.env.example`. Secrets are `SecretStr`: they print
as `**********` and are handed to the log redactor (`walltrack.logs`) at start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from walltrack.settings_trading import TradingSettings, only


class ConfigError(Exception):
    """A setting is missing or invalid: stop and tell the operator which one (never retried)."""


ALERT_EVENTS = ("entry", "entry_fill", "exit", "exit_fill", "exit_failed", "breaker_tripped", "supervisor_escalated",
                "webhook_stalled", "provider_down")  # Freqtrade's taxonomy (operations/alerts.py)


class Settings(TradingSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    walltrack_data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("walltrack", appauthor=False))
    )
    database_url: SecretStr | None = None
    helius_webhook_secret: SecretStr | None = None
    wallet_private_key: SecretStr | None = None
    wallet_keypair_path: Path | None = None  # a Solana CLI key file (JSON byte array); preferred over WALLET_PRIVATE_KEY
    helius_api_key: SecretStr | None = None
    jupiter_api_key: SecretStr | None = None
    rugcheck_api_key: SecretStr | None = None

    trading_mode: Literal["paper", "live"] = "paper"
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8000, ge=0, le=65535)  # 0: any free port
    # the operator panel (ui/): loopback by default; any other address needs WALLTRACK_PANEL_PASSWORD
    panel_host: str = "127.0.0.1"
    panel_port: int = Field(default=8080, ge=0, le=65535)
    walltrack_panel_password: SecretStr | None = None
    webhook_max_bytes: int = Field(default=1024 * 1024, ge=1024)
    inbox_sweep_s: float = Field(default=120, gt=0)  # stored deliveries still unprocessed after this are handed out again

    # supervision (actors/supervision.py): a child restarted more than N times within T seconds escalates
    supervisor_max_restarts: int = Field(default=3, ge=0)
    supervisor_period_s: float = Field(default=60.0, gt=0)
    supervisor_backoff_s: float = Field(default=0.2, ge=0)  # before the first restart; doubles for each next one
    supervisor_backoff_max_s: float = Field(default=10.0, ge=0)
    # the database as a supervised dependency (storage/supervisor.py)
    database_recovery_window_s: float = Field(default=300.0, gt=0)  # unreachable this long: exit non-zero
    database_max_restarts: int = Field(default=5, ge=0)  # restarts of the embedded server within that window
    # the truth of a trade (actors/trades.py): a timestamp this far from the delivery's receipt is implausible
    trade_max_skew_s: float = Field(default=600.0, gt=0)
    # the actor runtime (actors/runtime.py): every actor's mailbox is drained by this many shared worker threads
    actor_workers: int = Field(default=4, ge=1, le=32)
    actor_throughput: int = Field(default=32, ge=1)  # messages one actor handles per turn before the others get theirs
    # distributed mode (walltrack/cluster/): wallets partitioned across nodes on NATS JetStream; off while unset
    cluster_nats_url: SecretStr | None = None  # nats://host:4222[,nats://host2:4222...]; may carry credentials
    cluster_node_id: str | None = None  # required with CLUSTER_NATS_URL: this node's unique name
    cluster_partitions: int = Field(default=64, ge=1, le=4096)  # the same on every node
    cluster_lease_ttl_s: float = Field(default=4.0, ge=1, le=300)  # a dead node's partitions move after this
    cluster_replicas: int = Field(default=3, ge=1, le=5)  # JetStream replicas of the streams and buckets

    # outbound services (mainnet defaults; the sandbox points these at itself)
    jupiter_base_url: str = "https://api.jup.ag"
    jupiter_tier: Literal["keyless", "free", "developer", "launch", "pro"] = "keyless"
    dexscreener_base_url: str = "https://api.dexscreener.com"
    rugcheck_base_url: str | None = None  # set to https://api.rugcheck.xyz to add RugCheck to the safety score
    solana_rpc_url: str = "https://api.mainnet-beta.solana.com"
    http_timeout_s: float = Field(default=5.0, gt=0)
    provider_cooldown_s: float = Field(default=30.0, gt=0)  # an open provider breaker lets a probe through after this
    provider_max_wait_s: float = Field(default=1.0, gt=0)  # a call that would queue longer for rate budget fails at once
    price_poll_s: float = Field(default=5.0, gt=0)
    price_max_age_s: float = Field(default=60.0, gt=0)

    # operations (operations/service.py): metrics, alerts, the Helius webhook kept in sync, stall detection,
    # backups, doctor
    metrics_token: SecretStr | None = None  # /metrics for other than loopback clients: "Authorization: Bearer <token>"
    telegram_bot_token: SecretStr | None = None
    telegram_chat_id: str | None = None
    telegram_api_url: str = "https://api.telegram.org"
    alert_webhook_url: SecretStr | None = None  # a generic JSON webhook (its URL may hold a token: a secret)
    alert_events: str = ",".join(ALERT_EVENTS)
    alert_coalesce_s: float = Field(default=5.0, ge=0)  # alerts within this window (and while rate-limited) are one message
    alert_max_per_minute: int = Field(default=10, ge=1)
    helius_api_url: str = "https://api.helius.xyz"
    helius_webhook_url: str | None = None  # the public URL Helius posts to; set it and walltrack manages the webhook
    helius_sync_debounce_s: float = Field(default=10.0, ge=0)
    webhook_stall_minutes: float = Field(default=10.0, ge=0)  # 0: no stall detection
    webhook_stall_poll_s: float = Field(default=60.0, gt=0)
    webhook_backfill_lookback_minutes: float = Field(default=60.0, gt=0)
    backup_dir: Path | None = None  # default: $WALLTRACK_DATA_DIR/backups
    backup_keep: int = Field(default=14, ge=1)
    doctor_max_clock_skew_s: float = Field(default=30.0, gt=0)
    doctor_min_free_mb: int = Field(default=1024, ge=0)

    @field_validator("telegram_chat_id", "helius_webhook_url", "backup_dir", "metrics_token", "telegram_bot_token",
                     "alert_webhook_url", "helius_api_key", mode="before")
    @classmethod
    def _empty_is_none(cls, v: object) -> object:
        return None if v == "" else v

    @field_validator("alert_events")
    @classmethod
    def _alert_events(cls, v: str) -> str:
        return only(v, ALERT_EVENTS, "event")

    @field_validator("helius_webhook_url")
    @classmethod
    def _public_https(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("https://"):
            raise ValueError("must be the public https:// URL Helius posts to (Helius refuses plain http and localhost)")
        return v

    @field_validator("telegram_api_url", "helius_api_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return v

    @model_validator(mode="after")
    def _telegram_pair(self) -> "Settings":
        if (self.telegram_bot_token is None) != (self.telegram_chat_id is None):
            raise ValueError("TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID go together: set both or neither")
        return self

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_max_bytes: int = Field(default=10 * 1024 * 1024, ge=4096)
    log_backups: int = Field(default=5, ge=0)

    @field_validator("helius_webhook_secret")
    @classmethod
    def _secret_strong_enough(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < 8:
            raise ValueError("must be at least 8 characters")
        return v

    @field_validator("wallet_private_key")
    @classmethod
    def _keypair_shape(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value().strip():
            return None
        from execution.keys import BadKey, parse_keypair

        try:
            parse_keypair(v.get_secret_value())
        except BadKey as exc:  # the message never echoes the value: it is the wallet key
            raise ValueError(f"{exc} (base58 text, or a JSON array of 64 bytes as in a Solana CLI key file)") from None
        return v

    @field_validator("wallet_keypair_path", mode="before")
    @classmethod
    def _empty_path(cls, v: object) -> object:
        return None if v == "" else v

    @model_validator(mode="after")
    def _one_key(self) -> "Settings":
        if self.wallet_keypair_path is not None:
            if self.wallet_private_key is not None:
                raise ValueError("set WALLET_KEYPAIR_PATH or WALLET_PRIVATE_KEY, not both")
            from execution.keys import BadKey, parse_keypair, read_key_file

            try:
                parse_keypair(read_key_file(self.wallet_keypair_path))
            except BadKey as exc:
                raise ValueError(f"WALLET_KEYPAIR_PATH: the key file {exc}") from None
        return self

    @property
    def has_wallet_key(self) -> bool:
        """A trading key is configured: live execution is available."""
        return self.wallet_keypair_path is not None or self.wallet_private_key is not None

    @field_validator("database_url")
    @classmethod
    def _pg_url(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value():
            return None
        if not v.get_secret_value().startswith(("postgres://", "postgresql://")):
            raise ValueError("must be a postgres:// or postgresql:// URL")
        return v

    @field_validator("cluster_nats_url")
    @classmethod
    def _nats_url(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value().strip():
            return None
        for url in v.get_secret_value().split(","):
            if not url.strip().startswith(("nats://", "tls://")):
                raise ValueError("must be nats:// or tls:// URLs, comma-separated")
        return v

    @model_validator(mode="after")
    def _cluster_node(self) -> "Settings":
        import re

        if self.cluster_nats_url is not None and not self.cluster_node_id:
            raise ValueError("CLUSTER_NODE_ID is required when CLUSTER_NATS_URL is set (a unique name per node)")
        if self.cluster_node_id and not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", self.cluster_node_id):
            raise ValueError("CLUSTER_NODE_ID: 1-32 letters, digits, '-' or '_'")
        return self

    @model_validator(mode="after")
    def _live_needs_key(self) -> "Settings":
        if self.trading_mode == "live" and not self.has_wallet_key:
            raise ValueError("WALLET_KEYPAIR_PATH or WALLET_PRIVATE_KEY is required when TRADING_MODE=live")
        return self

    def secrets(self) -> list[str]:
        """Every configured secret value, for the log redactor (walltrack/secrets.py)."""
        from walltrack.secrets import secret_values

        return secret_values(self)

    @property
    def log_dir(self) -> Path:
        return self.walltrack_data_dir / "logs"


def load_settings(**overrides: object) -> Settings:
    """Build settings or raise ConfigError with one line per bad variable, naming it."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_input=False, include_url=False):
            name = "_".join(str(p) for p in err["loc"]).upper() or "settings"
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{name}: {msg}" if name != "settings" else msg)
        raise ConfigError("invalid configuration: " + "; ".join(lines)) from None
