"""``python -m cableway``: the same as the ``cableway`` command."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
