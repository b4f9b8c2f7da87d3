"""What application backends import: signed stream names (:mod:`.streams`), identification
tokens (:mod:`.tokens`), the broadcaster (:mod:`.broadcaster`), Turbo Stream HTML
(:mod:`.turbo_stream`) and the framework glue (:mod:`.integration`).

No server code runs here: these modules need only the standard library and
:mod:`cableway.auth`. The documented paths ``cableway.streams``, ``cableway.tokens``,
``cableway.broadcaster``, ``cableway.turbo_stream`` and ``cableway.integration`` re-export
them and keep working.
"""

from __future__ import annotations
