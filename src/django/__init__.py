"""Cableway for Django: template tags, model broadcasts after commit, Turbo Stream responses,
and ``manage.py cableway``.

Add ``"cableway.django"`` to ``INSTALLED_APPS``; settings come from ``settings.CABLEWAY`` (a
dict whose keys are the server's option names: ``secret``, ``websocket_url``...) or the
``ANYCABLE_*`` environment variables the server reads. See docs/recipes/django.md.

The public names live in submodules so that importing one never needs the app registry:

* :mod:`cableway.django.broadcasts`: ``broadcasts_to``, ``broadcasts``, ``broadcast``,
  ``dom_id``;
* :mod:`cableway.django.responses`: ``TurboStreamResponse``, ``render_turbo_stream``,
  ``accepts_turbo_stream``;
* :mod:`cableway.django.conf`: ``get_settings``, ``stream_name``;
* :mod:`cableway.django.channels`: ``session_user``, ``session`` (a
  :mod:`cableway.channels` connection's Django user and session, from its cookie);
* the ``cableway`` template tag library: ``turbo_stream_from``, ``cable_meta_tag``.

Supported: the Django releases the Django project supports (5.2 LTS and later; tested with
5.2); only APIs that exist since Django 4.2 are used.
"""

from __future__ import annotations

__all__: list[str] = []
