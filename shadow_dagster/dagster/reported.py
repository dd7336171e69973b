"""Assets that shadow-dagster reports from op jobs instead of materialising as executable assets.

The history and report assets are non-executable `AssetSpec`s: the UI lists them with their lineage
and metadata, but no user job (e.g. `define_asset_job(selection=AssetSelection.all())`) can select
them, so merging shadow-dagster never adds a step to a user job. An op named after each spec
computes the metadata and logs the spec's materialization.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from dagster import AssetMaterialization, AssetSpec, In, Nothing, OpDefinition, Out, in_process_executor, job, op

from shadow_dagster.tags import OWN_RUN_TAG

# Reporting never competes with live runs for the host: one process (no step process per op, each
# loading the code location), queued behind live runs, its ops in a concurrency pool of their own
# that a deployment can limit (`dagster instance concurrency set shadow_dagster 1`).
POOL = "shadow_dagster"
RUN_TAGS = {"dagster/priority": "-10", OWN_RUN_TAG: "true"}


@dataclass(frozen=True)
class Reported:
    """A reported asset: its spec and the op that logs its materialization."""

    spec: AssetSpec
    op: OpDefinition


def reported_asset(spec: AssetSpec, compute: Callable[..., dict], *,
                   resource_keys: Iterable[str] = ()) -> Reported:
    """`compute(context)` returns the metadata of one materialization of `spec`."""
    name = spec.key.path[-1]

    @op(name=name, ins={"after": In(Nothing)}, out=Out(Nothing), description=spec.description,
        required_resource_keys=set(resource_keys), pool=POOL)
    def _report(context):
        context.log_event(AssetMaterialization(spec.key, metadata=compute(context)))

    return Reported(spec, _report)


def reporting_job(name: str, reported: list[Reported], *, description: str | None = None):
    """A job running the reports in the order given, each after the one before, in one process at
    low run priority."""
    if not reported:
        raise ValueError(f"job {name!r} needs at least one reported asset")

    def chain():
        previous = None
        for r in reported:
            previous = r.op() if previous is None else r.op(after=previous)

    chain.__name__ = name
    return job(name=name, description=description, executor_def=in_process_executor, tags=RUN_TAGS)(chain)
