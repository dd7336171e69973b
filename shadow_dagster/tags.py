"""Tag and metadata names shared by every part of shadow-dagster (no Dagster import)."""

PREFIX = "shadow_dagster/"
WORKFLOW_TAG = PREFIX + "workflow"          # groups runs of a chain into one workflow instance
CRITICAL_TAG = PREFIX + "critical"          # op/asset tag; "false" marks a step safe to pre-execute
SHADOW_TAG = PREFIX + "shadow"              # "true" on shadow runs
PARENT_TAG = PREFIX + "parent"              # live run id or workflow key a shadow run serves
PREDICTION_TAG = PREFIX + "prediction"      # prediction id of a shadow run
PROBABILITY_TAG = PREFIX + "probability"    # predicted probability of the shadow work
REUSED_FROM = PREFIX + "reused_from"        # materialization metadata: shadow run id reused
SECONDS_SAVED = PREFIX + "seconds_saved"    # materialization metadata
PROVENANCE_KEY = PREFIX + "provenance_key"  # output metadata: key of a shadow or reused output
CONTENT_HASH = PREFIX + "content_hash"      # output metadata: sha256 of the shadow output's bytes
SELECTION_TAG = PREFIX + "selection"        # shadow run: JSON list of every asset key it executes
SHADOW_PARTITION_TAG = PREFIX + "partition"  # shadow run: the partition it executes (never dagster/partition)
INTENSITY_MARKER = PREFIX + "intensity"     # log-message marker written by report_intensity()
OUTPUT_BYTES = PREFIX + "output_bytes"      # output metadata key an IO manager may report
OWN_RUN_TAG = PREFIX + "own"                # "true" on the refit and report runs: no user workflow
PARTITION_TAG = "dagster/partition"         # Dagster's run tag for the run's partition key
ACTIVITY_TAG = PREFIX + "activity"            # shadow run: the predicted activity ("job/step")
TARGETS_TAG = PREFIX + "targets"              # shadow run: JSON list of the activity's own asset keys
POSITION_TAG = PREFIX + "position"            # shadow run: index the activity was expected at
PREFIX_LEN_TAG = PREFIX + "prefix_length"     # shadow run: live steps started when it was predicted
PREDICTED_AT_TAG = PREFIX + "predicted_at"    # shadow run: epoch seconds of the prediction
SCHEDULED_FOR_TAG = PREFIX + "scheduled_for"  # shadow run for a run a schedule launches: its tick (epoch s)
SHADOW_WORKFLOW_TAG = PREFIX + "shadow_of"    # shadow run: the workflow (job of the first live run)


def is_critical(tags: dict | None) -> bool:
    """Every step is critical unless its tags say `shadow_dagster/critical: "false"`."""
    value = (tags or {}).get(CRITICAL_TAG)
    return not (isinstance(value, str) and value.strip().lower() == "false")


def is_shadow_run(run_tags: dict | None) -> bool:
    return str((run_tags or {}).get(SHADOW_TAG, "")).lower() == "true"


def is_own_run(run_tags: dict | None) -> bool:
    """A run shadow-dagster made itself (a shadow run, a refit or report run): never a workflow to learn."""
    return is_shadow_run(run_tags) or str((run_tags or {}).get(OWN_RUN_TAG, "")).lower() == "true"


def shadow_partition(run_tags: dict | None) -> str | None:
    """The partition a shadow run executes (its own tag; Dagster's for runs of the asset job itself)."""
    tags = run_tags or {}
    return tags.get(SHADOW_PARTITION_TAG) or tags.get(PARTITION_TAG) or None
