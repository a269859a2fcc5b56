"""Contracts shared by the runner, the operator and the gateway: how they talk to each other
(codecs, headers, settings, the shape of a run) and how they change a Kubernetes object
safely. Pure code: no HTTP framework, no Kubernetes client, no runner internals, so that
every component can import it and a test can read it.

    runner_settings   the runner pod's ASSAY_* variables: one model, read by the runner, written by the operator
    upload            upload tokens (RunGrant), the upload PUT's path and headers
    tick              a schedule tick: members, run ids, group tokens, compact outcomes
    progress          a load shard's live progress body (ShardProgress)
    summary           a load shard's termination-message summary (ShardSummary), merge and judge
    histogram         latency histograms in HdrHistogram's buckets and V2 encoding
    optimistic        the read-change-write loop with optimistic concurrency
"""
