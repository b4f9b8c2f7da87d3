"""Tools shipped with the ``cableway`` command: the conformance check (``cableway
check``, :mod:`.check`) and the demo page (``cableway --demo``, :mod:`.demo`, its
vendored assets in ``demo_assets/``)."""

from __future__ import annotations
