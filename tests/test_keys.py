"""The wallet key: loaded from base58 text, a JSON byte array or a Solana CLI key file; it signs and shows its
address, and nothing else — masked when printed, never pickled, never echoed in an error, every spelling of it
handed to the log redactor."""

from __future__ import annotations

import copy
import json
import logging
import pickle
from pathlib import Path
from typing import Any

import pytest
import structlog
from solders.hash import Hash
from solders.message import MessageV0, to_bytes_versioned
from solders.keypair import Keypair
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from execution.keys import BadKey, WalletKey, parse_keypair, secret_forms
from walltrack.logs import Redactor, configure_logging
from walltrack.settings import ConfigError, load_settings

KP = Keypair.from_seed(bytes(range(32)))
B58 = str(KP)
JSON = json.dumps(list(bytes(KP)))


@pytest.mark.parametrize("text", [B58, JSON, JSON.replace(" ", ""), f"  {B58}\n"])
def test_base58_and_json_byte_arrays_load_the_same_key(text: str) -> None:
    assert WalletKey.parse(text).address == str(KP.pubkey())


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("not-a-key", "base58"),
    ("[1, 2, 3]", "64 integers"),
    ("[" + ",".join(["300"] * 64) + "]", "64 integers"),
    ("[" + ",".join(["true"] * 64) + "]", "64 integers"),
    (json.dumps(list(bytes(KP))[:32] + list(bytes(Keypair().pubkey()))), "ed25519"),  # a corrupt file
])
def test_a_bad_key_is_refused_without_echoing_it(text: str, message: str) -> None:
    with pytest.raises(BadKey) as bad:
        parse_keypair(text)
    assert message in str(bad.value) and (not text or text not in str(bad.value))


def test_the_key_signs_and_shows_only_its_address() -> None:
    key = WalletKey.parse(B58)
    assert B58 not in repr(key) and B58 not in str(key) and "secret=***" in repr(key) and key.address in repr(key)
    assert key.sign_message(b"hello").verify(KP.pubkey(), b"hello")
    for attempt in (lambda: pickle.dumps(key), lambda: copy.copy(key), lambda: copy.deepcopy(key)):
        with pytest.raises(TypeError):
            attempt()
    with pytest.raises(AttributeError):
        key._pair = Keypair()  # type: ignore[misc]
    assert not any(name in dir(key) for name in ("secret", "to_bytes", "to_json"))


def test_it_signs_its_own_slot_and_keeps_the_other_signers() -> None:
    other = Keypair()
    ixs = [transfer(TransferParams(from_pubkey=KP.pubkey(), to_pubkey=other.pubkey(), lamports=1)),
           transfer(TransferParams(from_pubkey=other.pubkey(), to_pubkey=KP.pubkey(), lamports=1))]
    msg = MessageV0.try_compile(KP.pubkey(), ixs, [], Hash.default())
    theirs = other.sign_message(to_bytes_versioned(msg))
    tx = VersionedTransaction.populate(msg, [Signature.default(), theirs])
    signed = WalletKey.parse(JSON).sign_transaction(tx)
    assert signed.signatures[1] == theirs and all(signed.verify_with_results())
    stranger = MessageV0.try_compile(other.pubkey(), ixs[1:], [], Hash.default())
    with pytest.raises(BadKey):
        WalletKey.parse(B58).sign_transaction(VersionedTransaction.populate(stranger, [Signature.default()]))


def test_settings_load_the_key_from_a_cli_key_file_and_refuse_both_or_a_bad_one(tmp_path: Path) -> None:
    keyfile = tmp_path / "id.json"
    keyfile.write_text(JSON)
    s = load_settings(wallet_keypair_path=keyfile, _env_file=None)
    assert s.has_wallet_key and WalletKey.from_settings(s).address == str(KP.pubkey())  # type: ignore[union-attr]
    assert set(secret_forms(JSON)) <= set(s.secrets()) and B58 in s.secrets()
    with pytest.raises(ConfigError, match="not both"):
        load_settings(wallet_keypair_path=keyfile, wallet_private_key=B58, _env_file=None)
    keyfile.write_text(JSON[:-10])
    with pytest.raises(ConfigError) as bad:
        load_settings(wallet_keypair_path=keyfile, _env_file=None)
    assert "WALLET_KEYPAIR_PATH" in str(bad.value) and JSON[:30] not in str(bad.value)
    with pytest.raises(ConfigError) as bad:
        load_settings(wallet_private_key=B58[:-4] + "0OIl", _env_file=None)
    assert "WALLET_PRIVATE_KEY" in str(bad.value) and B58[:20] not in str(bad.value)
    with pytest.raises(ConfigError, match="required when TRADING_MODE=live"):
        load_settings(trading_mode="live", _env_file=None)


def test_every_spelling_of_the_key_is_redacted_from_logs(tmp_path: Path, capsys: Any) -> None:
    s = load_settings(wallet_private_key=JSON, walltrack_data_dir=tmp_path, _env_file=None)
    configure_logging(Redactor(s.secrets()), "INFO", tmp_path / "logs")
    log = structlog.get_logger("test")
    log.error("oops", given=JSON, b58=B58, compact=JSON.replace(" ", ""))
    logging.getLogger("x").error("raw %s", B58)
    out = capsys.readouterr().out + (tmp_path / "logs" / "walltrack.log").read_text()
    assert "oops" in out and "raw" in out
    assert not any(f in out for f in secret_forms(JSON))
