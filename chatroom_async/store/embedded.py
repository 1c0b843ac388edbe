"""The embedded Redis: an in-process fakeredis server, with a faster path for this package's
own Lua scripts.

fakeredis runs every script the general way: it compiles the source on each call, runs a
full Lua garbage collection after it, before each `redis.call` inside it scans the Lua
globals for variables the script should not have set, and converts the reply through probes
for every kind of table a script may return. A real Redis compiles a script once and
forbids globals when the script runs. For the scripts in `queue.SOURCES`, the very sources
the tests run on a real Redis (which would refuse a global), this module's connections
compile each script once per server, let Lua collect garbage incrementally as it normally
does, skip the scans of the globals, look each command up once per name, and convert
replies made of arrays, strings and numbers directly. Everything else (other scripts,
every other command, errors) takes fakeredis's own path. The simulator spends most of its
time inside these scripts; `docs/simulation.md` says what the change bought.

Two smaller savings on the same connections: `lane.Lane` hands a command over as its list
of fields (the server would otherwise parse RESP bytes it was just given), and a blocked
command (the idle worker's BLPOP) is woken by setting its event directly, not through the
event loop's self-pipe after every write to the database.

The path uses a few of fakeredis's internals. Where they are missing (a fakeredis that
changed them), `embedded_redis` falls back to the stock client and `FAST_SCRIPTS` is False:
slower, never different. A test checks that the pinned fakeredis takes the fast path.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable
from typing import Any

import fakeredis
from redis.asyncio import Redis

from .lane import pack_command
from .queue import SOURCES

try:  # fakeredis internals this path relies on; see the module docstring
    from fakeredis import _msgs as _fr_msgs
    from fakeredis._clients._async import FakeAsyncRedisConnection
    from fakeredis._commands import COMMANDS_WITH_SUB
    from fakeredis._helpers import NoResponse, SimpleError, decode_command_bytes
    from fakeredis._socket import AsyncFakeSocket
    from fakeredis.commands_mixins import scripting_mixin as _fr_scripting

    _REQUIRED = (
        (AsyncFakeSocket, ("_get_server_runtime", "_run_command",
                           "_convert_redis_result", "_name_to_func", "_lua_redis_call",
                           "_blocking", "_async_blocking", "pause", "_process_command")),
        (_fr_scripting, ("LUA_MODULE", "_convert_redis_arg",
                         "_get_lua_bad_command_arg_msg")),
        (_fr_msgs, ("SCRIPT_ERROR_MSG", "LUA_COMMAND_ARG_MSG", "WRONG_ARGS_MSG7")),
    )
    FAST_SCRIPTS = all(hasattr(owner, name) for owner, names in _REQUIRED for name in names)
except ImportError:  # pragma: no cover - only with a fakeredis that reorganised its modules
    FAST_SCRIPTS = False

#: The package's scripts, by source, with their SHA1 (what EVALSHA names them by).
_TRUSTED: dict[bytes, bytes] = {
    source.encode(): hashlib.sha1(source.encode()).hexdigest().encode()
    for source in SOURCES.values()
}


def embedded_redis() -> Redis:
    """A fresh in-process fakeredis server with Lua, as a `redis.asyncio` client."""
    server = fakeredis.FakeServer()
    if not FAST_SCRIPTS:  # pragma: no cover - see the module docstring
        return fakeredis.FakeAsyncRedis(server=server, decode_responses=True)
    return fakeredis.FakeAsyncRedis(server=server, decode_responses=True,
                                    connection_class=_Connection)


def _reply(value: Any) -> Any:
    """A script's return value as fakeredis's `_convert_lua_result` gives it, for values
    made only of arrays, strings, numbers and booleans, which is all the package's
    scripts return (so the probes for status, error, double and map tables are skipped)."""
    if _lua_type(value) == "table":
        items = []
        index = 1
        while (item := value[index]) is not None:
            items.append(_reply(item))
            index += 1
        return items
    if isinstance(value, bool):
        return 1 if value else None
    if isinstance(value, float):
        return int(value)  # Lua numbers become integers, as a real Redis replies
    return value


#: fakeredis's command signatures by the name a script passed to `redis.call`, for the
#: package's scripts on the embedded server (always a "redis" server: the lookup's check
#: of the server type holds for every entry).
_SIGNATURES: dict[bytes, Any] = {}

#: Blocked commands' tasks (BLPOP and the like), referenced until they end.
_BLOCKED: set[asyncio.Task[None]] = set()

if FAST_SCRIPTS:
    _lua_type = _fr_scripting.LUA_MODULE.lua_type

    class _Socket(AsyncFakeSocket):
        """fakeredis's socket, running the package's scripts compiled once."""

        _in_trusted_script = False

        def eval(self, script: bytes, numkeys: int, *keys_and_args: bytes) -> Any:
            sha1 = _TRUSTED.get(script)
            if sha1 is None or not 0 <= numkeys <= len(keys_and_args):
                return super().eval(script, numkeys, *keys_and_args)  # errors included
            server: Any = self._server
            runtime = self._get_server_runtime(server)
            compiled: dict[bytes, Any] = server.__dict__.setdefault("_chatroom_compiled", {})
            function = compiled.get(script)
            if function is None:
                function = compiled[script] = runtime.compile(script)
            server.script_cache[sha1] = script  # as EVAL does: EVALSHA finds it from now on
            server._lua_current_socket[0] = self
            self._script_resp = 2
            caller_fieldsets, self._fieldsets = self._fieldsets, {}
            server._lua_set_keys_argv(runtime.table_from(keys_and_args[:numkeys]),
                                      runtime.table_from(keys_and_args[numkeys:]))
            self._in_trusted_script = True
            try:
                result = function()
            except SimpleError as exc:  # a redis.call failed: the same reply as fakeredis's
                message = exc.value
                if message == _fr_msgs.LUA_COMMAND_ARG_MSG:
                    message = _fr_scripting._get_lua_bad_command_arg_msg(
                        server.server_type, self.version)
                elif self.version < (7,):
                    message = _fr_msgs.SCRIPT_ERROR_MSG.format(sha1.decode(), message)
                raise SimpleError(message) from None
            except _fr_scripting.LUA_MODULE.LuaError as exc:
                raise SimpleError(_fr_msgs.SCRIPT_ERROR_MSG.format(sha1.decode(), exc)) from None
            finally:
                self._in_trusted_script = False
                self._script_resp = None
                self._fieldsets = caller_fieldsets
            return _reply(result)

        def _lua_redis_call(self, lua_runtime: Any, expected_globals: set[Any], op: bytes,
                            *args: Any) -> Any:
            if not self._in_trusted_script:
                return super()._lua_redis_call(lua_runtime, expected_globals, op, *args)
            # fakeredis's own steps, less the scan of the Lua globals
            sig = _SIGNATURES.get(op)
            if sig is not None:  # a command seen before, by the name as the script wrote it
                func = getattr(self, sig.func_name)
            else:
                cmd = decode_command_bytes(op)
                if cmd in COMMANDS_WITH_SUB and args:
                    cmd += " " + decode_command_bytes(_fr_scripting._convert_redis_arg(args[0]))
                    args = args[1:]
                func, sig = self._name_to_func(cmd)
                if func is None:
                    raise SimpleError(_fr_msgs.WRONG_ARGS_MSG7)
                if " " not in cmd:  # a container command's name depends on its argument
                    _SIGNATURES[op] = sig
            converted = [_fr_scripting._convert_redis_arg(arg) for arg in args]
            result = self._run_command(func, sig, converted, True)
            return self._convert_redis_result(lua_runtime, result)

        def _blocking(self, timeout: float | None, func: Callable[[bool], Any],
                      shape: Callable[[Any], Any] | None = None) -> Any:
            # fakeredis's own, except the wake-up: it wakes a blocked command after every
            # write to the database with `call_soon_threadsafe`, a write to the event loop's
            # self-pipe each time. From the loop's own thread, setting the event is enough.
            loop = asyncio.get_running_loop()
            ret = func(True)
            if ret is not None or self._in_transaction:
                return ret if shape is None else shape(ret)
            event = asyncio.Event()
            loop_thread = threading.get_ident()

            def callback() -> None:
                if threading.get_ident() == loop_thread:
                    event.set()
                else:
                    loop.call_soon_threadsafe(event.set)

            self._db.add_change_callback(callback)
            self._blocked = True
            self.pause()
            blocked = loop.create_task(self._async_blocking(timeout, func, event, callback, shape))
            _BLOCKED.add(blocked)  # a reference until it ends, which fakeredis does not keep
            blocked.add_done_callback(_BLOCKED.discard)
            self._blocked_task = blocked
            return NoResponse()

    class _Connection(FakeAsyncRedisConnection):
        """fakeredis's connection, over `_Socket`, with `send_fields` for `lane.Lane`."""

        async def disconnect(self, nowait: bool = False, **kwargs: Any) -> None:  # type: ignore[override]
            # A real Redis drops a closed client's blocked command; fakeredis would let it
            # wait on and take the next item pushed (a wake-up meant for another worker).
            blocked = getattr(self._sock, "_blocked_task", None)
            if blocked is not None and not blocked.done():
                blocked.cancel()
            await super().disconnect(nowait=nowait, **kwargs)

        async def send_fields(self, fields: list[bytes]) -> None:
            """Send one command as its fields, without the trip through RESP bytes (the
            server would parse them straight back); the reply is read as usual."""
            if not self.is_connected:
                await self.connect()  # type: ignore[no-untyped-call]
            sock: Any = self._sock
            server: Any = self._server
            if sock is None or sock._paused or sock._killed or not server.connected:
                # blocked, or gone: the ordinary path queues the command or raises
                await self.send_packed_command(pack_command(*fields), check_health=False)
            else:
                sock._process_command(fields)

        async def _connect(self) -> None:
            await super()._connect()
            # The socket fakeredis just built, given the subclass that only adds methods.
            self._sock.__class__ = _Socket
