"""Follow one live workflow instance of the demo and say where to click: each shadow run launched for
it, each live step that reused a shadow output, and how the instance ended.

`python -m demo_project.watch --workflow KEY --url http://127.0.0.1:3000` reads the
DAGSTER_HOME instance (nothing is written) until the instance's last job has finished or --timeout.
"""

from __future__ import annotations

import argparse
import sys
import time

from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from shadow_dagster.tags import ACTIVITY_TAG
from shadow_dagster.tags import PARENT_TAG, PROBABILITY_TAG, REUSED_FROM, SHADOW_TAG, WORKFLOW_TAG

LAST_JOB = "notify_job"
END = "demo ended:"            # the last line's prefix (scripts read it)


def reuses(instance: DagsterInstance, run_id: str) -> list[tuple[str, str]]:
    """(asset key, shadow run id) of each materialization of the run that reused a shadow output."""
    out = []
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
        mat = entry.asset_materialization
        source = mat.metadata.get(REUSED_FROM) if mat else None
        if source is not None:
            out.append((mat.asset_key.to_user_string(), str(source.value)))
    return out


class Watch:
    """What has been reported so far about one workflow instance."""

    def __init__(self, instance: DagsterInstance, workflow_key: str, url: str, say=print):
        self.instance, self.key, self.url, self.say = instance, workflow_key, url.rstrip("/"), say
        self.shadow_seen: set[str] = set()
        self.reused: list[tuple[str, str, str, str]] = []     # (job, live run id, asset, shadow run id)
        self.failed: list[str] = []                            # "<job> run <id> <STATUS>"
        self._checked: set[str] = set()

    def poll(self) -> bool:
        """Report what is new; True once the instance's last job has finished."""
        for rec in self.instance.get_run_records(RunsFilter(tags={SHADOW_TAG: "true", PARENT_TAG: self.key})):
            run = rec.dagster_run
            if run.run_id not in self.shadow_seen:
                self.shadow_seen.add(run.run_id)
                self.say(f"shadow run {run.run_id[:8]} launched: {run.tags.get(ACTIVITY_TAG, '?')} "
                         f"(p={run.tags.get(PROBABILITY_TAG, '?')}): {self.url}/runs/{run.run_id}")
        done = False
        live = [r.dagster_run for r in self.instance.get_run_records(RunsFilter(tags={WORKFLOW_TAG: self.key}))
                if r.dagster_run.tags.get(SHADOW_TAG) != "true"]
        for run in sorted(live, key=lambda r: r.run_id):
            if not run.is_finished or run.run_id in self._checked:
                continue
            self._checked.add(run.run_id)
            for asset, source in reuses(self.instance, run.run_id):
                self.reused.append((run.job_name, run.run_id, asset, source))
                self.say(f"reuse: live {run.job_name} run {run.run_id[:8]} took {asset} from shadow run "
                         f"{source[:8]} instead of computing it: {self.url}/runs/{run.run_id} "
                         f"(the materialization's metadata shows {REUSED_FROM})")
            if run.status != DagsterRunStatus.SUCCESS:
                self.failed.append(f"{run.job_name} run {run.run_id[:8]} {run.status.value}")
                self.say(f"live {self.failed[-1]}: {self.url}/runs/{run.run_id}")
                done = True
            elif run.job_name == LAST_JOB:
                done = True
        return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Report shadow runs and reuses of one live workflow instance.")
    parser.add_argument("--workflow", required=True, help="the live instance's shadow_dagster/workflow tag")
    parser.add_argument("--url", required=True, help="the Dagster UI's base URL, for the links")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to follow it at most")
    args = parser.parse_args(argv)
    if not 0 < args.timeout <= 86_400:
        print(f"--timeout must be between 0 and 86400 seconds, got {args.timeout}", file=sys.stderr)
        return 2
    deadline = time.monotonic() + args.timeout
    with DagsterInstance.get() as instance:
        watch = Watch(instance, args.workflow, args.url, say=lambda line: print(line, flush=True))
        while not watch.poll():
            if time.monotonic() > deadline:
                print(f"{END} stopped following {args.workflow} after {args.timeout:.0f} s", flush=True)
                return 0
            time.sleep(2)
    if watch.failed:
        print(f"{END} {args.workflow}: live {', '.join(watch.failed)}; {len(watch.reused)} live step(s) "
              "reused a shadow output before that", flush=True)
    elif watch.reused:
        print(f"{END} {args.workflow}: {len(watch.reused)} live step(s) reused a shadow output", flush=True)
    else:
        print(f"{END} {args.workflow} without a reuse; `shadow-dagster shadow list` shows what was "
              "launched and how it was settled", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
