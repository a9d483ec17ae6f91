"""The `clonusd` command line."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import structlog

from clonusd.daemon import __version__
from clonusd.daemon.logs import configure_logging
from clonusd.daemon.sources.recording import RecordingError, load_recording

log = structlog.get_logger("clonusd")


class CliError(Exception):
    """A problem with the command's inputs or surroundings, reported in one line."""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clonusd", description=__doc__)
    parser.add_argument("--version", action="version", version=f"clonusd {__version__}")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    rp = sub.add_parser("replay", help="run the detector over a recording; JSON events on stdout")
    rp.add_argument("file", type=Path, help="recording CSV (clonus-recording/1)")
    rp.add_argument("--site", help="ankle, wrist or knee (overrides the sidecar)")
    rp.add_argument("--sensor", help="imu6, acc3 or emg (overrides the sidecar)")
    rp.add_argument("--fs", type=_positive_float, help="sample rate in Hz (overrides the sidecar)")
    rp.add_argument(
        "--threshold",
        type=int,
        default=None,
        help="alarm when more than this many contractions in a row (default 5)",
    )
    rp.add_argument(
        "--chunk",
        type=int,
        default=None,
        help="feed this many samples per call, as the live path does",
    )

    run = sub.add_parser("run", help="run the daemon: sensors -> detector -> MQTT")
    run.add_argument("--config", type=Path, required=True, help="TOML configuration file")
    run.add_argument(
        "--speed",
        type=_positive_float,
        default=1.0,
        help="simulated/replay sources run this many times faster (tests, demos)",
    )

    chk = sub.add_parser("check-config", help="validate a configuration file and exit")
    chk.add_argument("file", type=Path)

    sc = sub.add_parser("scan", help="list nearby bands, their profile and signal strength")
    sc.add_argument("--seconds", type=_positive_float, default=5.0)
    sc.add_argument(
        "--no-connect",
        dest="connect",
        action="store_false",
        help="never connect: a Polar band whose name does not say its model shows no model"
        " (by default scan reads that band's Device Information over a short connection)",
    )

    mon = sub.add_parser("monitor", help="terminal bedside view of the published topics")
    mon.add_argument("--broker", default="localhost:1883", help="HOST[:PORT] of the broker")
    mon.add_argument("--prefix", default="clonusd", help="topic prefix (default clonusd)")
    mon.add_argument(
        "--plain",
        action="store_true",
        help="one line per alarm/change instead of a full-screen view",
    )
    mon.add_argument(
        "--duration",
        type=_positive_float,
        default=None,
        help="exit after this many seconds (default: run until Ctrl-C)",
    )
    mon.add_argument(
        "--share",
        metavar="GROUP",
        default=None,
        help="join shared subscription GROUP for events: each event reaches one member "
        "of the group (a pager gateway, a log), not every monitor",
    )

    web = sub.add_parser("web", help="central station: the ward's alarms in a browser")
    web.add_argument("--broker", default="localhost:1883", help="HOST[:PORT] of the broker")
    web.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT to serve on")
    web.add_argument("--prefix", default="clonusd", help="topic prefix (default clonusd)")
    web.add_argument("--token-file", type=Path, help="file holding the access token")

    ev = sub.add_parser("evaluate", help="score the detector on a folder of labelled recordings")
    ev.add_argument("directory", type=Path)
    ev.add_argument("--threshold", type=int, default=None)
    ev.add_argument("--verbose", action="store_true", help="list each miss and false alarm")
    ev.add_argument("--json", action="store_true", help="print the figures as JSON")
    ev.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="DIR",
        help="write a picture of each miss and false alarm and an index.html into DIR"
        " (needs the [report] extra: matplotlib)",
    )
    return parser


def _replay(args: argparse.Namespace) -> int:
    from clonusd.daemon.commands.replay import replay_events

    rec = load_recording(args.file, sensor=args.sensor, fs=args.fs, site=args.site)
    log.info(
        "replay_start",
        file=str(rec.path),
        sensor=rec.sensor,
        site=rec.site,
        fs_hz=rec.fs,
        samples=int(rec.t.size),
    )
    out = sys.stdout
    n = 0
    for payload in replay_events(rec, args.threshold, args.chunk):
        out.write(json.dumps(payload) + "\n")
        n += 1
    out.flush()
    log.info("replay_done", events=n)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from clonusd.daemon.commands.evaluate import evaluate, format_table

    if not args.directory.is_dir():
        raise RecordingError(f"{args.directory}: not a directory")
    if args.report is not None:
        from clonusd.daemon.commands.report import ReportUnavailableError, _pyplot

        try:
            _pyplot()  # fail before the long part, not after it
        except ReportUnavailableError as exc:
            raise CliError(str(exc)) from None
    result = evaluate(args.directory, args.threshold)
    if args.verbose:
        for line in result.problems:
            print(line, file=sys.stderr)
    summary = result.summary()
    print(json.dumps(summary, indent=2) if args.json else format_table(summary))
    if args.report is not None:
        from clonusd.daemon.commands.report import write_report

        n = write_report(result, args.report)
        print(f"clonusd: {n} pictures in {args.report / 'index.html'}", file=sys.stderr)
    return 0


def _run(args: argparse.Namespace) -> int:
    import asyncio

    from clonusd.daemon.config import load_config
    from clonusd.daemon.mqtt.outbox import StorageError
    from clonusd.daemon.service.run import run_service

    cfg = load_config(args.config)
    configure_logging(args.log_level if args.log_level != "info" else cfg.daemon.log_level)
    try:
        return asyncio.run(run_service(cfg, speed=args.speed))
    except StorageError as exc:
        raise CliError(str(exc)) from None


def _monitor(args: argparse.Namespace) -> int:
    import asyncio

    from clonusd.daemon.commands.monitor import run_monitor

    host, _, port = args.broker.partition(":")
    try:
        port_n = int(port or 1883)
    except ValueError:
        raise CliError(f"--broker {args.broker!r}: port is not a number") from None
    if args.share is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", args.share):
        raise CliError(f"--share {args.share!r}: a group name is letters, digits, _ . -")
    plain = args.plain or not sys.stdout.isatty()
    try:
        return asyncio.run(
            run_monitor(host, port_n, args.prefix, plain, args.duration, share=args.share)
        )
    except KeyboardInterrupt:
        return 0


def _host_port(text: str, default_port: int, flag: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    try:
        return host.strip("[]") or "127.0.0.1", int(port or default_port)
    except ValueError:
        raise CliError(f"{flag} {text!r}: port is not a number") from None


def _web(args: argparse.Namespace) -> int:
    import asyncio

    try:
        from clonusd.daemon.web.server import is_loopback, read_token, run_web
    except ImportError as exc:
        raise CliError(
            f"clonusd web needs the [web] extra: pip install 'clonusd[web]' ({exc})"
        ) from None
    broker = _host_port(args.broker, 1883, "--broker")
    listen = _host_port(args.listen, 8080, "--listen")
    token = None
    if args.token_file is not None:
        try:
            token = read_token(args.token_file)
        except (OSError, ValueError) as exc:
            raise CliError(f"--token-file: {exc}") from None
    elif not is_loopback(listen[0]):
        raise CliError(f"--listen {args.listen}: serving beyond this host needs --token-file")
    try:
        return asyncio.run(run_web(*broker, *listen, args.prefix, token))
    except OSError as exc:
        raise CliError(f"--listen {args.listen}: {exc}") from None


def _scan(args: argparse.Namespace) -> int:
    import asyncio

    from bleak.exc import BleakError

    from clonusd.daemon.commands.scan import scan

    try:
        found = asyncio.run(scan(args.seconds, args.connect))
    except BleakError as exc:
        raise CliError(f"Bluetooth: {exc}") from None
    except OSError as exc:  # no system D-Bus, or BlueZ not reachable on it
        raise CliError(f"Bluetooth: cannot reach BlueZ on the system D-Bus ({exc})") from None
    print(f"{'address':17}  {'rssi':>4}  {'profile':10}  {'model':7}  name")
    for f in found:
        profile, model = f.profile or "-", f.model or "-"
        print(f"{f.address:17}  {f.rssi:>4}  {profile:10}  {model:7}  {f.name or ''}")
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from clonusd.daemon.config import load_config
    from clonusd.daemon.service.preflight import build_sources

    cfg = load_config(args.file)
    build_sources(cfg)  # the files it names, each source, each detector: what run needs
    print(f"{args.file}: ok ({len(cfg.sensors)} sensor(s), broker {cfg.mqtt.host}:{cfg.mqtt.port})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    if getattr(args, "threshold", None) is not None and args.threshold < 1:
        parser.error("--threshold must be at least 1")
    from clonusd.daemon.config import ConfigError

    commands = {
        "replay": _replay,
        "evaluate": _evaluate,
        "run": _run,
        "check-config": _check_config,
        "monitor": _monitor,
        "scan": _scan,
        "web": _web,
    }
    try:
        return commands[args.command](args)
    except (RecordingError, ConfigError, CliError) as exc:
        print(f"clonusd: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
