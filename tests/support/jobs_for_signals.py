"""Small real Dagster jobs whose event logs the signal tests ingest."""

import dagster as dg

from shadow_dagster import report_intensity

ATTEMPTS: dict[str, int] = {}


@dg.op(out={"weekday": dg.Out(is_required=False), "weekend": dg.Out(is_required=False)})
def choose_branch(context):
    report_intensity(context, 0.5)
    yield dg.Output(1, "weekday", metadata={"shadow_dagster/output_bytes": 2048})


@dg.op
def weekday_path(x):
    return x + 1


@dg.op
def weekend_path(x):
    return x + 2


@dg.op(retry_policy=dg.RetryPolicy(max_retries=1))
def flaky(context, x):
    key = context.run_id
    ATTEMPTS[key] = ATTEMPTS.get(key, 0) + 1
    if ATTEMPTS[key] == 1:
        raise RuntimeError("transient failure, retried")
    return x


@dg.op
def always_fails(x):
    raise RuntimeError("this step always fails")


@dg.job(tags={"shadow_dagster/workflow": "wf-1"})
def branching_job():
    weekday, weekend = choose_branch()
    flaky(weekday_path(weekday))
    weekend_path(weekend)


@dg.job
def failing_job():
    weekday, _ = choose_branch()
    always_fails(weekday)


@dg.op
def bad_intensity(context):
    context.log.info("shadow_dagster/intensity=2.5")  # bypasses the helper: the sensor must skip it
    return 1


@dg.job
def hostile_job():
    bad_intensity()


@dg.op
def reports_nan(context):
    report_intensity(context, float("nan"))


@dg.job
def nan_job():
    reports_nan()
