"""The ``doascope`` command line. Each subcommand imports what it needs when it runs, so that
``doascope locate`` starts without Qt, torch or pyroomacoustics."""

from __future__ import annotations

import argparse
import os
import sys

# Block-sized matrix products (a few pairs by a few hundred lags) only lose from BLAS threads,
# which fight the engine, the GUI and the service for two cores: one thread unless set otherwise.
# This must happen before numpy is imported.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from doascope import DoascopeError, __version__
from doascope.app.cli.options import add_analysis_options, add_gui_options, add_input_options  # noqa: F401  (re-exported)


class Parser(argparse.ArgumentParser):
    """argparse, with a mistake reported in one line (the option and what is wrong), not the usage."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from doascope.app.net.mqtt import add_options as mqtt_options

    parser = Parser(prog="doascope", description="Sound source localization with microphone arrays.")
    parser.add_argument("--version", action="version", version=f"doascope {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="say more: -v what is going on, -vv also debug details and tracebacks")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default=None,
                        help="log level (default warning; overrides -v)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("profiles", help="list the shipped microphone-array profiles")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("locate", help="localize the sources in a multichannel recording")
    p.add_argument("file", help="recording (WAV, FLAC, OGG, ... any format soundfile reads; acoular HDF5 with [hdf5])")
    add_analysis_options(p)
    p.add_argument("--format", choices=["jsonl", "csv"], default="jsonl", help="output format (default jsonl)")
    p.add_argument("--output", "-o", default="-", help="output file (default stdout)")
    p.add_argument("--plot", metavar="PNG", default=None, help="also draw azimuth over time to this PNG")

    p = sub.add_parser("run", help="localize live (or a replayed file / simulated room) with a terminal view")
    add_analysis_options(p)
    add_input_options(p)
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds of audio")
    p.add_argument("--output", "-o", default=None, metavar="FRAMES.jsonl", help="write every frame as a JSON line")
    p.add_argument("--record", default=None, metavar="RAW.flac", help="record the raw input losslessly (.flac/.wav)")

    p = sub.add_parser("serve", help="run the engine headless and stream frames to WebSocket and TCP clients")
    add_analysis_options(p)
    add_input_options(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="WebSocket port (default 8765; 0: a free one, printed when serving)")
    p.add_argument("--tcp-port", type=int, default=8766, help="newline-delimited JSON over TCP (default 8766; 0: a free one)")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host (needs --token)")
    p.add_argument("--token", default=None, help="clients must present it (?token=..., Bearer, or a first line)")
    p.add_argument("--allow-origin", action="append", default=None, metavar="ORIGIN",
                   help="extra browser origin allowed on the WebSocket (localhost ones always are)")
    p.add_argument("--odas", default=None, metavar="HOST:PORT",
                   help="also push ODAS SST JSON to HOST:PORT and SSL JSON to HOST:PORT+1")
    mqtt_options(p, serve=True)

    p = sub.add_parser("listen", help="print the stream of a running `doascope serve`")
    p.add_argument("url", nargs="?", default="ws://127.0.0.1:8765", help="WebSocket URL (default ws://127.0.0.1:8765)")
    p.add_argument("--tcp", default=None, metavar="HOST:PORT", help="read the TCP JSON-lines stream instead")
    p.add_argument("--token", default=None)
    p.add_argument("--spectrum", action="store_true", help="subscribe to the spatial spectrum")
    p.add_argument("--control", action="append", default=None, metavar="JSON", help="send a control message first")
    p.add_argument("--count", type=int, default=0, help="stop after N doa messages")
    p.add_argument("--json", action="store_true", help="print the raw messages")
    mqtt_options(p, serve=False)

    p = sub.add_parser("gui", help="the desktop GUI: live spatial spectrum, tracks and controls")
    add_gui_options(p)

    p = sub.add_parser("devices", help="list audio input devices and the profiles that match them")

    p = sub.add_parser("demo", help="localize a built-in simulated scene and show the result (no hardware needed)")
    p.add_argument("--profile", "-p", default="respeaker_usb_v2", help="array to simulate (default respeaker_usb_v2)")
    p.add_argument("--method", "-m", default="normmusic", help="DOA method (default normmusic)")
    p.add_argument("--out", default="doascope-demo", help="folder for the scene WAV and the PNG (default ./doascope-demo)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-gui", action="store_true", help="the terminal demo even where a display exists")
    p.add_argument("--quit-after", type=float, default=None, metavar="S", help=argparse.SUPPRESS)

    p = sub.add_parser("bench", help="speed and accuracy against pyroomacoustics (ratios, measured in this process)")
    p.add_argument("--quick", action="store_true", help="fewer repetitions and scenes (a smoke run)")
    p.add_argument("--live", action="store_true", help="the live engine: real-time factor, latency, a 10x soak")
    p.add_argument("--odas", metavar="ODASLIVE", default=None, help="with --live: also run ODAS's odaslive on the 4-mic audio")
    p.add_argument("--serve", action="store_true",
                   help="the network service: frames delivered and CPU with 0, 10 and 100 WebSocket clients")
    p.add_argument("--position", action="store_true", help="position mode: error and cost of each room search")
    p.add_argument("--dnn", action="store_true", help="the DNN estimator against the classical methods")
    p.add_argument("--tracking", action="store_true",
                   help="tracks on crossing, turn-taking, walking and talker-and-fan scenes (coverage, ghosts, id "
                        "switches), held-out blocks, the bias between two talkers, and real measured rooms")
    p.add_argument("--batch", action="store_true", help="`batch` throughput: 1 and 2 local workers, and Ray's overhead")
    p.add_argument("--soak", type=float, default=None, metavar="MINUTES",
                   help="the service for MINUTES, replaying at 10x with clients: memory, overruns, frame loss")
    p.add_argument("--speed-only", action="store_true", help="skip the accuracy part")
    p.add_argument("--accuracy-only", action="store_true", help="skip the speed part")
    p.add_argument("--scenes", type=int, default=None, help="scenes per source count in the accuracy part")
    p.add_argument("--json", metavar="FILE", default=None, help="also write every figure to this JSON file")
    from doascope.app.cli.clip import register as register_clip
    from doascope.app.cli.meta import register as register_meta
    from doascope.app.cli.train import register as register_train
    from doascope.app.cli.batch import register as register_batch

    register_train(sub)
    register_clip(sub)
    register_meta(sub)
    from doascope.app.cli.eval import register as register_eval

    register_eval(sub)
    register_batch(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from doascope.app.cli.extras import print_warnings_as_lines, require_extras
    from doascope.app.cli.startup import release as release_gc

    print_warnings_as_lines()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from doascope.app.logs import setup_logging

    setup_logging(args.verbose, args.log_level)
    try:
        require_extras(args)
        if args.command == "profiles":
            from doascope.app.cli.commands import cmd_profiles as run
        elif args.command == "locate":
            from doascope.app.cli.commands import cmd_locate as run
        elif args.command == "run":
            from doascope.app.cli.run import cmd_run as run
        elif args.command == "serve":
            from doascope.app.net.server import cmd_serve as run
        elif args.command == "listen":
            from doascope.app.cli.listen import cmd_listen as run
        elif args.command == "meta":
            from doascope.app.cli.meta import cmd_meta as run
        elif args.command == "clip":
            from doascope.app.cli.clip import cmd_clip as run
        elif args.command == "train":
            from doascope.app.cli.train import cmd_train as run
        elif args.command == "batch":
            from doascope.app.cli.batch import cmd_batch as run
        elif args.command == "gui":
            from doascope.app.gui.window import run_gui as run
        elif args.command == "devices":
            from doascope.app.cli.run import cmd_devices as run
        elif args.command == "demo":
            from doascope.app.cli.demo import cmd_demo as run
        elif args.command == "bench":
            from doascope.app.bench.main import cmd_bench as run
        elif args.command == "eval":
            from doascope.app.cli.eval import cmd_eval as run
        else:  # pragma: no cover - argparse rejects unknown commands
            parser.error(f"unknown command {args.command}")
        if args.command not in ("locate", "run"):  # these two turn it back on once their analysis is built
            release_gc()
        return int(run(args) or 0)
    except DoascopeError as exc:
        print(f"doascope: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `doascope locate ... | head`
        return 0


def console() -> int:
    """The ``doascope`` command (the console script and ``python -m doascope.app.cli.main``): main()
    with the cyclic garbage collector kept out of start-up and exit (see ``doascope.app.cli.startup``)."""
    from doascope.app.cli import startup

    startup.hold()
    try:
        return main()
    finally:
        startup.release()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(console())
