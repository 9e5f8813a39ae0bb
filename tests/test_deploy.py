"""Deploy the firmware to the virtual board over its raw REPL (mpremote's serial
transport as the client, pending synack's own): files land byte-exact and importable,
a second deploy transfers nothing, and a link broken mid-file leaves the previous
version importable."""

from __future__ import annotations

import pytest

from synack_host import config, deploy
from synack_host.packaging import FIRMWARE_DIR, firmware_files
from synack_host.sim.launch_board import start_board

transport_serial = pytest.importorskip("mpremote.transport_serial")


class Board:
    """exec(code) -> stdout over mpremote's raw-REPL implementation."""

    def __init__(self, port: str):
        self.t = transport_serial.SerialTransport(port, 115200)
        self.t.enter_raw_repl(soft_reset=False)
        self.execs = 0
        self.code_bytes = 0

    def exec(self, code: str) -> bytes:
        self.execs += 1
        self.code_bytes += len(code)
        return self.t.exec(code)

    def close(self) -> None:
        self.t.exit_raw_repl()
        self.t.close()


@pytest.fixture
def board_fs(tmp_path):
    fs = tmp_path / "flash"
    fs.mkdir()
    with start_board("--fs", str(fs)) as running:
        board = Board(running.port)
        yield board, fs
        board.close()


def test_deploy_then_redeploy_transfers_nothing(board_fs):
    board, fs = board_fs
    p = deploy.plan(board)
    assert not p.compiled  # the cpython engine has no sys.implementation._mpy
    assert len(p.changed) == len(firmware_files())
    for item in p.changed:
        deploy.send_item(board, item)
    for rel in firmware_files():
        assert (fs / "lib" / rel).read_bytes() == (FIRMWARE_DIR / rel).read_bytes()
    assert not list(fs.rglob("*.tmp"))
    again = deploy.plan(board)
    assert again.changed == [] and again.bytes_to_send == 0
    out = board.exec("import sys\nsys.path.insert(0, '/lib')\n"
                     "from synack.at.parser import Parser\nprint(Parser().max_line)")
    assert out.strip() == b"256"
    # importing wrote nothing into the flash: a board has no __pycache__/
    assert sorted(p.relative_to(fs / "lib").as_posix() for p in (fs / "lib").rglob("*")
                  if p.is_file()) == firmware_files()


def test_broken_link_mid_file_keeps_previous_version(board_fs):
    board, fs = board_fs
    item = deploy.Item("x", "/lib/mod.py", b"VALUE = 1\n")
    deploy.send_item(board, item)
    big = deploy.Item("x", "/lib/mod.py", b"VALUE = 2\n" + b"#" * (3 * deploy.CHUNK))

    class Breaks:
        calls = 0

        def exec(self, code):
            Breaks.calls += 1
            if Breaks.calls == 3:  # open, first chunk, then the link dies
                raise OSError("link closed")
            return board.exec(code)

    with pytest.raises(OSError):
        deploy.send_item(Breaks(), big)
    assert board.exec("import sys\nsys.path.insert(0, '/lib')\nimport mod\nprint(mod.VALUE)"
                      ).strip() == b"1"
    assert (fs / "lib" / "mod.py").read_bytes() == b"VALUE = 1\n"


def test_compiled_items_for_a_matching_board():
    version = deploy._mpy_cross_version()
    items, compiled = deploy.build_items(version)
    assert compiled
    by_source = {i.source: i for i in items}
    parser = by_source["synack/at/parser.py"]
    assert parser.target == "/lib/synack/at/parser.mpy" and parser.data[:1] == b"M"
    assert parser.stale == ["/lib/synack/at/parser.py"]
    assert by_source["synack/__init__.py"].target == "/lib/synack/__init__.py"
    items, compiled = deploy.build_items(version + 1)  # mismatch: ship sources
    assert not compiled and all(i.target.endswith(".py") for i in items)


def test_config_file_is_validated(tmp_path, board_fs):
    board, fs = board_fs
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(deploy.DeployError, match="bad.json"):
        config.write_config(board, bad)
    good = tmp_path / "good.json"
    good.write_text('{"apn": "internet", "wifi": {"ssid": "lab"}}')
    config.write_config(board, good)
    assert (fs / "synack_config.json").read_bytes() == b'{"apn":"internet","wifi":{"ssid":"lab"}}'


GOOD_CONFIG = ('{"apn": "internet", "pin": "1234", "wifi": {"ssid": "lab", "key": "pw"}, '
               '"server_host": "10.0.0.2", "endpoints": {"poll": "http://10.0.0.2:8080/c"}, '
               '"keepalive": {"idle": 60, "interval": 10, "count": 5}, '
               '"heartbeat": {"idle_ms": 30000, "timeout_ms": 10000, "misses": 3}, '
               '"poll": {"interval_ms": 30000, "jitter_ms": 0}}')


def test_config_schema_accepts_every_documented_key():
    assert config.parse_config(GOOD_CONFIG)["keepalive"]["count"] == 5
    assert config.parse_config("{}") == {}


@pytest.mark.parametrize("text, message", [
    ("[1]", "the top level must be an object, got a list"),
    ('"apn"', "the top level must be an object, got a string"),
    ('{"apn": NaN}', "NaN is not a JSON number"),
    ('{"keepalive": {"idle": -Infinity}}', "-Infinity is not a JSON number"),
    ('{"apn": ["x"]}', "apn must be a string, got a list"),
    ('{"wifi": {"key": "k"}}', "wifi.ssid is missing"),
    ('{"wifi": {"ssid": ""}}', "wifi.ssid must be 1..32 characters, got 0"),
    ('{"wifi": "lab"}', "wifi must be an object, got a string"),
    ('{"pin": "12a4"}', "pin must be digits only"),
    ('{"keepalive": {"idle": 1.5}}', "keepalive.idle must be a whole number, got a number"),
    ('{"keepalive": {"count": 101}}', "keepalive.count must be 1..100, got 101"),
    ('{"endpoints": {"poll": "ftp://x/y"}}', "endpoints.poll must start with http://"),
    ('{"endpoints": {"": "http://x/y"}}', "a key of endpoints must be 1..32 characters"),
    ('{"Apn": "x"}', "unknown key 'Apn' (known: apn,"),
    ('{"poll": {"interval": 5}}', "unknown key 'poll.interval'"),
    ('{"apn": "a", "apn": "b"}', "duplicate key 'apn'"),
    ('{"a": {"b": {"c": {"d": {"e": 1}}}}}', "nested deeper than 4 levels"),
    ("[" * 100_000, "nested deeper than 4 levels"),
    ('{"apn": "x",}', "invalid JSON"),
])
def test_config_schema_refuses_with_the_key_named(text, message):
    with pytest.raises(ValueError) as exc:
        config.parse_config(text)
    assert message in str(exc.value)


def test_config_file_must_be_a_small_regular_utf8_file(tmp_path):
    import os

    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    big = tmp_path / "big.json"
    big.write_text('{"apn": "%s"}' % ("x" * config.CONFIG_MAX_BYTES))
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"apn": "\xe9"}')
    for path, message in [(fifo, "not a regular file (a FIFO)"), (tmp_path, "is a directory"),
                          (big, "too large"), (latin, "not UTF-8 text"),
                          (tmp_path / "none.json", "no such file or directory")]:
        with pytest.raises(deploy.DeployError) as exc:
            config.load_config(path)   # returns at once: a FIFO is refused, not opened
        assert str(exc.value).startswith(f"config {path}: ") and message in str(exc.value)


def test_compressed_transfer_inflates_on_the_board(board_fs):
    board, fs = board_fs
    version, can_inflate = deploy.probe(board)
    assert can_inflate  # the virtual board has MicroPython's deflate module
    data = (FIRMWARE_DIR / "synack" / "socket.py").read_bytes() * 3
    seen = []
    before = board.code_bytes
    deploy.send_item(board, deploy.Item("x", "/lib/big.py", data), seen.append, compress=True)
    assert (fs / "lib" / "big.py").read_bytes() == data
    assert not list(fs.rglob("*.z")) and not list(fs.rglob("*.tmp"))
    assert sum(seen) <= len(data) and sum(seen) > len(data) * 0.9
    assert board.code_bytes - before < len(data) / 2  # it really travelled compressed


def test_bundle_lands_byte_exact_and_a_broken_upload_keeps_the_old_files(board_fs):
    import os

    from synack_host import bundle

    board, fs = board_fs
    old = [deploy.Item("a", "/lib/pkg/a.py", b"A = 1\n"), deploy.Item("b", "/lib/b.py",
                                                                        b"B = 1\n")]
    bundle.send_bundle(board, old)
    assert (fs / "lib" / "pkg" / "a.py").read_bytes() == b"A = 1\n"
    new = [deploy.Item("a", "/lib/pkg/a.py", b"A = 2\n" + os.urandom(9000)),
           deploy.Item("b", "/lib/b.py", b"B = 2\n" + b"#" * 20000)]

    class Breaks:
        calls = 0

        def exec(self, code):
            Breaks.calls += 1
            if Breaks.calls == 2:  # the upload is under way, then the link dies
                raise OSError("link closed")
            return board.exec(code)

    with pytest.raises(OSError):
        bundle.send_bundle(Breaks(), new)
    assert (fs / "lib" / "pkg" / "a.py").read_bytes() == b"A = 1\n"
    assert (fs / "lib" / "b.py").read_bytes() == b"B = 1\n"
    size = bundle.send_bundle(board, new)
    assert size < sum(len(i.data) for i in new)
    for item in new:
        assert (fs / item.target.lstrip("/")).read_bytes() == item.data
    assert not list(fs.rglob("*.tmp")) and not (fs / ".synack-bundle.z").exists()
