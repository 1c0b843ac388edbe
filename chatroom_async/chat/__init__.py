"""The chat room that ships with the package: the reference integration of `follow`.

`chatroom-async serve` (the `chat` extra: FastAPI + uvicorn) runs it: one HTML page and one
WebSocket endpoint (`app.py`), on the public API only. `docs/chat-room.md` explains it.
"""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
