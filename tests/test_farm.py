"""``synack farm`` and ``synack hil --place/--places``: three virtual boards shared through
a real labgrid coordinator and exporter, their serial ports served over RFC 2217 by a
real ser2net, all on 127.0.0.1. The farm is started once for the module (``farm up
--background``) and stopped by ``farm down``; the HIL runs use small -k subsets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from synack_host import farm

pytestmark = pytest.mark.timeout(300)
CLI = [sys.executable, "-m", "synack_host.cli"]
CONNECT = "test_connect"          # 3 quick tests: DNS, connect, echo, close, refusal


def _tools() -> None:
    why = farm.missing_tools()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the farm must run in CI: {why}")
        pytest.skip(why)


def synack(*args: str, env: dict | None = None, timeout: float = 240, cwd=None):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
                          cwd=cwd, check=False)


def ok(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 0, f"status {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res.stdout


@pytest.fixture(scope="module")
def lab_farm(tmp_path_factory):
    """``synack farm up --boards 3``: (state dict, env with LG_COORDINATOR)."""
    _tools()
    state_dir = tmp_path_factory.mktemp("farm") / "state"
    out = ok(synack("farm", "up", "--boards", "3", "--engine", "cpython", "--background",
                    "--state-dir", str(state_dir)))
    state = json.loads((state_dir / farm.STATE_FILE).read_text())
    try:
        assert f"LG_COORDINATOR={state['coordinator']}" in out
        yield state, {"LG_COORDINATOR": state["coordinator"]}
    finally:
        down = synack("farm", "down", "--state-dir", str(state_dir), timeout=60)
    ok(down)
    assert not state_dir.exists()
    assert not [p for p, _ in state["processes"].values()
                if farm.alive(int(p), "")], "farm down left processes behind"


def test_farm_up_exports_places_with_rfc2217_ports(lab_farm):
    state, env = lab_farm
    assert [p["name"] for p in state["places"]] == ["synack-1", "synack-2", "synack-3"]
    for p in state["places"]:
        assert p["url"].startswith("rfc2217://127.0.0.1:")
    res = ok(subprocess.run([sys.executable, "-m", "labgrid.remote.client", "places"],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, **env}))
    assert {"synack-1", "synack-2", "synack-3"} <= {line.split()[0] for line in
                                                    res.splitlines() if line.strip()}


def test_hil_on_one_place_over_rfc2217(lab_farm, tmp_path):
    _, env = lab_farm
    junit = tmp_path / "one.xml"
    out = ok(synack("hil", "--place", "synack-1", "-k", CONNECT, "--junit", str(junit),
                    "--logdir", str(tmp_path / "logs"), env=env))
    assert "synack hil on place synack-1: rfc2217://127.0.0.1:" in out
    assert "3 passed, 0 failed" in out
    places = {p.get("value") for p in ET.parse(junit).iter("property")
              if p.get("name") == "place"}
    assert places == {"synack-1"}
    with _lab(env) as lab:
        assert lab.holder("synack-1") is None, "the place was not released"


def test_a_held_place_is_a_clear_error_naming_the_holder(lab_farm, tmp_path):
    _, env = lab_farm
    alice = {**env, "LG_USERNAME": "alice", "LG_HOSTNAME": "lab-pc"}
    ok(_client(alice, "-p", "synack-2", "acquire"))
    try:
        res = synack("hil", "--place", "synack-2", "-k", CONNECT, "--junit",
                     str(tmp_path / "r.xml"), env=env, timeout=60)
        assert res.returncode == 1
        assert res.stderr.strip() == ("synack: place synack-2 is held by lab-pc/alice; "
                                      "wait until they release it"), res.stderr
        assert "Traceback" not in res.stderr + res.stdout
    finally:
        ok(_client(alice, "-p", "synack-2", "release"))
    with _lab(env) as lab:          # released: anyone can have it now
        lab.acquire("synack-2")
        assert lab.holder("synack-2") == lab.identity
        assert lab.release("synack-2")
        assert lab.holder("synack-2") is None


def test_hil_sharded_across_three_places(lab_farm, tmp_path):
    _, env = lab_farm
    junit = tmp_path / "merged.xml"
    out = ok(synack("hil", "--places", "synack-1,synack-2,synack-3", "-k", CONNECT,
                    "--junit", str(junit), "--logdir", str(tmp_path / "logs"), env=env))
    assert "3 passed, 0 failed" in out
    prefixed = [line for line in out.splitlines() if line.startswith("[synack-")]
    assert any("PASSED" in line for line in prefixed), out
    cases = list(ET.parse(junit).iter("testcase"))
    assert len(cases) == 3
    where = {c.get("name"): {p.get("value") for p in c.iter("property")
                             if p.get("name") == "place"} for c in cases}
    assert all(len(v) == 1 for v in where.values()), where
    assert set().union(*where.values()) == {"synack-1", "synack-2", "synack-3"}
    assert not list(tmp_path.glob("merged.synack-*.xml")), "per-place reports left behind"


def test_deploy_and_exec_over_rfc2217(lab_farm):
    state, _ = lab_farm
    url = state["places"][2]["url"]
    # a fresh destination: the whole package crosses ser2net; then nothing changes
    out = ok(synack("deploy", "-p", url, "--dest", "/farm"))
    assert "40 changed" in out or " 0 changed" not in out, out
    again = ok(synack("deploy", "-p", url, "--dest", "/farm"))
    assert " 0 changed, 0 bytes to send" in again, again
    res = ok(synack("exec", "-p", url, "import os; print('tcp.py' in os.listdir("
                    "'/farm/synack'), os.stat('/farm/synack/tcp.py')[6] > 1000)"))
    assert res.strip() == "True True", res
    big = ok(synack("exec", "-p", url, "print('x' * 20000)"))   # more than a TCP window
    assert big.strip() == "x" * 20000
    res = synack("exec", "-p", url, "1/0")
    assert res.returncode == 1 and "ZeroDivisionError" in res.stderr


def _client(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labgrid.remote.client", *args],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env}, check=False)


def _lab(env: dict):
    from synack_host.hil.places import Lab

    return Lab(env["LG_COORDINATOR"])


def test_the_plugin_option_acquires_and_releases_by_itself(lab_farm, tmp_path):
    """``pytest hil_tests --place NAME`` without synack hil: the plugin holds the place."""
    _, env = lab_farm
    from synack_host.hil.run import DEFAULT_TESTS

    res = subprocess.run([sys.executable, "-m", "pytest", str(DEFAULT_TESTS), "-q",
                          "-p", "no:cacheprovider", "-p", "no:labgrid", "-o", "addopts=",
                          "--place", "synack-3", "-k", "refused",
                          "--hil-logdir", str(tmp_path)], capture_output=True, text=True,
                         timeout=180, env={**os.environ, **env}, check=False)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "1 passed" in res.stdout
    with _lab(env) as lab:
        assert lab.holder("synack-3") is None
