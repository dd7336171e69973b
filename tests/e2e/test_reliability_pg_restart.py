"""PostgreSQL restarted in the middle of an ingestion tick (cuts every session: marked serial,
so `make test` runs it alone after the parallel part)."""

import pytest

from shadow_dagster_bench.reliability.pg_restart import restart_trial, wait_until_up
from shadow_dagster_bench.reliability.workload import build_event_log


@pytest.mark.postgres
@pytest.mark.serial
def test_restart_mid_tick_fails_clearly_then_the_next_tick_loses_nothing(instance, pg_url):
    build_event_log(instance, 2)
    try:
        r = restart_trial(instance, pg_url, page_size=7, restart_on_page=3)
    finally:
        wait_until_up(pg_url)  # never leave the server down for the next test
    assert r["restart_happened"]
    assert r["first_tick_error_type"] == "SignalStoreUnavailable", r["first_tick_error"]
    assert "is unreachable or not writable" in r["first_tick_error"]
    assert r["cursor_after_failed_tick"] > 0  # the pages before the restart were committed
    assert r["second_tick_cursor_before"] == r["cursor_after_failed_tick"] and r["second_tick_ok"]
    assert (r["duplicates"], r["losses"], r["mismatched"]) == (0, 0, 0)
