"""Recovery times of the four fault scenarios of issue 4, against a baseline run with no fault.

    python bench/recovery.py [--faults agent,coordinator,nats,projector] [--repeat N] [--json]

Each run starts its own nats-server, `planexe-ax serve projector|coordinator|agents` processes (two agents)
and two slow agents, runs a generated plan of 200 subtasks, injects the fault after 60 completed subtasks,
and checks the same invariants as tests/e2e/test_faults.py. PostgreSQL comes from
PLANEXE_TEST_DATABASE_URL, else a throwaway cluster (initdb/pg_ctl), else SQLite files.

Printed per fault: the recovery time (agent: fault -> the killed agent's in-flight work completed by
another agent; coordinator and nats: fault -> first subtask completed after it, restart included;
projector: fault -> restarted and the read model back at the stream's head), the fault -> end time,
and the total time against the baseline's (ratio).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.faults import FAULTS, Measurement, run_scenario
from tests.helpers.postgres import create_database, drop_database, postgres_server


async def _one(fault: str, folder: Path, admin_url: str | None) -> Measurement:
    if admin_url is None:
        return await run_scenario(
            fault,
            folder,
            f"sqlite+aiosqlite:///{folder / 'live.sqlite3'}",
            f"sqlite+aiosqlite:///{folder / 'replay.sqlite3'}",
        )
    live, replay = await create_database(admin_url), await create_database(admin_url)
    try:
        return await run_scenario(fault, folder, live, replay)
    finally:
        await drop_database(admin_url, live)
        await drop_database(admin_url, replay)


def _say(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:6.2f}"


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma separated subset of " + ",".join(FAULTS))
    parser.add_argument("--repeat", type=int, default=1, help="runs per scenario (medians are printed)")
    parser.add_argument("--json", action="store_true", help="also print every measurement as one JSON line")
    args = parser.parse_args()
    faults = [f for f in args.faults.split(",") if f]
    unknown = set(faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown fault(s): {', '.join(sorted(unknown))}")

    results: dict[str, list[Measurement]] = {}
    failures: dict[str, str] = {}
    with postgres_server() as admin_url, tempfile.TemporaryDirectory(prefix="ax-bench-") as tmp:
        _say(f"read model: {'PostgreSQL' if admin_url else 'SQLite'}; runs per scenario: {args.repeat}")
        for fault in ["none", *faults]:
            for i in range(args.repeat):
                try:
                    measured = await _one(fault, Path(tmp) / f"{fault}-{i}", admin_url)
                except AssertionError as exc:
                    failures[fault] = str(exc).splitlines()[0][:300]
                    _say(f"  fault={fault} INVARIANT BROKEN: {failures[fault]}")
                    continue
                results.setdefault(fault, []).append(measured)
                _say(f"  {measured.line()}")
                if args.json:
                    _say(json.dumps(measured.properties()))

    baseline = _median([m.total_s for m in results.get("none", [])])
    if baseline is None:
        _say(f"the baseline run failed: {failures.get('none')}")
        return 1
    _say()
    _say(f"{'fault':<12} {'recovery s':>10} {'fault->end s':>12} {'total s':>8} {'baseline s':>10} {'ratio':>6}")
    _say(f"{'none':<12} {'-':>10} {'-':>12} {baseline:8.2f} {baseline:10.2f} {1.0:6.2f}")
    for fault in faults:
        runs = results.get(fault, [])
        if not runs:
            _say(f"{fault:<12} invariant broken, no time: {failures.get(fault, '')[:80]}")
            continue
        total = _median([m.total_s for m in runs])
        assert total is not None
        recovery = _median([m.recovery_s() for m in runs])
        end = _median([m.end_s for m in runs])
        _say(f"{fault:<12} {_fmt(recovery):>10} {_fmt(end):>12} {total:8.2f} {baseline:10.2f} {total / baseline:6.2f}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
