"""Summarise mutmut runs made by scripts/mutate.sh into a Markdown and a JSON report.

Usage: python scripts/mutation_report.py build/mutation bench/reports/mutation
Reads build/mutation/<group>/mutants/src/**/*.py.meta (mutmut's own verdicts), and for
each surviving mutant its diff (``mutmut show``). Equivalent mutants are the lines marked
``# pragma: no mutate`` in the source: mutmut generates no mutant there, so they are counted
from the source and left out of the score. Score = (killed + timeout) / non-equivalent
mutants (a timeout is a kill: the tests did not pass).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests",
          36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout",
          None: "not checked"}
KINDS = ("killed", "survived", "timeout", "no tests", "not checked", "suspicious")


def mutmut_bin() -> str:
    return str(Path(sys.executable).with_name("mutmut"))


def collect(root: Path) -> dict:
    files = {}
    for group in sorted(p for p in root.iterdir() if (p / "mutants").is_dir()):
        for meta in sorted((group / "mutants" / "src").rglob("*.py.meta")):
            rel = meta.relative_to(group / "mutants" / "src").as_posix()[: -len(".meta")]
            codes = json.loads(meta.read_text())["exit_code_by_key"]
            if not codes:
                continue
            source = (group / "src" / rel).read_text()
            counts = dict.fromkeys(KINDS, 0)
            survivors = []
            mutants_module = []  # parsed once per file, on the first survivor
            for name, code in sorted(codes.items()):
                kind = STATUS.get(code, "suspicious")
                counts[kind] += 1
                if kind in ("survived", "no tests", "suspicious"):
                    survivors.append({"mutant": name, "status": kind,
                                      "diff": diff(group, rel, name, mutants_module)})
            counts["equivalent (marked)"] = source.count("pragma: no mutate")
            scored = sum(counts[k] for k in KINDS if k != "not checked")
            counts["score"] = round(100.0 * (counts["killed"] + counts["timeout"]) / scored, 1) \
                if scored else None
            files["firmware/" + rel] = {"group": group.name, **counts,
                                        "survivors": survivors}
    return files


def diff(group: Path, rel: str, name: str, cache: list) -> str:
    """The mutant's changed lines, from mutmut's own mutants file (parsed once per file):
    what ``mutmut show`` prints, without a process per mutant; ``show`` if that fails."""
    here = os.getcwd()
    try:
        import difflib

        import libcst as cst
        os.chdir(group)  # mutmut reads its configuration from there when first imported
        from mutmut.mutation.diff_apply import read_mutant_function, read_original_function
        if not cache:
            cache.append(cst.parse_module((group / "mutants" / "src" / rel).read_text()))
        module = cache[0]
        orig, mutant = (cst.Module([f]).code.strip().split("\n") for f in
                        (read_original_function(module, name), read_mutant_function(module, name)))
    except Exception:  # another mutmut version, or a module it cannot parse
        return show(group, name)
    finally:
        os.chdir(here)
    return "\n".join(ln for ln in difflib.unified_diff(orig, mutant, lineterm="")
                     if ln.startswith(("+", "-")) and not ln.startswith(("+++", "---")))


def show(group: Path, name: str) -> str:
    out = subprocess.run([mutmut_bin(), "show", name], cwd=group, capture_output=True,
                         text=True, timeout=60).stdout
    lines = [ln for ln in out.splitlines()
             if ln.startswith(("+", "-")) and not ln.startswith(("+++", "---"))]
    return "\n".join(lines)


def write(files: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    total = {k: sum(f[k] for f in files.values()) for k in KINDS + ("equivalent (marked)",)}
    scored = sum(total[k] for k in KINDS if k != "not checked")
    total["score"] = round(100.0 * (total["killed"] + total["timeout"]) / scored, 1) \
        if scored else None
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out.with_suffix(".json").write_text(json.dumps(
        {"generated": stamp, "tool": "mutmut", "total": total, "files": files}, indent=2) + "\n")
    md = ["# Mutation testing of the protocol cores", "",
          f"Generated {stamp} by `bash scripts/mutate.sh` (mutmut, one group's fast tests "
          "per file; see docs/development.md). Score = (killed + timeout) / non-equivalent "
          "mutants; equivalent mutants are the lines marked `# pragma: no mutate` with a "
          "reason, and are not generated; a run stopped early leaves mutants not checked "
          "(not in the score).", "",
          "| file | killed | survived | timeout | no tests | equivalent (marked) | not checked "
          "| score |",
          "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for path, f in files.items():
        md.append(f"| `{path}` | {f['killed']} | {f['survived']} | {f['timeout']} | "
                  f"{f['no tests']} | {f['equivalent (marked)']} | {f['not checked']} | "
                  f"{f['score']} % |")
    md.append(f"| **total** | {total['killed']} | {total['survived']} | {total['timeout']} | "
              f"{total['no tests']} | {total['equivalent (marked)']} | {total['not checked']} | "
              f"{total['score']} % |")
    md += ["", "## Surviving mutants", ""]
    for path, f in files.items():
        if not f["survivors"]:
            continue
        md += [f"### `{path}`", ""]
        for s in f["survivors"]:
            md += [f"- `{s['mutant']}` ({s['status']})", "", "  ```diff"]
            md += ["  " + ln for ln in s["diff"].splitlines()] + ["  ```", ""]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")


def main() -> None:
    root, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    files = collect(root)
    write(files, out)
    for path, f in files.items():
        print(f"{path}: killed {f['killed']} survived {f['survived']} timeout {f['timeout']} "
              f"no-tests {f['no tests']} equivalent {f['equivalent (marked)']} "
              f"score {f['score']} %")


if __name__ == "__main__":
    main()
