"""Secrets stay out of everything a HIL run leaves behind: the masking helper
(synack_host.secrets) on its own, then a whole HIL run on the virtual rig over Wi-Fi
with a distinctive --wifi-key and tests that fail on purpose after bring-up, with the
key in an assertion, printed, logged, raised by the device and printed by it - and not
one artefact of the run (device logs, JUnit XML, log file, stdout, stderr) holds it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pytest

from synack_host import secrets

KEY = "s3cr3t-KEY-9f8e"


@pytest.fixture
def registry():
    secrets.forget_all()
    yield secrets
    secrets.forget_all()


def test_mask_every_spelling_of_a_registered_value(registry):
    assert registry.mask("nothing registered " + KEY) == "nothing registered " + KEY
    odd = "it's a \\ key-ü"
    registry.register(KEY, odd, "", None, b"tok-123456")
    assert registry.mask(f"WifiLink('ssid', {KEY!r})") == "WifiLink('ssid', '***')"
    assert registry.mask(f"x = {odd!r}") == "x = ***" or "key-ü" not in registry.mask(
        f"x = {odd!r}")
    for spelled in (odd, repr(odd), repr(odd.encode()), "Bearer tok-123456"):
        masked = registry.mask(spelled)
        assert "key-" not in masked and "tok-123456" not in masked, masked
    assert registry.mask(f"b'{KEY}'".encode()) == b"b'***'"
    assert registry.contains("..." + KEY) and not registry.contains("clean")
    assert registry.mask_xml(f'<a m="{odd}"/>'.replace("'", "&apos;")).count("key-") == 0


def test_scrub_masks_reports_in_place_and_exceptions(registry):
    @dataclass
    class Entry:
        lines: list[str]
        loc: tuple[str, int]

    @dataclass
    class Chain:
        entries: list[Entry] = field(default_factory=list)
        message: str = ""

    registry.register(KEY)
    chain = Chain([Entry([f"> assert {KEY!r} == 'x'", "E   assert ..."], (f"f{KEY}", 3))],
                  f"AssertionError: {KEY}")
    assert registry.scrub(chain) is chain
    assert KEY not in repr(chain) and "***" in chain.entries[0].lines[0]
    assert registry.scrub(("path", 1, f"skipped: {KEY}")) == ("path", 1, "skipped: ***")

    class DeviceError(Exception):
        def __init__(self, text):
            super().__init__(f"device raised {text}")
            self.traceback = text

    try:
        try:
            raise KeyError(KEY)
        except KeyError as inner:
            raise DeviceError(f"ValueError: {KEY}") from inner
    except DeviceError as e:
        assert registry.scrub_exception(e) is e
        assert KEY not in str(e) and KEY not in e.traceback and "***" in str(e)
        assert KEY not in str(e.__cause__)


def test_hil_run_leaves_no_secret_in_any_artefact(pytester, tmp_path, monkeypatch):
    pytester.makepyfile(test_leaky="""
        import logging

        def test_key_in_an_assertion(board):
            key = board.eval("link.key")
            print("device key:", key)
            logging.getLogger("hil").warning("the key is %s", key)
            assert key == "another key"

        def test_device_raises_with_the_key(board):
            board.exec("print('up', link.key)")
            board.exec("raise ValueError('wrong key ' + link.key)")

        def test_device_prints_the_key_and_times_out(board):
            board.start("print('on device:', link.key)")
            board.expect("never printed", timeout=1)
    """)
    logdir = tmp_path / "logs"
    junit = tmp_path / "report.xml"
    logfile = tmp_path / "run.log"
    monkeypatch.delenv("SYNACK_WIFI_KEY", raising=False)
    result = pytester.runpytest_subprocess(
        "--modem", "wifi", "--wifi-key", KEY, "--hil-logdir", str(logdir),
        "--junitxml", str(junit), "--log-file", str(logfile), "-rA", "-l",
        "-o", "junit_logging=all",
        "-p", "no:cacheprovider")
    result.assert_outcomes(failed=3)
    artefacts = {p.name: p.read_text(errors="replace") for p in logdir.iterdir()}
    assert {"test_key_in_an_assertion.log", "test_device_raises_with_the_key.log",
            "test_device_prints_the_key_and_times_out.log"} <= set(artefacts)
    artefacts |= {"junit": junit.read_text(), "log file": logfile.read_text(),
                  "stdout": result.stdout.str(), "stderr": result.stderr.str()}
    leaks = [name for name, text in artefacts.items() if KEY in text]
    assert not leaks, f"the Wi-Fi key is in {leaks}"
    # what was there is still there, masked
    bring_up = artefacts["test_key_in_an_assertion.log"]
    assert "_synack_wifi_key = ***" in bring_up and "WifiLink('synack-virtual'" in bring_up
    assert "'***'" in artefacts["stdout"] and "device key: ***" in artefacts["junit"]
    assert "the key is ***" in artefacts["log file"]
    assert "ValueError: wrong key ***" in artefacts["test_device_raises_with_the_key.log"]
    assert "on device: ***" in artefacts["stdout"]   # the device's output in DeviceTimeout


def test_filter_masks_log_records(registry):
    from synack_host.hil.plugin import _MaskSecrets

    registry.register(KEY)
    record = logging.LogRecord("hil", logging.INFO, __file__, 1, "key=%s", (KEY,), None)
    assert _MaskSecrets().filter(record) and record.getMessage() == "key=***"
    plain = logging.LogRecord("hil", logging.INFO, __file__, 1, "n=%d", (3,), None)
    _MaskSecrets().filter(plain)
    assert plain.args == (3,)                   # untouched without a secret
