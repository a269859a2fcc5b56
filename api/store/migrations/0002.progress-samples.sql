-- Merged live figures of a load test run over time (progress.py progress_sample), at most
-- one per SAMPLE_SECONDS and MAX_SAMPLES per run, purged with the run.
CREATE TABLE run_progress_samples (
    run_id TEXT COLLATE "C" NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    doc TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (run_id, at)
);
