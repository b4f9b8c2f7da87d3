"""Operations: logging set-up and secret redaction (:mod:`.logs`), metrics and their
Prometheus and StatsD output (:mod:`.metrics`)."""

from __future__ import annotations
