"""Fault tests of issue 4: real processes, a real nats-server of each test's own, a real PostgreSQL read model.

Each test runs a generated plan of 200 subtasks (50 tasks of 4; task i waits on task i-5; one subtask per
task is a 0.3 s ``slow_step`` served by two `python -m tests.helpers.slow_agent` processes, the others run
on two `planexe-ax serve agents` processes) and, after 60 subtasks completed, injects one fault:

1. kill -9 a slow agent while a slow step of it is in flight: its lease runs out and another agent does it;
2. kill -9 the coordinator and start it again: it rebuilds from AX_EVENTS;
3. kill the nats-server and start it again on the same port and store: every process reconnects;
4. kill -9 the projector while it holds unacked events (frozen with SIGSTOP to check, then killed) and start it
   again: it resumes from its checkpoint. This scenario runs with a 10 s lease instead of 2 s, so the events
   the dead projector held come back after newer ones, as they do in production (default 30 s).

Every test then asserts (``tests.helpers.faults.check_invariants``): `exec wait` exits 0; `exec status
--json` lists every subtask once, all COMPLETED; the stream holds exactly one ``subtask_state`` COMPLETED per
subtask and no event id twice; the projected ``execution_events`` of the execution are exactly the stream's
(same sequences and ids); and the read model equals a fresh replay of the whole stream into an empty
database, table by table, except ``agents`` (the live mirror of the ``ax-agents`` KV bucket, not of events).
Recovery times are printed (``-s``) and recorded as test properties.

The same run on a three-node cluster (R3 streams and buckets) asserts the same, with no fault, after kill -9
of the node leading AX_EVENTS, after kill -9 of the coordinator holding the run's partition (the other takes
it over), with a second coordinator started mid-run (the first gives it half of the partitions, the run's
among them or not), and, with one partition, with the leader's only server cut off the others (its routes
relayed and cut, ``tests/helpers/relay.py``): the standby takes over, then the cut heals.
"""

import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.helpers.faults import Measurement, run_scenario
from tests.helpers.postgres import create_database, drop_database

RecordProperty = Callable[[str, object], None]
"""pytest's ``record_property`` fixture."""

pytestmark = [pytest.mark.slow, pytest.mark.nats, pytest.mark.postgres, pytest.mark.timeout(240)]


@pytest.fixture
async def replay_url(postgres_admin_url: str | None) -> AsyncIterator[str]:
    """A second empty database for the fresh replay."""
    if postgres_admin_url is None:
        pytest.skip("no PostgreSQL: set PLANEXE_TEST_DATABASE_URL or install initdb/pg_ctl")
    url = await create_database(postgres_admin_url)
    yield url
    await drop_database(postgres_admin_url, url)


def _report(measured: Measurement, record_property: RecordProperty) -> None:
    sys.stdout.write(f"\nrecovery: {measured.line()} recovery_s={measured.recovery_s()}\n")
    for key, value in measured.properties().items():
        record_property(key, value)
    record_property("recovery_s", measured.recovery_s())


async def test_agent_killed_mid_task_its_work_is_redelivered(
    tmp_path: Path, postgres_url: str, replay_url: str, record_property: RecordProperty
) -> None:
    measured = await run_scenario("agent", tmp_path, postgres_url, replay_url)
    _report(measured, record_property)
    assert measured.lost_subtasks, "the kill landed between tasks"


async def test_coordinator_killed_and_restarted_rebuilds_and_completes(
    tmp_path: Path, postgres_url: str, replay_url: str, record_property: RecordProperty
) -> None:
    measured = await run_scenario("coordinator", tmp_path, postgres_url, replay_url)
    _report(measured, record_property)


async def test_nats_server_killed_and_restarted_everything_reconnects(
    tmp_path: Path, postgres_url: str, replay_url: str, record_property: RecordProperty
) -> None:
    measured = await run_scenario("nats", tmp_path, postgres_url, replay_url)
    _report(measured, record_property)


async def test_projector_killed_and_restarted_read_model_equals_a_fresh_replay(
    tmp_path: Path, postgres_url: str, replay_url: str, record_property: RecordProperty
) -> None:
    measured = await run_scenario("projector", tmp_path, postgres_url, replay_url)
    _report(measured, record_property)
    assert "execution_events" in measured.tables_compared


@pytest.mark.timeout(300)
async def test_a_run_on_a_cluster_of_three_with_r3_streams_completes(
    tmp_path: Path, postgres_url: str, replay_url: str, record_property: RecordProperty
) -> None:
    """The same run on three nats-servers, every stream and bucket replicated three times, no fault."""
    measured = await run_scenario("none", tmp_path, postgres_url, replay_url, nodes=3)
    _report(measured, record_property)


@pytest.mark.timeout(300)
async def test_nats_node_killed_on_a_cluster_of_three_the_run_completes(
    tmp_path: Path, postgres_url: str, replay_url: str, record_property: RecordProperty
) -> None:
    """kill -9 the node leading AX_EVENTS of a three-node cluster (R3 streams); it stays down, the run completes."""
    measured = await run_scenario("nats-node", tmp_path, postgres_url, replay_url, nodes=3)
    _report(measured, record_property)
    assert measured.killed_node


@pytest.mark.timeout(300)
async def test_leading_coordinator_killed_on_a_cluster_a_standby_takes_over(
    tmp_path: Path, postgres_url: str, replay_url: str, record_property: RecordProperty
) -> None:
    """Two coordinators sharing the partitions on a three-node cluster; kill -9 the one holding the run's
    partition: the other takes its partitions over once their keys expire, and completes the run."""
    measured = await run_scenario("leader", tmp_path, postgres_url, replay_url, nodes=3, coordinators=2)
    _report(measured, record_property)
    assert measured.takeover_s is not None
    assert measured.takeover_s < 15, f"the standby took {measured.takeover_s:.1f} s to take over"


@pytest.mark.timeout(300)
async def test_a_second_coordinator_started_mid_run_takes_half_of_the_partitions(
    tmp_path: Path, postgres_url: str, replay_url: str, record_property: RecordProperty
) -> None:
    """One coordinator on a three-node cluster; another starts mid-run: the first gives it half of the partitions
    (the run's or not: either way the run completes, decided by one of them at a time)."""
    measured = await run_scenario("second", tmp_path, postgres_url, replay_url, nodes=3)
    _report(measured, record_property)
    assert measured.partition_moved is not None


@pytest.mark.timeout(300)
async def test_the_leading_coordinator_cut_off_with_its_node_a_standby_takes_over(
    tmp_path: Path, postgres_url: str, replay_url: str, record_property: RecordProperty
) -> None:
    """One partition. The leader's only server loses its routes (the leader stays connected to it): the standby,
    on the other two nodes, takes the partition when its key runs out and completes the run; healed, the old
    leader stands by."""
    measured = await run_scenario("partition", tmp_path, postgres_url, replay_url, nodes=3, coordinators=2)
    _report(measured, record_property)
    assert measured.takeover_s is not None
    assert measured.takeover_s < 20, f"the standby took {measured.takeover_s:.1f} s to take over"
