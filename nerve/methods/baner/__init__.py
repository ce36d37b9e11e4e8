"""BANER (arXiv 2412.02228) on a small encoder: boundary-aware span detection trained on the
source data, then typing against the request's support examples (no per-domain training)."""
