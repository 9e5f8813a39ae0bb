"""The board's config file (``/synack_config.json``): what it may hold, checked on the
host before a byte goes to the board (``synack deploy --config FILE``).

Strict JSON (no NaN/Infinity, no duplicate keys, an object at the top, bounded size and
depth) checked against CONFIG_SCHEMA; unknown keys are refused by name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .deploy import DeployError, Item, send_item


# -- the board's config file ----------------------------------------------------------
# What /synack_config.json may hold: key -> Str / Int / Obj(fields) / Map(value spec).
# Unknown keys are refused by name, so a misspelt "wfi" does not silently do nothing.
@dataclass(frozen=True)
class Str:
    lo: int = 0
    hi: int = 255
    prefixes: tuple[str, ...] = ()   # the value must start with one of these
    digits: bool = False

    def check(self, value, where: str) -> None:
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, got {_json_kind(value)}")
        if not self.lo <= len(value) <= self.hi:
            raise ValueError(f"{where} must be {self.lo}..{self.hi} characters, "
                             f"got {len(value)}")
        if self.digits and not value.isdigit():
            raise ValueError(f"{where} must be digits only")
        if self.prefixes and not value.startswith(self.prefixes):
            raise ValueError(f"{where} must start with {' or '.join(self.prefixes)}, "
                             f"got {value[:60]!r}")


@dataclass(frozen=True)
class Int:
    lo: int
    hi: int

    def check(self, value, where: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} must be a whole number, got {_json_kind(value)}")
        if not self.lo <= value <= self.hi:
            raise ValueError(f"{where} must be {self.lo}..{self.hi}, got {value}")


@dataclass(frozen=True)
class Obj:
    fields: dict
    required: tuple[str, ...] = ()

    def check(self, value, where: str) -> None:
        if not isinstance(value, dict):
            raise ValueError(f"{where or 'the top level'} must be an object, "
                             f"got {_json_kind(value)}")
        for key, item in value.items():
            path = f"{where}.{key}" if where else key
            if key not in self.fields:
                raise ValueError(f"unknown key {path!r} (known: "
                                 f"{', '.join(sorted(self.fields))})")
            self.fields[key].check(item, path)
        for key in self.required:
            if key not in value:
                raise ValueError(f"{where}.{key} is missing" if where else f"{key} is missing")


@dataclass(frozen=True)
class Map:
    value: Str | Int
    max_items: int = 32

    def check(self, value, where: str) -> None:
        if not isinstance(value, dict):
            raise ValueError(f"{where} must be an object, got {_json_kind(value)}")
        if len(value) > self.max_items:
            raise ValueError(f"{where} has {len(value)} entries, at most {self.max_items}")
        for key, item in value.items():
            Str(1, 32).check(key, f"a key of {where}")
            self.value.check(item, f"{where}.{key}")


MS_PER_DAY = 86_400_000
CONFIG_SCHEMA = Obj({
    "apn": Str(0, 100),                                   # the modem's PDP context
    "pin": Str(4, 8, digits=True),                        # SIM PIN
    "wifi": Obj({"ssid": Str(1, 32), "key": Str(0, 64)}, required=("ssid",)),
    "server_host": Str(1, 253),                           # name or address of the host
    "endpoints": Map(Str(8, 2048, prefixes=("http://", "https://"))),  # name -> URL
    "keepalive": Obj({"idle": Int(1, 7200), "interval": Int(1, 7200),   # seconds
                      "count": Int(1, 100)}),
    "heartbeat": Obj({"idle_ms": Int(1, MS_PER_DAY), "timeout_ms": Int(1, MS_PER_DAY),
                      "misses": Int(1, 100)}),
    "poll": Obj({"interval_ms": Int(1, MS_PER_DAY), "jitter_ms": Int(0, MS_PER_DAY)}),
})
CONFIG_MAX_BYTES = 16 * 1024   # the board parses it in RAM
CONFIG_MAX_DEPTH = 4           # the schema nests two levels; more is a mistake


def _json_kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false",
            int: "a number", float: "a number", type(None): "null"}.get(type(value),
                                                                          type(value).__name__)


def _json_depth(text: str) -> int:
    """How deeply ``[``/``{`` nest in JSON text (outside strings), without recursing."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    seen: dict = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_config(text: str) -> dict:
    """The config as a dict, checked against CONFIG_SCHEMA; ValueError says what is
    wrong (strict JSON: no NaN/Infinity, no duplicate keys, an object at the top)."""
    if _json_depth(text) > CONFIG_MAX_DEPTH:
        raise ValueError(f"nested deeper than {CONFIG_MAX_DEPTH} levels")
    try:
        data = json.loads(text, parse_constant=_no_constant,
                          object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON: {e}") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
    CONFIG_SCHEMA.check(data, "")
    return data


def load_config(config: Path) -> dict:
    """Read and validate a host config file; DeployError names the file and the fault."""
    from .command import describe_os_error, read_regular_file

    try:
        raw = read_regular_file(config, CONFIG_MAX_BYTES)
    except OSError as e:
        raise DeployError(f"config {config}: {describe_os_error(e)}") from None
    try:
        return parse_config(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise DeployError(f"config {config}: not UTF-8 text") from None
    except ValueError as e:
        raise DeployError(f"config {config}: {e}") from None


def write_config(board, config: Path | dict, target: str = "/synack_config.json") -> int:
    """Copy a host JSON config (Wi-Fi, APN, endpoints) to the board, validated first
    (``config``: a file, or what load_config returned)."""
    data = load_config(config) if isinstance(config, Path) else config
    raw = json.dumps(data, separators=(",", ":")).encode()
    send_item(board, Item(str(config) if isinstance(config, Path) else "config", target, raw))
    return len(raw)
