"""Per-domain adaptation in the gateway: the runs (their processes and locks), the API, the
trigger as pools grow; the model, the fit, the job and the store are in nerve/adaptation/."""
