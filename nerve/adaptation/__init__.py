"""Per-domain adaptation: a small model fitted on a domain's own labelled pool, over the frozen
encoder states BANER already computes (one encoder pass serves both), versioned per domain."""
