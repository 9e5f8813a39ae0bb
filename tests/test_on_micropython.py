"""The portable firmware tests (tests/firmware, PORTABLE = True) again, inside a real
MicroPython VM: the parser, engine and TCP state logic must hold on MicroPython, not
only on CPython."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpyvm import VMError, portable_modules, run_portable_tests, portable_test_names

HERE = Path(__file__).resolve().parent / "firmware"
MODULES = portable_modules(HERE)
CASES = [f"{m.stem}.{name}" for m in MODULES for name in portable_test_names(m)]


@pytest.fixture(scope="session")
def vm_results():
    try:
        return run_portable_tests(MODULES)
    except VMError as e:
        pytest.fail(str(e))


# the first case's setup runs every portable module in the VM (a few minutes on a
# loaded 2-core machine): more than the suite's default 120 s per test
@pytest.mark.timeout(600)
@pytest.mark.parametrize("case", CASES)
def test_portable_case_on_micropython(vm_results, case):
    assert case in vm_results.passed, f"{case} did not run in the VM:\n{vm_results.output[-1500:]}"
    assert vm_results.passed[case], f"{case} failed on MicroPython: {vm_results.messages[case]}"
