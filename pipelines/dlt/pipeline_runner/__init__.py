"""Shared CLI plumbing for the pipelines under pipelines/dlt/ (API documented below soon)."""

from .redact import redact, redact_url

__all__ = ["redact", "redact_url"]
