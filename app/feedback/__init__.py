"""Reported outcomes of past /v1/ner answers, and corrections that grow a domain's pool."""
