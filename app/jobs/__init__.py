"""Asynchronous /v1/ner jobs: long documents answered in the background (their records in
:mod:`app.jobs.store`, their workers in :mod:`app.jobs.runner`, their routes in
:mod:`app.jobs.router`)."""
