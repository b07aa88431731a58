"""The trading wallet's key: one object that can sign and tell its public address, and nothing else.

Loaded from `WALLET_KEYPAIR_PATH` (a Solana CLI key file: a JSON array of 64 bytes, e.g. from
`solana-keygen new -o key.json`) or `WALLET_PRIVATE_KEY` (the same JSON array, or the base58 text wallets
export). It prints masked, refuses to be pickled or copied, and its secret is handed only to the log redactor
(`secret_forms`), never returned to anyone else. Parse errors never echo the input.

    key = WalletKey.from_settings(settings)       # None when no key is configured
    key.address                                    # the public address (base58)
    tx = key.sign_transaction(unsigned)            # a solders VersionedTransaction with our signature in place
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NoReturn

from solders.keypair import Keypair
from solders.message import to_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction


class BadKey(ValueError):
    """The key text or file is not a Solana keypair. The message never contains the key."""


def parse_keypair(text: str) -> Keypair:
    """A keypair from a JSON byte array (Solana CLI key file) or base58 text. Raises BadKey without echoing."""
    text = text.strip()
    if not text:
        raise BadKey("is empty")
    if text.startswith("["):
        try:
            values = json.loads(text)
        except ValueError:
            raise BadKey("is not a JSON byte array") from None
        if not (isinstance(values, list) and len(values) == 64
                and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in values)):
            raise BadKey("must be a JSON array of 64 integers 0-255 (a Solana CLI key file)")
        raw = bytes(values)
        return _from_bytes(raw)
    try:
        pair = Keypair.from_base58_string(text)
    except BaseException as exc:  # noqa: BLE001 - solders may panic (a BaseException) on junk
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise BadKey("is not a base58-encoded 64-byte Solana keypair") from None
    return _checked(pair, bytes(pair))


def _from_bytes(raw: bytes) -> Keypair:
    try:
        pair = Keypair.from_bytes(raw)
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise BadKey("is not a valid ed25519 keypair") from None
    return _checked(pair, raw)


def _checked(pair: Keypair, raw: bytes) -> Keypair:
    """The 64 bytes are secret ‖ public: a public half that does not match the secret is a corrupt file."""
    if bytes(pair.pubkey()) != raw[32:]:
        raise BadKey("its public half does not match its secret half")
    return pair


def read_key_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadKey(f"cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise BadKey("is not a text key file") from None


def secret_forms(text: str) -> list[str]:
    """Every way the key may be written (as given, base58, the JSON array, compact and spaced): for the redactor."""
    try:
        pair = parse_keypair(text)
    except BadKey:
        return [text.strip()] if text.strip() else []
    raw = list(bytes(pair))
    return [text.strip(), str(pair), json.dumps(raw), json.dumps(raw, separators=(",", ":")),
            ",".join(str(b) for b in raw)]


class WalletKey:
    """Signs with the trading wallet's key; shows only its public address."""

    __slots__ = ("_pair",)

    def __init__(self, pair: Keypair) -> None:
        object.__setattr__(self, "_pair", pair)

    @classmethod
    def parse(cls, text: str) -> "WalletKey":
        return cls(parse_keypair(text))

    @classmethod
    def from_settings(cls, settings: Any) -> "WalletKey | None":
        """WALLET_KEYPAIR_PATH, else WALLET_PRIVATE_KEY; None when neither is set (live execution unavailable)."""
        text = key_text(settings)
        return cls.parse(text) if text else None

    @property
    def pubkey(self) -> Pubkey:
        return self._pair.pubkey()

    @property
    def address(self) -> str:
        return str(self._pair.pubkey())

    def sign_message(self, message: bytes) -> Signature:
        return self._pair.sign_message(message)

    def sign_transaction(self, tx: VersionedTransaction) -> VersionedTransaction:
        """`tx` with our signature in our signer slot; the other signers' signatures are kept as they are."""
        message = tx.message
        keys = list(message.account_keys)
        signers = message.header.num_required_signatures
        try:
            index = keys.index(self._pair.pubkey())
        except ValueError:
            raise BadKey("the transaction does not name this wallet") from None
        if index >= signers:
            raise BadKey("this wallet is not a required signer of the transaction")
        signatures = list(tx.signatures)
        signatures[index] = self._pair.sign_message(to_bytes_versioned(message))
        return VersionedTransaction.populate(message, signatures)

    def __repr__(self) -> str:
        return f"WalletKey({self.address}, secret=***)"

    __str__ = __repr__

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError("WalletKey is immutable")

    def __reduce__(self) -> NoReturn:
        raise TypeError("the wallet key cannot be pickled or copied")

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("the wallet key cannot be pickled or copied")

    def __copy__(self) -> NoReturn:
        raise TypeError("the wallet key cannot be pickled or copied")

    def __deepcopy__(self, memo: Any) -> NoReturn:
        raise TypeError("the wallet key cannot be pickled or copied")


def key_text(settings: Any) -> str | None:
    """The configured key's text (from the key file or WALLET_PRIVATE_KEY), or None. For this module and the
    settings' validation and redaction only."""
    path = getattr(settings, "wallet_keypair_path", None)
    if path is not None:
        return read_key_file(Path(path))
    secret = getattr(settings, "wallet_private_key", None)
    value = secret.get_secret_value() if secret is not None else ""
    return value or None
