"""``doascope serve``: the live engine headless, streaming every frame to any number of clients.

WebSocket (``--port``) and newline-delimited JSON over TCP (``--tcp-port``), both on 127.0.0.1
unless ``--allow-remote`` (which then needs ``--token``). Each client has its own bounded queue
that drops its oldest frames (counted) when the client is slow, so a stalled reader never slows
the engine or anyone else; socket and transport buffers are kept small so that this queue, not
megabytes of kernel buffer, is what holds a slow client's backlog (and bounds how stale its frames
get). TCP clients may send the same JSON messages as WebSocket ones (control, subscribe, ping), one
per line. ``--odas HOST:PORT`` also pushes ODAS's SST (to PORT) and SSL (to PORT+1) JSON to existing
ODAS consumers, reconnecting whenever they come and go. A plain HTTP GET on the WebSocket port gets
the live web page (app/net/web/); ``--mqtt`` publishes to a broker (app/net/mqtt.py), as one more client.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import re
import signal
import socket
import sys
import time
from collections import deque
from urllib.parse import parse_qs, urlparse

from doascope import DoascopeError, ParameterError
from doascope.config import SettingError
from doascope.app.net import protocol, web

QUEUE_FRAMES = 64            # per client: ~2 s of frames at 30 per second
SEND_BUFFER = 32 * 1024      # bytes: kernel send buffer per client (loopback would otherwise take MBs)
WRITE_LIMIT = 16 * 1024      # bytes: asyncio/websockets write buffer per client before we wait
TOKEN_TIMEOUT = 5.0          # seconds a TCP client has to send its token line
LOCAL_ORIGIN = re.compile(r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$")


class Client:
    """One connection's outgoing queue: newest frames kept, oldest dropped and counted."""

    def __init__(self, kind: str, peer: str, *, spectrum: bool = False, maxlen: int = QUEUE_FRAMES):
        self.kind, self.peer, self.spectrum = kind, peer, spectrum
        self.queue: deque[str] = deque(maxlen=maxlen)
        self.event = asyncio.Event()
        self.dropped = 0
        self.sent = 0

    def push(self, text: str) -> None:
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1
        self.queue.append(text)
        self.event.set()

    async def pump(self, send) -> None:
        while True:
            await self.event.wait()
            self.event.clear()
            while self.queue:
                await send(self.queue.popleft())
                self.sent += 1


def _reap(task: asyncio.Task) -> None:
    """Cancel a helper task and consume its outcome (a send that failed because the peer left is
    expected, and must not be logged later as 'Task exception was never retrieved')."""
    task.cancel()
    task.add_done_callback(lambda t: t.cancelled() or t.exception())


def _small_buffers(transport) -> None:
    """Keep a stalled peer's backlog in its Client queue (which drops oldest) rather than in the
    kernel's send buffer, which autotunes to megabytes on loopback: minutes of stale frames."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        except OSError:
            pass


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Service:
    """Owns the engine's output on the asyncio side: clients, encoding once per frame, ODAS pushes."""

    def __init__(self, engine, profile, *, token: str | None = None, origins=()):
        self.engine, self.profile = engine, profile
        self.token = token
        self.origins = [None, LOCAL_ORIGIN, *origins]
        self.clients: set[Client] = set()
        self.odas: list[Client] = []
        self.frames = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        # The ports it listens on, once it does ({"ws": P, "tcp": Q}): a port given as 0 is one the
        # system picked, free by construction (what the tests and benches ask for).
        self.listening: dict[str, int] = {}
        self._writers: set[asyncio.StreamWriter] = set()   # open TCP connections, closed on shutdown
        self._handlers: set[asyncio.Task] = set()          # their handlers, awaited on shutdown
        self._configuring = asyncio.Lock()                  # one settings change at a time

    # -- frames from the engine thread ------------------------------------------------------------

    def on_frame(self, frame) -> None:  # engine thread: hand over, nothing else
        self.loop.call_soon_threadsafe(self._broadcast, frame)

    def _broadcast(self, frame) -> None:
        self.frames += 1
        plain = with_spec = None
        for c in self.clients:
            if c.spectrum:
                with_spec = with_spec or protocol.dumps(protocol.doa(frame, spectrum=True))
                c.push(with_spec)
            else:
                plain = plain or protocol.dumps(protocol.doa(frame))
                c.push(plain)
        if self.odas:
            self.odas[0].push(protocol.dumps(protocol.odas_sst(frame)))
            self.odas[1].push(protocol.dumps(protocol.odas_ssl(frame)))

    def meta_text(self) -> str:
        return protocol.dumps(protocol.meta(self.engine, self.profile))

    def authorised(self, presented) -> bool:
        if self.token is None:
            return True
        return isinstance(presented, str) and hmac.compare_digest(presented.encode(), self.token.encode())

    async def handle_control(self, client: Client, text) -> str | None:
        """Apply one client message; returns the reply to send (None: nothing to say)."""
        try:
            msg = protocol.parse_client_message(text)
            if msg["type"] == "token":  # a client that sends a token to a server that needs none
                return None
            if msg["type"] == "subscribe":
                client.spectrum = bool(msg.get("spectrum", False))
                return protocol.dumps({"v": protocol.VERSION, "type": "ack", "spectrum": client.spectrum})
            if msg["type"] == "ping":
                return protocol.dumps({"v": protocol.VERSION, "type": "pong", "t": time.time()})
            changes = protocol.control_changes(msg)
            async with self._configuring:
                # Building an estimator can take a while (a network's weights): not on the loop that
                # feeds every client.
                cfg = await asyncio.to_thread(self.engine.configure, **changes)
                # A new method is built on the engine's worker: acknowledge once it runs (or could
                # not be built: then this client hears why), so that the next frames carry it.
                if self.engine.running:
                    await asyncio.to_thread(self.engine.wait_configured, 10.0)
                if self.engine.config_fault and self.engine.config != cfg:
                    return protocol.dumps(protocol.error(self.engine.config_fault))
                # Everyone learns the new settings the way they learnt the first ones.
                meta = protocol.dumps(protocol.meta(self.engine, self.profile, cfg))
            for c in self.clients:
                c.push(meta)
            return protocol.dumps({"v": protocol.VERSION, "type": "ack", "set": msg["set"]})
        except SettingError as exc:
            return protocol.dumps(protocol.error(protocol.setting_message(exc)))
        except DoascopeError as exc:
            return protocol.dumps(protocol.error(str(exc)))
        except Exception as exc:  # a bug of ours must not cost the client its connection, nor others theirs
            return protocol.dumps(protocol.error(f"cannot apply this message: {type(exc).__name__}: {exc}"))

    # -- WebSocket -------------------------------------------------------------------------------

    def _ws_request(self, connection, request):
        query = parse_qs(urlparse(request.path).query)
        presented = (query.get("token") or [None])[0]
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            presented = auth[7:]
        if request.headers.get("Upgrade", "").lower() != "websocket":  # a browser asking for the live page
            return web.answer(self, connection, request, authorised=self.authorised(presented))
        if not self.authorised(presented):
            return connection.respond(401, "a valid token is required: ws://host:port/?token=...\n")
        if not self._origin_allowed(request):
            return connection.respond(403, "this origin may not connect (see serve --allow-origin)\n")
        return None

    def _origin_allowed(self, request) -> bool:
        try:
            origin, host = request.headers.get("Origin"), request.headers.get("Host")
        except Exception:  # MultipleValuesError: a browser sends one of each
            return False
        if any(o == origin or (isinstance(o, re.Pattern) and origin is not None and o.fullmatch(origin))
               for o in self.origins):
            return True
        # The live page, opened at whatever address reaches this port. Only with a token (which was just
        # checked): without one, any web site could point its own name at this address (DNS rebinding).
        return self.token is not None and host is not None and origin in (f"http://{host}", f"https://{host}")

    async def _ws_handler(self, ws) -> None:
        _small_buffers(ws.transport)
        client = Client("ws", f"{ws.remote_address}")
        try:
            # meta first, sent before anything else can be (an ack to a message the client sends at once)
            await asyncio.wait_for(ws.send(self.meta_text()), 10.0)
        except Exception:
            return
        self.clients.add(client)
        pump = asyncio.ensure_future(client.pump(ws.send))
        try:
            async for text in ws:
                reply = await self.handle_control(client, text)
                if reply is not None:
                    await ws.send(reply)
        except Exception:  # a client that vanishes mid-message is not the service's problem
            pass
        finally:
            self.clients.discard(client)
            _reap(pump)

    # -- TCP JSON lines ----------------------------------------------------------------------------

    async def _tcp_handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        self._writers.add(writer)
        self._handlers.add(asyncio.current_task())
        client = pump = None

        async def send(text: str) -> None:
            writer.write(text.encode() + b"\n")
            await writer.drain()

        try:
            _small_buffers(writer.transport)
            writer.transport.set_write_buffer_limits(high=WRITE_LIMIT)
            if self.token is not None and not self.authorised(await self._tcp_token(reader)):
                await asyncio.wait_for(send(protocol.dumps(protocol.error(
                    'send {"token": "..."} as the first line'))), 5.0)
                return
            client = Client("tcp", f"{peer}")
            await asyncio.wait_for(send(self.meta_text()), 10.0)  # meta first, before any reply
            self.clients.add(client)
            pump = asyncio.ensure_future(client.pump(send))
            # Lines from the client are the WebSocket messages (control, subscribe, ping); reading also
            # tells us when it leaves.
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # a line longer than the limit: answer once, then hang up
                    await asyncio.wait_for(send(protocol.dumps(protocol.error(
                        f"message too large (at most {protocol.MAX_CLIENT_MESSAGE} bytes a line)"))), 5.0)
                    return
                if not line:
                    return
                if not line.strip():
                    continue
                reply = await self.handle_control(client, line.decode("utf-8", errors="replace"))
                if reply is not None:
                    await send(reply)
        except Exception:  # resets, timeouts, a client gone mid-write: its business, not the service's
            pass
        except asyncio.CancelledError:
            # Shutdown: end quietly (asyncio 3.11 prints a traceback for a cancelled connection handler).
            pass
        finally:
            if client is not None:
                self.clients.discard(client)
            if pump is not None:
                _reap(pump)
            self._writers.discard(writer)
            self._handlers.discard(asyncio.current_task())
            writer.close()

    async def _tcp_token(self, reader: asyncio.StreamReader):
        """The token a TCP client sends as its first line, {"token": "..."}; None if it does not."""
        try:
            line = await asyncio.wait_for(reader.readline(), TOKEN_TIMEOUT)
            msg = json.loads(line) if line.strip() else None
        except (TimeoutError, ValueError, RecursionError):
            return None
        return msg.get("token") if isinstance(msg, dict) else None

    # -- ODAS consumers ----------------------------------------------------------------------------

    async def _odas_pusher(self, host: str, port: int, client: Client) -> None:
        while True:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5.0)
            except (TimeoutError, OSError):
                client.queue.clear()  # nobody listens: drop, and try again soon (ODAS itself exits here)
                await asyncio.sleep(2.0)
                continue
            client.queue.clear()  # start with the present, not with what piled up while we were away
            try:
                _small_buffers(writer.transport)
                writer.transport.set_write_buffer_limits(high=WRITE_LIMIT)

                async def send(text: str, writer=writer) -> None:
                    writer.write(text.encode() + b"\n")
                    await writer.drain()
                await client.pump(send)
            except Exception:  # the consumer went away (or reset us): reconnect
                pass
            finally:
                writer.close()
            await asyncio.sleep(0.5)

    # -- running ---------------------------------------------------------------------------------

    async def run(self, *, host: str, port: int | None, tcp_port: int | None, odas: tuple[str, int] | None,
                  stop: asyncio.Event, status_every: float = 5.0, quiet: bool = False) -> None:
        from websockets.asyncio.server import serve

        self.loop = asyncio.get_running_loop()
        servers = []
        tasks = []
        try:
            if port is not None:
                servers.append(await serve(self._ws_handler, host, port, origins=None,  # _origin_allowed
                                           process_request=self._ws_request,
                                           max_size=protocol.MAX_CLIENT_MESSAGE, compression=None,
                                           write_limit=WRITE_LIMIT, ping_interval=20, ping_timeout=20,
                                           close_timeout=1.0))  # a stalled client must not hold up shutdown
            if tcp_port is not None:
                servers.append(await asyncio.start_server(self._tcp_handler, host, tcp_port,
                                                          limit=protocol.MAX_CLIENT_MESSAGE))
        except OSError as exc:
            for s in servers:
                s.close()
            raise ParameterError(f"cannot listen on {host}: {exc.strerror or exc}") from None
        kinds = [k for k, p in (("ws", port), ("tcp", tcp_port)) if p is not None]
        self.listening = {k: s.sockets[0].getsockname()[1] for k, s in zip(kinds, servers)}
        port, tcp_port = self.listening.get("ws"), self.listening.get("tcp")
        if odas:
            self.odas = [Client("odas-sst", f"{odas[0]}:{odas[1]}"), Client("odas-ssl", f"{odas[0]}:{odas[1] + 1}")]
            tasks += [asyncio.ensure_future(self._odas_pusher(odas[0], odas[1], self.odas[0])),
                      asyncio.ensure_future(self._odas_pusher(odas[0], odas[1] + 1, self.odas[1]))]
        self.engine.subscribe(self.on_frame)
        self.engine.start()
        if not quiet:
            where = ", ".join(filter(None, [f"ws://{host}:{port} (live page: http://{host}:{port}/)"
                                            if port is not None else "",
                                            f"tcp://{host}:{tcp_port}" if tcp_port is not None else ""]))
            print(f"doascope: serving {self.engine.source.description} on {where}", file=sys.stderr, flush=True)
        last = time.monotonic()
        try:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), 0.25)
                except TimeoutError:
                    pass
                if not self.engine.running:
                    break
                if not quiet and time.monotonic() - last >= status_every:
                    last = time.monotonic()
                    f = self.engine.latest
                    dropped = sum(c.dropped for c in self.clients)
                    print(f"doascope: {len(self.clients)} clients, {self.frames} frames, "
                          f"RTF {f.rtf if f else 0:.3f}, dropped {dropped}", file=sys.stderr, flush=True)
        finally:
            self.engine.stop()
            for t in tasks:
                _reap(t)
            for s in servers:
                s.close()
            for w in list(self._writers):  # TCP clients see the end at once (asyncio leaves them open)
                w.close()
            for s in servers:
                try:
                    await asyncio.wait_for(s.wait_closed(), 3.0)
                except (TimeoutError, Exception):
                    pass
            for w in list(self._writers):  # a stalled one never takes its last bytes: hang up on it
                w.transport.abort()
            if self._handlers:
                await asyncio.wait(list(self._handlers), timeout=1.0)
            self.engine.unsubscribe(self.on_frame)


def parse_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        p = int(port)
    except ValueError:
        raise ParameterError(f"--odas wants HOST:PORT, got {text!r}") from None
    if not host or not 0 < p < 65535:
        raise ParameterError(f"--odas wants HOST:PORT, got {text!r}")
    return host.removeprefix("[").removesuffix("]"), p  # [::1]:9000


class ServiceThread:
    """A :class:`Service` on 127.0.0.1, run by its own thread and event loop, for the benchmarks
    that drive it from this process (``bench --serve``, ``bench --soak``). A port of 0 (the default) is
    one the system picks; :attr:`port` and :attr:`tcp_port` are the ones listened on once started."""

    def __init__(self, service: "Service", *, port: int = 0, tcp_port: int | None = None, name: str = "doascope-serve"):
        import threading

        self.service, self.port, self.tcp_port = service, port, tcp_port
        self._box: dict = {}
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)

    def _serve(self) -> None:
        async def main():
            self._box["loop"], self._box["stop"] = asyncio.get_running_loop(), asyncio.Event()
            self._started.set()
            await self.service.run(host="127.0.0.1", port=self.port, tcp_port=self.tcp_port, odas=None,
                                   stop=self._box["stop"], quiet=True)
        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - reported through .error
            self._box["error"] = exc
            self._started.set()

    @property
    def error(self):
        """What stopped the service, if anything did."""
        return self._box.get("error")

    def start(self, *, frames: int = 1, timeout: float = 60.0) -> None:
        """Start, and wait until the engine has published ``frames`` frames (it starts once the
        sockets listen); RuntimeError if that does not happen within ``timeout`` seconds."""
        self._thread.start()
        self._started.wait(timeout)
        engine = self.service.engine
        deadline = time.monotonic() + timeout
        while engine.frames < frames and self.error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.error is not None or engine.frames < frames:
            self.stop()
            raise RuntimeError(f"the service did not start: {self.error or engine.error}")
        self.port, self.tcp_port = self.service.listening.get("ws"), self.service.listening.get("tcp")

    def stop(self, timeout: float = 30.0) -> None:
        if "loop" in self._box:
            self._box["loop"].call_soon_threadsafe(self._box["stop"].set)
        if self._thread.is_alive():
            self._thread.join(timeout)


def cmd_serve(args) -> int:
    from doascope.app.config import from_args
    from doascope.app.runtime.engine import Engine
    from doascope.app.net.mqtt import publisher
    from doascope.app.runtime.sources import make_source
    from doascope.app.net.ports import check_ports_free
    from doascope.hardware_profiles import load_profile

    if not is_loopback(args.host) and not args.allow_remote:
        raise ParameterError(f"--host {args.host} would accept clients from the network: add --allow-remote "
                             "and a --token that clients must present")
    if args.allow_remote and not args.token:
        raise ParameterError("--allow-remote needs --token TOKEN (clients send it as ?token=... or a first line)")
    odas = parse_hostport(args.odas) if args.odas else None
    config = from_args(args)
    profile = load_profile(args.profile)
    config.check(profile)
    check_ports_free(args.host, [("--port", args.port), ("--tcp-port", args.tcp_port)])
    mqtt = publisher(args, profile)  # None without --mqtt
    source = make_source(config.input, profile)
    engine = Engine(source, profile, config.analysis)
    service = Service(engine, profile, token=args.token, origins=args.allow_origin or ())

    signals: list[int] = []

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda sig=sig: (signals.append(sig), stop.set()))
        if mqtt:  # the broker is one more client: it gets every frame, and meta whenever it changes
            mqtt.start(service.meta_text())
            print(f"doascope: publishing to MQTT broker {mqtt.host}:{mqtt.port}: {mqtt.topic_tracks}, "
                  f"{mqtt.topic_meta} (retained)", file=sys.stderr, flush=True)
            service.clients.add(mqtt)
        try:
            await service.run(host=args.host, port=args.port, tcp_port=args.tcp_port, odas=odas, stop=stop)
        finally:
            if mqtt:
                await asyncio.to_thread(mqtt.stop)

    asyncio.run(main())
    if engine.error:
        print(f"doascope: error: {engine.error}", file=sys.stderr)
        return 2
    print(f"doascope: stopped after {service.frames} frames", file=sys.stderr)
    # Ctrl-C: the shell's 130; SIGTERM (a service manager stopping us): a normal end.
    return 130 if signals and signals[0] == signal.SIGINT else 0
