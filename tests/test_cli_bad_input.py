"""Every ``synack`` subcommand, given bad input, says why in exactly one line on stderr
starting ``synack: ``, exits non-zero, shows no traceback and never hangs.

One row per (subcommand, bad input): the real command runs as a subprocess with a
timeout, so a hang fails the row instead of blocking the suite. ``{name}`` in a row's
arguments is a path made for it: a FIFO, a directory, a regular file, a non-UTF-8 file,
config files, a pty with nothing behind it, or the port of a virtual board (started once
for the rows that need a board to answer). Each row also names a fragment of the message
it expects, so a row that fails for another reason (an earlier check, a different error)
fails the test.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from synack_host import cli
from synack_host.command import CommandError

TIMEOUT_S = 20

CONFIGS = {
    "deep_json": "[" * 3000 + "]" * 3000,
    "list_json": "[1, 2]",
    "nan_json": '{"apn": NaN}',
    "inf_json": '{"keepalive": {"idle": Infinity}}',
    "wrong_type_json": '{"apn": 5}',
    "unknown_key_json": '{"apn": "internet", "wfi": {"ssid": "lab"}}',
    "nested_unknown_json": '{"wifi": {"ssid": "lab", "password": "x"}}',
    "out_of_range_json": '{"keepalive": {"idle": 0}}',
    "duplicate_json": '{"apn": "a", "apn": "b"}',
    "broken_json": "{nope",
    "bool_json": '{"keepalive": {"count": true}}',
}

NO_PORT = "/dev/nonexistent"

ROWS = [
    # -- top level and argparse's usage errors, one line each
    ("no-command", [], "no command given; the commands are connect, exec, "),
    ("unknown-command", ["frobnicate"], "unknown command 'frobnicate'; the commands are "),
    ("unknown-top-option", ["--bogus"], "unrecognized option --bogus; the commands are "),
    ("unknown-option", ["exec", "-p", "loop://", "1", "--bogus"],
     "exec: unrecognized arguments: --bogus; usage: synack exec [-h] [-p PORT]"),
    ("missing-argument-shows-usage", ["exec"],
     "exec: the following arguments are required: code; usage: synack exec "),
    ("sim-without-command", ["sim"], "sim: the following arguments are required"),
    # -- connect
    ("connect-no-such-port", ["connect", NO_PORT, "exec", "1"],
     f"cannot open {NO_PORT}: no such file or directory"),
    ("connect-port-is-a-file", ["connect", "{regular}"], "a regular file, not a serial port"),
    ("connect-huge-baud", ["connect", "--baud", "99999999999999", "{pty}", "exec", "1"],
     "connect: argument --baud: baud rate must be 300..12000000"),
    ("connect-chained-usage-error", ["connect", "loop://", "exec"],
     "exec: the following arguments are required: code"),
    ("connect-not-chainable", ["connect", "loop://", "hil"], "cannot be chained"),
    ("connect-empty-link", ["connect", "loop://", "exec", "1", "+"], "empty command"),
    # -- exec
    ("exec-huge-baud", ["exec", "--baud", "1000000000000", "-p", "{pty}", "1"],
     "argument --baud: baud rate must be 300..12000000"),
    ("exec-negative-baud", ["exec", "--baud", "-5", "-p", "{pty}", "1"],
     "argument --baud: baud rate must be 300..12000000, got -5"),
    ("exec-baud-not-a-number", ["exec", "--baud", "fast", "-p", "loop://", "1"],
     "must be an integer"),
    ("exec-no-port", ["exec", "1"], "no port"),
    ("exec-no-such-port", ["exec", "-p", NO_PORT, "1"], "no such file or directory"),
    ("exec-port-is-a-file", ["exec", "-p", "{regular}", "1"], "a regular file, not a serial port"),
    ("exec-port-is-a-directory", ["exec", "-p", "{dir}", "1"], "a directory, not a serial port"),
    ("exec-port-is-a-fifo", ["exec", "-p", "{fifo}", "1"], "a FIFO, not a serial port"),
    ("exec-port-not-a-terminal", ["exec", "-p", "/dev/null", "1"], "not a serial port"),
    ("exec-unknown-url-scheme", ["exec", "-p", "nosuch://x", "1"], "cannot open nosuch://x"),
    # -- eval
    ("eval-json-of-bytes", ["eval", "-p", "{board}", "--json", "b'x'"], "has no JSON form"),
    ("eval-json-tuple-keys", ["eval", "-p", "{board}", "--json", "{(1, 2): 3}"],
     "has no JSON form"),
    ("eval-port-is-a-file", ["eval", "-p", "{regular}", "1"], "not a serial port"),
    # -- run
    ("run-not-utf8", ["run", "-p", "loop://", "{nonutf8}"], "is not UTF-8 text (byte 0xff"),
    ("run-fifo", ["run", "-p", "loop://", "{fifo}"], "not a regular file (a FIFO)"),
    ("run-directory", ["run", "-p", "loop://", "{dir}"], "is a directory"),
    ("run-missing-file", ["run", "-p", "loop://", "{missing}"], "no such file or directory"),
    # -- reset
    ("reset-no-such-port", ["reset", "-p", NO_PORT], "no such file or directory"),
    ("reset-hard-port-is-a-file", ["reset", "--hard", "-p", "{regular}"], "not a serial port"),
    # -- deploy: the config is validated before the port is opened
    ("deploy-config-deep", ["deploy", "-p", NO_PORT, "--config", "{deep_json}"],
     "nested deeper than"),
    ("deploy-config-list", ["deploy", "-p", NO_PORT, "--config", "{list_json}"],
     "the top level must be an object, got a list"),
    ("deploy-config-nan", ["deploy", "-p", NO_PORT, "--config", "{nan_json}"],
     "NaN is not a JSON number"),
    ("deploy-config-infinity", ["deploy", "-p", NO_PORT, "--config", "{inf_json}"],
     "Infinity is not a JSON number"),
    ("deploy-config-wrong-type", ["deploy", "-p", NO_PORT, "--config", "{wrong_type_json}"],
     "apn must be a string, got a number"),
    ("deploy-config-unknown-key", ["deploy", "-p", NO_PORT, "--config", "{unknown_key_json}"],
     "unknown key 'wfi'"),
    ("deploy-config-unknown-nested-key",
     ["deploy", "-p", NO_PORT, "--config", "{nested_unknown_json}"],
     "unknown key 'wifi.password'"),
    ("deploy-config-out-of-range", ["deploy", "-p", NO_PORT, "--config", "{out_of_range_json}"],
     "keepalive.idle must be 1..7200, got 0"),
    ("deploy-config-duplicate-key", ["deploy", "-p", NO_PORT, "--config", "{duplicate_json}"],
     "duplicate key 'apn'"),
    ("deploy-config-bool-for-int", ["deploy", "-p", NO_PORT, "--config", "{bool_json}"],
     "keepalive.count must be a whole number"),
    ("deploy-config-invalid-json", ["deploy", "-p", NO_PORT, "--config", "{broken_json}"],
     "invalid JSON"),
    ("deploy-config-fifo", ["deploy", "-p", NO_PORT, "--config", "{fifo}"],
     "not a regular file (a FIFO)"),
    ("deploy-config-not-utf8", ["deploy", "-p", NO_PORT, "--config", "{nonutf8}"],
     "not UTF-8"),
    ("deploy-config-missing", ["deploy", "-p", NO_PORT, "--config", "{missing}"],
     "no such file or directory"),
    ("deploy-no-such-port", ["deploy", "-p", NO_PORT, "--dry-run"], "no such file"),
    # -- ls, cat, rm: a board path that is not there is one line, not the device's traceback
    ("ls-missing-board-path", ["ls", "-p", "{board}", "/nope"],
     ":/nope: no such file or directory on the board"),
    ("ls-no-such-port", ["ls", "-p", NO_PORT], "no such file or directory"),
    ("cat-missing-board-path", ["cat", "-p", "{board}", "/nope"], "no such file or directory"),
    ("cat-board-directory", ["cat", "-p", "{board}", "/d"], ":/d: is a directory on the board"),
    ("rm-missing-board-path", ["rm", "-p", "{board}", "/nope"], "on the board"),
    ("rm-port-is-a-fifo", ["rm", "-p", "{fifo}", "/x"], "a FIFO, not a serial port"),
    # -- cp
    ("cp-upload-fifo", ["cp", "-p", "loop://", "{fifo}", ":/x"], "not a regular file (a FIFO)"),
    ("cp-upload-directory", ["cp", "-p", "loop://", "{dir}", ":/x"], "is a directory"),
    ("cp-upload-missing", ["cp", "-p", "loop://", "{missing}", ":/x"], "no such file"),
    ("cp-two-host-paths", ["cp", "-p", "loop://", "a", "b"], "exactly one of SRC and DST"),
    ("cp-download-missing", ["cp", "-p", "{board}", ":/nope", "{tmp}/out"],
     ":/nope: no such file on the board"),
    ("cp-download-unwritable", ["cp", "-p", "{board}", ":/f.txt", "/proc/no/such"],
     "cannot write /proc/no/such"),
    # -- repl
    ("repl-no-such-port", ["repl", "-p", NO_PORT], "no such file or directory"),
    ("repl-port-is-a-directory", ["repl", "-p", "{dir}"], "a directory, not a serial port"),
    # -- hil: refused before pytest starts
    ("hil-junit-in-proc", ["hil", "--tests", "{dir}", "--junit", "/proc/x.xml"],
     "--junit /proc/x.xml: cannot write"),
    ("hil-junit-is-a-directory", ["hil", "--tests", "{dir}", "--junit", "{dir}"],
     "not a regular file"),
    ("hil-logdir-in-proc", ["hil", "--tests", "{dir}", "--junit", "{tmp}/r.xml", "--logdir",
                            "/proc/no/such"], "--logdir /proc/no/such"),
    ("hil-bad-k-expression", ["hil", "--tests", "{dir}", "--junit", "{tmp}/r.xml", "-k", "((("],
     "not a valid pytest expression"),
    ("hil-negative-baud", ["hil", "--baud", "-1"], "argument --baud"),
    ("hil-missing-tests", ["hil", "--tests", "{missing}"], "no HIL tests at"),
    ("hil-no-such-board", ["hil", "--board", NO_PORT],           # checked once, up front
     f"cannot open {NO_PORT}: no such file or directory"),
    ("hil-board-is-a-file", ["hil", "--board", "{regular}"], "a regular file, not a serial port"),
    # -- hil on labgrid places: refused before anything is acquired
    ("hil-place-and-board", ["hil", "--place", "synack-1", "--board", NO_PORT],
     "give --board or --place/--places, not both"),
    ("hil-place-and-places", ["hil", "--place", "a", "--places", "b,c"],
     "give --place or --places, not both"),
    ("hil-places-empty-name", ["hil", "--places", "a,,b", "--coordinator", "127.0.0.1:1"],
     "--places: '' is not a place name"),
    ("hil-places-named-twice", ["hil", "--places", "a,a", "--coordinator", "127.0.0.1:1"],
     "a place is named twice"),
    ("hil-place-coordinator-unreachable",
     ["hil", "--place", "synack-1", "--coordinator", "127.0.0.1:1"],
     "cannot reach the labgrid coordinator at 127.0.0.1:1"),
    # -- farm
    ("farm-up-zero-boards", ["farm", "up", "--boards", "0"],
     "farm up: argument --boards: number of boards must be 1..16, got 0"),
    ("farm-up-state-dir-is-a-file", ["farm", "up", "--state-dir", "{regular}"],
     "not a directory"),
    ("farm-down-nothing-running", ["farm", "down", "--state-dir", "{dir}"], "no farm to stop"),
    # -- sim modem
    ("sim-modem-negative-baud", ["sim", "modem", "--baud", "-1"],
     "sim modem: argument --baud: baud rate must be 300..12000000, got -1"),
    ("sim-modem-rssi", ["sim", "modem", "--rssi", "40"], "rssi must be 0..31 or 99"),
    ("sim-modem-nan-timeout", ["sim", "modem", "--connect-timeout", "nan"],
     "argument --connect-timeout"),
    ("sim-modem-zero-keepalive-minute", ["sim", "modem", "--keepalive-minute", "0"],
     "argument --keepalive-minute"),
    ("sim-modem-bad-host", ["sim", "modem", "--host", "nope"], "--host wants NAME=IP"),
    ("sim-modem-link-in-proc", ["sim", "modem", "--link", "/proc/no/such"],
     "cannot set up the modem"),
    # -- sim fault
    ("sim-fault-no-socket", ["sim", "fault", "{missing}", "status"],
     "cannot reach the modem's control socket"),
    ("sim-fault-regular-file", ["sim", "fault", "{regular}", "status"],
     "cannot reach the modem's control socket"),
    # -- sim board
    ("sim-board-negative-flash", ["sim", "board", "--flash-size", "-1"],
     "argument --flash-size: flash size must be 1..1073741824 bytes, got -1"),
    ("sim-board-zero-baud", ["sim", "board", "--baud", "0"], "argument --baud"),
    ("sim-board-fs-cannot-be-made", ["sim", "board", "--fs", "/proc/synack-flash"],
     "--fs /proc/synack-flash: cannot create it: "),
    ("sim-board-fs-is-a-file", ["sim", "board", "--fs", "{regular}"], "not a directory"),
    ("sim-board-uart1-missing", ["sim", "board", "--uart1", "{missing}"],
     "--uart1 {missing}: no such file or directory"),
    ("sim-board-uart1-regular", ["sim", "board", "--uart1", "{regular}"],
     "a regular file, not a serial port"),
    # -- sim rig
    ("sim-rig-negative-baud", ["sim", "rig", "--baud", "-1"], "argument --baud"),
    ("sim-rig-fs-is-a-file", ["sim", "rig", "--fs", "{regular}"], "not a directory"),
    ("sim-rig-bad-modem-arg", ["sim", "rig", "--modem-arg=--bogus"],
     "virtual modem did not start"),
    # -- diag, at, monitor (field diagnostics)
    ("diag-no-port", ["diag"], "no port: give -p PORT"),
    ("diag-zero-watch", ["diag", "-p", "loop://", "--watch", "0"], "argument --watch"),
    ("diag-no-firmware", ["diag", "-p", "{board}"], "the synack firmware is not on the board"),
    ("diag-url-without-selftest", ["diag", "-p", NO_PORT, "--tcp", "a:1"],
     "belong to 'synack diag selftest'"),
    ("diag-selftest-bad-tcp", ["diag", "selftest", "-p", "loop://", "--tcp", "nohost"],
     "want HOST:PORT"),
    ("diag-selftest-bad-url", ["diag", "selftest", "-p", "loop://", "--url", "ftp://x"],
     "URL must start with http:// or https://"),
    ("diag-selftest-nothing", ["diag", "selftest", "-p", NO_PORT], "selftest needs --url"),
    ("at-script-and-commands", ["at", "-p", NO_PORT, "--script", "{regular}", "AT"],
     "not both"),
    ("at-script-bad-step", ["at", "-p", NO_PORT, "--script", "{regular}"], "unknown step"),
    ("at-script-fifo", ["at", "-p", NO_PORT, "--script", "{fifo}"], "not a regular file"),
    ("at-no-such-port", ["at", "-p", NO_PORT, "AT"], "no such file or directory"),
    ("at-bad-uart", ["at", "-p", NO_PORT, "--uart", "12", "AT"], "UART number must be 0..9"),
    ("monitor-no-port", ["monitor"], "no port: give -p PORT"),
    ("monitor-save-unwritable", ["monitor", "-p", NO_PORT, "--save", "/proc/no/such"],
     "cannot write /proc/no/such"),
    ("monitor-negative-duration", ["monitor", "-p", "loop://", "--duration", "-1"],
     "argument --duration"),
    ("monitor-no-such-port", ["monitor", "-p", NO_PORT], "no such file or directory"),
    # -- flash: refused before any port is opened
    ("flash-no-port", ["flash", "{regular}"], "no port: give -p PORT, --ports PORT"),
    ("flash-missing-image", ["flash", "{missing}", "-p", NO_PORT],
     "cannot read image {missing}: no such file or directory"),
    ("flash-image-is-a-directory", ["flash", "{dir}", "-p", NO_PORT],
     "cannot read image {dir}: is a directory"),
    ("flash-image-is-a-fifo", ["flash", "{fifo}", "-p", NO_PORT], "not a regular file (a FIFO)"),
    ("flash-not-an-image", ["flash", "{regular}", "-p", NO_PORT],
     "is not an ESP firmware image (it starts with 0x6e"),
    ("flash-bad-offset", ["flash", "{regular}", "-p", NO_PORT, "--offset", "0x1234"],
     "argument --offset: offset must be a multiple of 0x1000"),
    ("flash-offset-not-a-number", ["flash", "{regular}", "-p", NO_PORT, "--offset", "boot"],
     "argument --offset: offset must be a number like 0x1000, got 'boot'"),
    ("flash-bad-chip", ["flash", "{regular}", "-p", NO_PORT, "--chip", "esp8266"],
     "argument --chip: invalid choice: 'esp8266'"),
    ("flash-ports-glob-matches-nothing", ["flash", "{regular}", "--ports", "/dev/nothing*"],
     "--ports /dev/nothing*: matches no port"),
    ("flash-deploy-without-boot", ["flash", "{regular}", "-p", NO_PORT, "--deploy",
                                   "--after", "no-reset"], "need the board to boot"),
    ("flash-config-template-unknown-key",
     ["flash", "{regular}", "-p", NO_PORT, "--config-template", "{unknown_key_json}"],
     "unknown key 'wfi'"),
    # -- sim selftest
    ("sim-selftest-negative-baud", ["sim", "selftest", "--baud", "-1"], "argument --baud"),
    ("sim-selftest-zero-bytes", ["sim", "selftest", "--bytes", "0"],
     "argument --bytes: byte count must be 1..1048576, got 0"),
]


@pytest.fixture(scope="module")
def board_port(tmp_path_factory):
    from synack_host.sim.launch_board import start_board

    flash = tmp_path_factory.mktemp("flash")
    (flash / "d").mkdir()
    (flash / "f.txt").write_text("hi\n")
    with start_board("--fs", str(flash)) as running:
        yield running.port


@pytest.fixture
def pty_path():
    """A pty with nothing behind it: opening it works, nothing ever answers."""
    master, slave = os.openpty()
    try:
        yield os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


def _paths(tmp_path, request, args) -> dict[str, str]:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "dir").mkdir()
    (tmp_path / "regular").write_text("not a port\n")
    (tmp_path / "nonutf8.py").write_bytes(b"print('ok')\n\xff\xfe\n")
    paths = {"tmp": str(tmp_path), "fifo": str(fifo), "dir": str(tmp_path / "dir"),
             "regular": str(tmp_path / "regular"), "nonutf8": str(tmp_path / "nonutf8.py"),
             "missing": str(tmp_path / "missing")}
    for name, text in CONFIGS.items():
        path = tmp_path / name.replace("_json", ".json")
        path.write_text(text)
        paths[name] = str(path)
    joined = " ".join(args)
    if "{pty}" in joined:
        paths["pty"] = request.getfixturevalue("pty_path")
    if "{board}" in joined:
        paths["board"] = request.getfixturevalue("board_port")
    return paths


def _fill(text: str, paths: dict[str, str]) -> str:
    for name, path in paths.items():
        text = text.replace("{" + name + "}", path)
    return text


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SYNACK_PORT", cli.DEBUG_ENV)}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.mark.parametrize("args, fragment", [row[1:] for row in ROWS],
                         ids=[row[0] for row in ROWS])
def test_bad_input_is_one_line(args, fragment, tmp_path, request):
    paths = _paths(tmp_path, request, args)
    argv = [_fill(a, paths) for a in args]
    fragment = _fill(fragment, paths)
    try:
        res = subprocess.run([sys.executable, "-m", "synack_host.cli", *argv],
                             capture_output=True, text=True, errors="replace",
                             timeout=TIMEOUT_S, stdin=subprocess.DEVNULL, cwd=tmp_path,
                             env=_env(), check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"synack {' '.join(argv)} hung (no exit within {TIMEOUT_S} s)")
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode != 0, res
    assert "Traceback" not in res.stdout + res.stderr, res.stderr
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("synack: "), res.stderr
    assert fragment in lines[0], res.stderr


def test_every_subcommand_has_a_row():
    for name in cli.COMMANDS:
        words = name.split()
        assert any(row[1][:len(words)] == words for row in ROWS), f"no row for {name}"


# -- the safety net in main(): in-process, with a handler made to fail ------------
def _patch_handler(monkeypatch, exc: BaseException) -> None:
    """Make ``synack exec`` fail with ``exc`` (build_parser reads cli.COMMANDS)."""
    def boom(state, args):
        raise exc

    monkeypatch.setitem(cli.COMMANDS, "exec", (boom, *cli.COMMANDS["exec"][1:]))


@pytest.mark.parametrize("exc, code, line", [
    (RuntimeError("it broke\nbadly"), 2, "synack: internal error: RuntimeError: it broke "
     "badly (rerun with SYNACK_DEBUG=1 for the traceback)"),
    (KeyboardInterrupt(), 130, "synack: interrupted"),
    (CommandError("clear"), 1, "synack: clear"),
])
def test_main_turns_every_failure_into_one_line(exc, code, line, monkeypatch, capsys):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    _patch_handler(monkeypatch, exc)
    assert cli.main(["exec", "-p", "loop://", "1"]) == code
    err = capsys.readouterr().err
    assert [x for x in err.splitlines() if x.strip()] == [line]


def test_debug_env_shows_the_traceback(monkeypatch):
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    _patch_handler(monkeypatch, RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        cli.main(["exec", "-p", "loop://", "1"])


def test_usage_error_is_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["sim", "modem", "--baud", "x"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("synack: sim modem: argument --baud: ")
