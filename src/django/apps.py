"""The ``cableway.django`` application (``INSTALLED_APPS += ["cableway.django"]``)."""

from __future__ import annotations

from django.apps import AppConfig

from ..toolkit.integration import register_streamable, set_settings_provider
from .conf import get_settings, model_stream_param


class CablewayConfig(AppConfig):
    """Registers how model instances name streams and where the settings come from."""

    name = "cableway.django"
    label = "cableway"
    verbose_name = "Cableway"

    def ready(self) -> None:
        """Name model instances in streams; make Django's settings the testing default."""
        register_streamable(model_stream_param)
        set_settings_provider(get_settings)
