"""The VM runner itself must be able to fail: a failing portable test is reported as
failed, with the MicroPython traceback."""

from mpyvm import run_portable_tests


def test_runner_reports_pass_and_fail(tmp_path):
    mod = tmp_path / "test_throwaway.py"
    mod.write_text("PORTABLE = True\n"
                   "import sys\n"
                   "def test_ok():\n    assert sys.implementation.name == 'micropython'\n"
                   "def test_bad():\n    raise ValueError('boom')\n")
    res = run_portable_tests([mod])
    assert res.passed == {"test_throwaway.test_ok": True, "test_throwaway.test_bad": False}
    assert "ValueError: boom" in res.messages["test_throwaway.test_bad"]
