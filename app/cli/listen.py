"""``doascope listen``: a tiny reference client for the service (also used by the tests)."""

from __future__ import annotations

import asyncio
import json
import sys

from doascope import DoascopeError, ParameterError


from doascope.app.net.protocol import describe as _line  # noqa: E402  (the one-line text of a message)


def _show(text: str, args) -> dict | None:
    """Print one message; returns it parsed (None for a line that is not a JSON object)."""
    try:
        msg = json.loads(text)
    except ValueError:
        msg = None
    if not isinstance(msg, dict):
        print(text, flush=True)
        return None
    print(text if args.json else _line(msg), flush=True)
    return msg


def _ended(n: int, args) -> None:
    """The server ended the stream before --count messages: say so (exit status 2)."""
    if args.count and n < args.count:
        raise DoascopeError(f"the server closed the stream after {n} of {args.count} doa messages")


async def _ws(url: str, args) -> int:
    from websockets.asyncio.client import connect
    from websockets.exceptions import (
        ConnectionClosedError,
        InvalidHandshake,
        InvalidStatus,
        InvalidURI,
    )

    headers = {"Authorization": f"Bearer {args.token}"} if args.token else None
    try:
        async with connect(url, additional_headers=headers, open_timeout=10) as ws:
            if args.spectrum:
                await ws.send(json.dumps({"type": "subscribe", "spectrum": True}))
            for text in args.control or ():
                await ws.send(text)
            n = 0
            async for text in ws:
                msg = _show(text if isinstance(text, str) else text.decode(errors="replace"), args)
                if msg is not None and msg.get("type") == "doa":
                    n += 1
                    if args.count and n >= args.count:
                        return 0
            _ended(n, args)
    except InvalidStatus as exc:
        body = (exc.response.body or b"").decode(errors="replace").strip()
        raise ParameterError(f"the server refused the connection: HTTP {exc.response.status_code} {body}".strip()) \
            from None
    except InvalidURI:
        raise ParameterError(f"{url!r} is not a WebSocket URL (ws://host:port)") from None
    except InvalidHandshake as exc:
        raise ParameterError(f"{url} did not answer as a doascope service: {exc}") from None
    except ConnectionClosedError as exc:
        raise ParameterError(f"the server closed the connection: {exc}") from None
    except OSError as exc:
        raise ParameterError(f"cannot connect to {url}: {exc.strerror or exc}") from None
    return 0


async def _tcp(hostport: str, args) -> int:
    host, _, port = hostport.rpartition(":")
    try:
        host = host.removeprefix("[").removesuffix("]") or "127.0.0.1"  # [::1]:8766
        reader, writer = await asyncio.open_connection(host, int(port), limit=2**24)
    except (OSError, ValueError) as exc:
        raise ParameterError(f"cannot connect to {hostport}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        if args.token:
            writer.write((json.dumps({"token": args.token}) + "\n").encode())
        if args.spectrum:
            writer.write(b'{"type": "subscribe", "spectrum": true}\n')
        for text in args.control or ():
            writer.write(text.replace("\n", " ").encode() + b"\n")
        await writer.drain()
        n = 0
        while line := await reader.readline():
            msg = _show(line.decode(errors="replace").rstrip(), args)
            if msg is not None and msg.get("type") == "doa":
                n += 1
                if args.count and n >= args.count:
                    break
        else:
            _ended(n, args)
    except (OSError, ValueError) as exc:  # a reset, or a line beyond the reader's limit
        raise ParameterError(f"the connection to {hostport} failed: {getattr(exc, 'strerror', None) or exc}") \
            from None
    finally:
        writer.close()
    return 0


def cmd_listen(args) -> int:
    try:
        if args.mqtt:
            from doascope.app.net.mqtt import cmd_listen as mqtt_listen
            return mqtt_listen(args)
        if args.tcp:
            return asyncio.run(_tcp(args.tcp, args))
        return asyncio.run(_ws(args.url, args))
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        sys.stderr.close()
        return 0
