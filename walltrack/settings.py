"""Settings from the environment and `.env` (pydantic-settings).

Every setting is listed, with a one-line comment, in `.env.example`. Secrets are `SecretStr`: they print
as `**********` and are handed to the log redactor (`walltrack.logs`) at start-up.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from actors.trades import is_base58_pubkey


class ConfigError(Exception):
    """A setting is missing or invalid: stop and tell the operator which one (never retried)."""


ALERT_EVENTS = ("entry", "entry_fill", "exit", "exit_fill", "exit_failed", "breaker_tripped", "supervisor_escalated",
                "webhook_stalled", "provider_down")  # Freqtrade's taxonomy (walltrack/alerts.py)


def _safety_checks() -> set[str]:
    from walltrack.safety import SafetyConfig  # lazy: settings load before anything else

    return set(SafetyConfig().weights)


class Settings(BaseSettings):
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

    copy_fixed_sol: Decimal = Field(default=Decimal("0.1"), gt=0)
    copy_fixed_usd: Decimal = Field(default=Decimal("20"), gt=0)
    # copy rules (actors/rules.py): the defaults every watched wallet can override (`walltrack wallets set`)
    copy_mode: Literal["off", "paper", "live"] | None = None  # None: TRADING_MODE
    copy_sizing: Literal["fixed", "percent"] = "fixed"
    copy_percent: Decimal = Field(default=Decimal("10"), gt=0, le=100)
    copy_min_sol: Decimal = Field(default=Decimal("0.01"), ge=0)
    copy_max_sol: Decimal = Field(default=Decimal("1"), gt=0)
    copy_min_usd: Decimal = Field(default=Decimal("2"), ge=0)
    copy_max_usd: Decimal = Field(default=Decimal("200"), gt=0)
    copy_leader_min_sol: Decimal | None = None
    copy_leader_max_sol: Decimal | None = None
    copy_min_liquidity_usd: float | None = None
    copy_min_market_cap_usd: float | None = None
    copy_max_market_cap_usd: float | None = None
    copy_max_pool_age_hours: float | None = None
    copy_blacklist: str = ""
    copy_allowed_sources: str = ""
    copy_active_hours: str | None = None
    copy_max_buys_per_token: int = Field(default=1, ge=1)
    copy_max_sol_per_token: Decimal | None = None
    copy_skip_add_ons: bool = True
    copy_slippage_bps: int = Field(default=100, ge=0, le=5000)
    copy_max_price_impact_pct: float | None = None

    # global caps and breakers (actors/risk.py); 0 disables one
    risk_starting_capital_sol: Decimal = Field(default=Decimal("10"), gt=0)
    risk_reserve_sol: Decimal = Field(default=Decimal("1"), ge=0)
    risk_max_open_positions: int = Field(default=10, ge=0)
    risk_max_token_exposure_sol: Decimal = Field(default=Decimal("0.5"), ge=0)
    risk_max_total_exposure_sol: Decimal = Field(default=Decimal("3"), ge=0)
    risk_max_trades_per_day: int = Field(default=100, ge=0)
    risk_sol_usd_fallback: Decimal = Field(default=Decimal("150"), gt=0)
    risk_reply_timeout_s: float = Field(default=10.0, gt=0)  # a wallet waits this long for a reservation, then skips
    breaker_max_drawdown_pct: Decimal = Field(default=Decimal("20"), ge=0, lt=100)
    breaker_drawdown_stop_hours: float = Field(default=12, ge=0)
    breaker_daily_loss_sol: Decimal = Field(default=Decimal("1"), ge=0)
    breaker_loss_streak: int = Field(default=4, ge=0)
    breaker_loss_streak_window_minutes: float = Field(default=360, gt=0)
    breaker_loss_streak_stop_minutes: float = Field(default=120, ge=0)
    breaker_stoploss_cooldown_minutes: float = Field(default=60, ge=0)
    breaker_wallet_loss_streak: int = Field(default=3, ge=0)
    breaker_wallet_pause_hours: float = Field(default=24, ge=0)  # 0: until an operator resets it
    stats_min_trades: int = Field(default=5, ge=1)  # a wallet is "unmeasured" until this many closed trades
    # supervision (actors/supervision.py): a child restarted more than N times within T seconds escalates
    supervisor_max_restarts: int = Field(default=3, ge=0)
    supervisor_period_s: float = Field(default=60.0, gt=0)
    supervisor_backoff_s: float = Field(default=0.2, ge=0)  # before the first restart; doubles for each next one
    supervisor_backoff_max_s: float = Field(default=10.0, ge=0)
    # the database as a supervised dependency (walltrack/dbsupervisor.py)
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

    @field_validator("copy_mode", "copy_leader_min_sol", "copy_leader_max_sol", "copy_min_liquidity_usd",
                     "copy_min_market_cap_usd", "copy_max_market_cap_usd", "copy_max_pool_age_hours", "copy_active_hours",
                     "copy_max_sol_per_token", "copy_max_price_impact_pct", mode="before")
    @classmethod
    def _empty_is_unset(cls, v: object) -> object:
        return None if v == "" else v

    @model_validator(mode="after")
    def _copy_rules_valid(self) -> "Settings":
        from actors.rules import RulesError

        try:
            copy_rules(self)
        except RulesError as exc:
            raise ValueError(f"copy rules: {exc}") from None
        return self

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

    # token safety (walltrack/safety.py): score threshold, limits, and the checks that reject on their own
    safety_enabled: bool = True
    safety_threshold: float = Field(default=0.9, ge=0, le=1)
    safety_weights: str = ""  # "check=weight,..." overrides of walltrack.safety.SafetyConfig.weights
    safety_hard_checks: str = "freeze_authority,sell_route,permanent_delegate,default_frozen,mint_authority,transfer_hook,transfer_fee"
    safety_min_liquidity_usd: float = Field(default=10_000, ge=0)
    safety_min_market_cap_usd: float = Field(default=10_000, ge=0)
    safety_max_market_cap_usd: float = Field(default=100_000_000, gt=0)
    safety_max_pool_age_hours: float = Field(default=720, gt=0)
    safety_max_top10_pct: float = Field(default=30, gt=0, le=100)
    safety_max_price_impact_pct: float = Field(default=3, gt=0)
    safety_source_timeout_s: float = Field(default=1.5, gt=0)  # a late copy is a bad copy
    safety_ttl_s: float = Field(default=300, ge=0)

    # the position engine (actors/position.py): exits, and honest paper fills (walltrack/executor.py)
    exit_stop_loss_pct: Decimal = Field(default=Decimal("25"), ge=0, lt=100)  # 0: no stop loss
    exit_take_profit: str = "50:0.5,100:0.5"  # ladder "gain_pct:fraction_of_entry,..."; empty: none
    exit_breakeven_after_first_tp: bool = True
    exit_trailing_activation_pct: Decimal = Field(default=Decimal("30"), ge=0)
    exit_trailing_distance_pct: Decimal = Field(default=Decimal("15"), ge=0, lt=100)  # 0: no trailing stop
    exit_trailing_step_pct: Decimal = Field(default=Decimal("2"), ge=0)
    exit_time_stop_s: float = Field(default=86_400, ge=0)  # 0: no time stop
    exit_emergency_min_liquidity_usd: Decimal = Field(default=Decimal("2000"), ge=0)  # 0: no emergency exit
    exit_stale_limit_s: float = Field(default=300, ge=0)
    exit_mirror_unknown: Literal["full", "proportional"] = "full"
    exit_retry_s: float = Field(default=30, gt=0)
    paper_slippage_bps: int = Field(default=100, ge=0, lt=10_000)
    paper_priority_fee_lamports: int = Field(default=10_000, ge=0)

    # live execution (walltrack/live.py, walltrack/verify.py): real swaps signed with the wallet key. Caps per live
    # entry, per UTC day and in total (actors/risk.py), and a SOL reserve the wallet keeps on chain for fees and rent.
    live_max_trade_sol: Decimal = Field(default=Decimal("0.25"), gt=0)
    live_max_daily_sol: Decimal = Field(default=Decimal("2"), ge=0)  # 0: no daily cap
    live_max_total_sol: Decimal = Field(default=Decimal("1"), ge=0)  # 0: no cap on open live exposure
    live_reserve_sol: Decimal = Field(default=Decimal("0.05"), ge=0)
    live_max_attempts: int = Field(default=3, ge=1, le=10)  # per swap, each re-quoted; then entry_failed / exit_failed
    live_retry_backoff_s: float = Field(default=1.0, gt=0)  # before the second attempt; doubles for each next one
    live_exit_max_slippage_bps: int = Field(default=1500, ge=0, le=5000)  # an exit_failed retry widens slippage to this
    live_commitment: Literal["confirmed", "finalized"] = "confirmed"
    live_skip_preflight: bool = False
    live_confirm_poll_ms: int = Field(default=400, ge=20)  # getSignatureStatuses, for every swap in flight at once
    live_rebroadcast_ms: int = Field(default=2000, ge=50)  # the same signed transaction again, until it lands or expires
    live_confirm_timeout_s: float = Field(default=120, gt=0)  # then the outcome is "unknown": watched again, never re-bought
    live_priority_level: Literal["medium", "high", "veryHigh"] = "high"
    live_priority_max_lamports: int = Field(default=200_000, ge=0)
    live_jito_tip_lamports: int = Field(default=0, ge=0)  # > 0: a Jito tip instead of the priority fee (never both)
    live_programs: str = ",".join((
        "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4", "11111111111111111111111111111111",
        "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA", "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb",
        "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL", "ComputeBudget111111111111111111111111111111"))
    live_simulate: bool = True  # our own simulateTransaction of each signed swap: the balance outcome is checked

    @field_validator("live_programs")
    @classmethod
    def _programs(cls, v: str) -> str:
        names = [p.strip() for p in v.split(",") if p.strip()]
        bad = [p for p in names if not is_base58_pubkey(p)]
        if bad or not names:
            raise ValueError(f"must be comma-separated program addresses (bad: {', '.join(bad) or 'none given'})")
        return ",".join(names)

    @field_validator("exit_take_profit")
    @classmethod
    def _ladder(cls, v: str) -> str:
        total = Decimal(0)
        for part in (p.strip() for p in v.split(",")):
            if not part:
                continue
            try:
                gain, fraction = (Decimal(x) for x in part.split(":"))
            except (ValueError, ArithmeticError):
                raise ValueError(f"expected gain_pct:fraction pairs, got {part!r}") from None
            if gain <= 0 or not 0 < fraction <= 1:
                raise ValueError(f"{part!r}: gain must be > 0 and fraction in (0, 1]")
            total += fraction
        if total > 1:
            raise ValueError("the ladder's fractions add up to more than 1")
        return v

    # operations (walltrack/operations.py): metrics, alerts, the Helius webhook kept in sync, stall detection,
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
        unknown = [e.strip() for e in v.split(",") if e.strip() and e.strip() not in ALERT_EVENTS]
        if unknown:
            raise ValueError(f"unknown event(s) {', '.join(unknown)}; one of {', '.join(ALERT_EVENTS)}")
        return v

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
        from walltrack.keys import BadKey, parse_keypair

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
            from walltrack.keys import BadKey, parse_keypair, read_key_file

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

    @field_validator("safety_weights")
    @classmethod
    def _weights(cls, v: str) -> str:
        known = _safety_checks()
        for part in filter(None, (p.strip() for p in v.split(","))):
            name, _, weight = part.partition("=")
            if name.strip() not in known:
                raise ValueError(f"unknown check {name.strip()!r}; one of {', '.join(sorted(known))}")
            try:
                if float(weight) < 0:
                    raise ValueError
            except ValueError:
                raise ValueError(f"weight of {name.strip()} must be a number >= 0") from None
        return v

    @field_validator("safety_hard_checks")
    @classmethod
    def _hard(cls, v: str) -> str:
        known = _safety_checks()
        unknown = [n.strip() for n in v.split(",") if n.strip() and n.strip() not in known]
        if unknown:
            raise ValueError(f"unknown check(s) {', '.join(unknown)}; one of {', '.join(sorted(known))}")
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
        """Every configured secret value, for the log redactor."""
        values = [
            s.get_secret_value()
            for s in (
                self.helius_webhook_secret,
                self.helius_api_key,
                self.jupiter_api_key,
                self.rugcheck_api_key,
                self.walltrack_panel_password,
                self.metrics_token,
                self.telegram_bot_token,
                self.alert_webhook_url,
            )
            if s is not None
        ]
        from urllib.parse import urlsplit

        from walltrack.keys import BadKey, key_text, secret_forms

        try:
            key = key_text(self)
        except BadKey:
            key = None
        if key:
            values.extend(secret_forms(key))  # every spelling of it: as given, base58, the JSON array
        if self.alert_webhook_url is not None:  # its path and query alone too (an error may print only those)
            parts = urlsplit(self.alert_webhook_url.get_secret_value())
            values += [p for p in (parts.path + (f"?{parts.query}" if parts.query else ""), parts.query) if len(p) >= 8]
        if self.database_url is not None:
            values.append(urlsplit(self.database_url.get_secret_value()).password or "")
        for url in self.cluster_nats_url.get_secret_value().split(",") if self.cluster_nats_url is not None else ():
            parts = urlsplit(url.strip())  # nats://user:password@host, or nats://token@host
            values.append(parts.password or parts.username or "")
        return [v for v in values if v]

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


def webhook_secret(settings: Settings) -> str:
    """The webhook secret: from HELIUS_WEBHOOK_SECRET, else generated once into the data directory.

    The webhook never runs open: without a configured secret a random one is created (mode 0600) and the
    operator reads it from that file to configure Helius' `authHeader`.
    """
    if settings.helius_webhook_secret is not None:
        return settings.helius_webhook_secret.get_secret_value()
    import secrets

    path = settings.walltrack_data_dir / "secrets" / "helius_webhook_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def copy_rules(s: Settings) -> "CopyRules":
    """The global copy defaults: each COPY_<NAME> setting is the rule <name> (mode follows TRADING_MODE)."""
    from actors.rules import CopyRules, RulesError
    from pydantic import ValidationError as _VE

    values = {name: getattr(s, f"copy_{name}") for name in CopyRules.model_fields if hasattr(s, f"copy_{name}")}
    values["mode"] = s.copy_mode or s.trading_mode
    try:
        return CopyRules.model_validate(values)
    except _VE as exc:
        raise RulesError("; ".join((f"COPY_{'_'.join(map(str, e['loc'])).upper()}: " if e["loc"] else "")
                                   + e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None


def risk_config(s: Settings) -> "RiskConfig":
    from actors.risk import RiskConfig

    return RiskConfig(
        starting_capital_sol=s.risk_starting_capital_sol,
        reserve_sol=s.risk_reserve_sol,
        max_open_positions=s.risk_max_open_positions,
        max_token_exposure_sol=s.risk_max_token_exposure_sol,
        max_total_exposure_sol=s.risk_max_total_exposure_sol,
        max_trades_per_day=s.risk_max_trades_per_day,
        sol_usd_fallback=s.risk_sol_usd_fallback,
        max_drawdown_pct=s.breaker_max_drawdown_pct,
        drawdown_stop_s=s.breaker_drawdown_stop_hours * 3600,
        daily_loss_sol=s.breaker_daily_loss_sol,
        loss_streak=s.breaker_loss_streak,
        loss_streak_window_s=s.breaker_loss_streak_window_minutes * 60,
        loss_streak_stop_s=s.breaker_loss_streak_stop_minutes * 60,
        stoploss_cooldown_s=s.breaker_stoploss_cooldown_minutes * 60,
        wallet_loss_streak=s.breaker_wallet_loss_streak,
        wallet_pause_s=s.breaker_wallet_pause_hours * 3600,
        live_max_trade_sol=s.live_max_trade_sol,
        live_max_daily_sol=s.live_max_daily_sol,
        live_max_total_sol=s.live_max_total_sol,
    )


def supervision(s: Settings) -> tuple["Intensity", "Backoff"]:
    """The root supervisor's restart intensity and backoff."""
    from actors.supervision import Backoff, Intensity

    return (Intensity(s.supervisor_max_restarts, s.supervisor_period_s),
            Backoff(s.supervisor_backoff_s, max(s.supervisor_backoff_s, s.supervisor_backoff_max_s)))


def caps_in_force(s: Settings) -> list[str]:
    """The caps and breakers every new entry must pass (risk_config) and the entry size, one line each, with the
    variable that sets it: what a confirmation of a trading-mode change states."""
    r, rules = risk_config(s), copy_rules(s)

    def sol(x: Decimal) -> str:
        return f"{x:f} SOL" if x else "off"

    def minutes(seconds: float) -> str:
        return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min"

    def stops(seconds: float) -> str:  # 0: the breaker holds until an operator resets it
        return f"stops entries {minutes(seconds)}" if seconds else "stops entries until reset"

    size = (f"fixed {rules.fixed_sol:f} SOL / {rules.fixed_usd:f} USD" if rules.sizing == "fixed" else
            f"{rules.percent:f}% of the leader's trade, {rules.min_sol:f}-{rules.max_sol:f} SOL")
    return [
        f"Max open positions: {r.max_open_positions or 'off'} (RISK_MAX_OPEN_POSITIONS)",
        f"Max exposure per token: {sol(r.max_token_exposure_sol)} (RISK_MAX_TOKEN_EXPOSURE_SOL)",
        f"Max total exposure: {sol(r.max_total_exposure_sol)} (RISK_MAX_TOTAL_EXPOSURE_SOL)",
        f"Max entries per UTC day: {r.max_trades_per_day or 'off'} (RISK_MAX_TRADES_PER_DAY)",
        f"Reserve kept: {r.reserve_sol:f} SOL of {r.starting_capital_sol:f} SOL starting capital (RISK_RESERVE_SOL)",
        f"Daily loss breaker: {sol(r.daily_loss_sol)} (BREAKER_DAILY_LOSS_SOL)",
        "Drawdown breaker: " + (f"{r.max_drawdown_pct:f}% from peak equity, {stops(r.drawdown_stop_s)}"
                                 if r.max_drawdown_pct else "off") + " (BREAKER_MAX_DRAWDOWN_PCT)",
        "Loss-streak breaker: " + (f"{r.loss_streak} losses within {minutes(r.loss_streak_window_s)}, "
                                   f"{stops(r.loss_streak_stop_s)}" if r.loss_streak else "off") + " (BREAKER_LOSS_STREAK)",
        "Wallet pause: " + (f"after {r.wallet_loss_streak} losses in a row, "
                             + (minutes(r.wallet_pause_s) if r.wallet_pause_s else "until reset")
                             if r.wallet_loss_streak else "off") + " (BREAKER_WALLET_LOSS_STREAK)",
        f"Token cooldown after a stop loss: {minutes(r.stoploss_cooldown_s) if r.stoploss_cooldown_s else 'off'}"
        " (BREAKER_STOPLOSS_COOLDOWN_MINUTES)",
        f"Entry size: {size} (COPY_SIZING)",
        f"Live: at most {s.live_max_trade_sol:f} SOL per entry (LIVE_MAX_TRADE_SOL), {sol(s.live_max_daily_sol)} per UTC day "
        f"(LIVE_MAX_DAILY_SOL), {sol(s.live_max_total_sol)} open in total (LIVE_MAX_TOTAL_SOL)",
        f"Live: {s.live_reserve_sol:f} SOL kept in the wallet for fees and rent (LIVE_RESERVE_SOL); "
        + ("a wallet key is configured" if s.has_wallet_key else "no wallet key configured: live is refused"),
    ]
