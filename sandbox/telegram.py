"""The sandbox's alert endpoints: a fake Telegram Bot API and a generic webhook receiver, both recording the
request bodies they were sent so tests (and the demo's summary) see the real messages.

    /telegram/bot<token>/sendMessage   Bot API: JSON or form body with chat_id and text (<= 4096 characters)
    /telegram/bot<token>/getMe         Bot API: who the bot is (what `walltrack doctor` asks)
    /hooks/<name>                      any JSON POST

Telegram's answers are its real envelopes: `{"ok": true, "result": ...}`, or `{"ok": false, "error_code",
"description"}` with 401 for an unknown token and 400 for a missing chat or an empty or too long text.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from quart import Blueprint, Response, request

from sandbox.faults import Faults
from sandbox.server import faulty

MAX_TEXT = 4096
BOT_ID = 7_000_000_001


class Recorder:
    """What the endpoints were sent, thread-safe: `messages` (Telegram's sendMessage bodies), `hooks` (name, body)."""

    def __init__(self, token: str = "7000000001:sandbox-telegram-token") -> None:
        self.token = token
        self._lock = threading.Lock()
        self._messages: list[dict[str, Any]] = []
        self._hooks: list[tuple[str, Any]] = []

    @property
    def messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._messages)

    @property
    def hooks(self) -> list[tuple[str, Any]]:
        with self._lock:
            return list(self._hooks)

    def _add_message(self, body: dict[str, Any]) -> int:
        with self._lock:
            self._messages.append(body)
            return len(self._messages)

    def _add_hook(self, name: str, body: Any) -> None:
        with self._lock:
            self._hooks.append((name, body))


def _answer(status: int, body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _fail(code: int, description: str) -> Response:
    return _answer(code, {"ok": False, "error_code": code, "description": description})


async def _params() -> dict[str, Any]:
    if request.is_json:
        data = await request.get_json(silent=True)
        return data if isinstance(data, dict) else {}
    return dict(await request.form)


def telegram_blueprint(recorder: Recorder, faults: Faults) -> Blueprint:
    bp = Blueprint("telegram", __name__)

    @bp.route("/bot<token>/getMe", methods=["GET", "POST"])
    async def get_me(token: str) -> Response:
        if token != recorder.token:
            return _fail(401, "Unauthorized")
        return _answer(200, {"ok": True, "result": {"id": BOT_ID, "is_bot": True, "first_name": "WallTrack sandbox",
                                                    "username": "walltrack_sandbox_bot"}})

    @bp.post("/bot<token>/sendMessage")
    async def send_message(token: str) -> Response:
        if token != recorder.token:
            return _fail(401, "Unauthorized")
        params = await _params()
        chat, text = params.get("chat_id"), params.get("text")
        if chat in (None, ""):
            return _fail(400, "Bad Request: chat_id is empty")
        if not isinstance(text, str) or not text.strip():
            return _fail(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT:
            return _fail(400, "Bad Request: message is too long")
        number = recorder._add_message(params)
        return _answer(200, {"ok": True, "result": {
            "message_id": number, "date": int(time.time()), "text": text,
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "WallTrack sandbox"},
            "chat": {"id": chat, "type": "private"}}})

    return faulty(bp, faults)


def hooks_blueprint(recorder: Recorder, faults: Faults) -> Blueprint:
    bp = Blueprint("hooks", __name__)

    @bp.post("/<name>")
    async def hook(name: str) -> Response:
        body = await request.get_json(silent=True)
        if body is None:
            return _answer(400, {"error": "invalid_json"})
        recorder._add_hook(name, body)
        return _answer(200, {"received": True})

    return faulty(bp, faults)
