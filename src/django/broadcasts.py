"""Models that broadcast their own changes after the transaction commits, as turbo-rails'
``broadcasts_to`` / ``broadcasts`` do::

    from cableway.django.broadcasts import broadcasts_to

    @broadcasts_to("room")               # the stream: message.room (a model) + nothing else
    class Message(models.Model):
        room = models.ForeignKey(Room, on_delete=models.CASCADE)
        text = models.TextField()

On create the instance, rendered with ``<app_label>/_<model_name>.html`` (context:
``{"message": instance}``), is appended to the element ``messages`` (the model's verbose
plural name); on update it replaces ``#message_<pk>``; on delete ``#message_<pk>`` is removed.
The broadcast is sent by ``transaction.on_commit``: nothing goes out for a rolled-back
transaction. A failure is logged (logger ``cableway.integration``) and never breaks the
request, unless ``CABLEWAY["raise_broadcast_errors"]`` is true.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar

from django.db import models, transaction
from django.db.models.signals import post_delete, post_save
from django.template.loader import render_to_string

from ..toolkit import turbo_stream
from ..toolkit.integration import Publisher
from .conf import get_settings, stream_name

__all__ = [
    "broadcast",
    "broadcasts",
    "broadcasts_refreshes",
    "broadcasts_refreshes_to",
    "broadcasts_to",
    "dom_id",
]

logger = logging.getLogger("cableway.integration")

_M = TypeVar("_M", bound=type[models.Model])
Action = Literal["create", "update", "delete"]
StreamSpec = str | Callable[[Any], object]
ALL_ACTIONS: tuple[Action, ...] = ("create", "update", "delete")


def dom_id(instance: models.Model, prefix: str | None = None) -> str:
    """Rails' ``dom_id``: ``message_5`` (``new_message`` when unsaved); with ``prefix``,
    ``<prefix>_message_5``."""
    name = instance._meta.model_name or type(instance).__name__.lower()
    base = f"{name}_{instance.pk}" if instance.pk is not None else f"new_{name}"
    return f"{prefix}_{base}" if prefix else base


def _plural(model: type[models.Model]) -> str:
    return str(model._meta.verbose_name_plural).replace(" ", "_")


def _send(stream: str, data: object) -> None:
    """Send now; any failure is logged unless the settings say raise."""
    settings = get_settings()
    try:
        Publisher(settings).broadcast(stream, data)
    except Exception:
        if settings.raise_broadcast_errors:
            raise
        logger.exception("Cableway broadcast to %r failed", stream)


def broadcast(*streamables: object, data: object, using: str | None = None) -> None:
    """Send ``data`` (Turbo Stream HTML, or any JSON value) to the stream named by
    ``streamables`` once the current transaction of database ``using`` commits (at once
    outside a transaction; never if it rolls back)."""
    stream = stream_name(*streamables)
    transaction.on_commit(lambda: _send(stream, data), using=using)


class _Declaration:
    def __init__(
        self,
        model: type[models.Model],
        *,
        stream: StreamSpec | None,
        create_stream: StreamSpec | None,
        inserts_by: str,
        target: str | Callable[[Any], str] | None,
        template: str | None,
        actions: Iterable[Action],
        refresh: bool = False,
    ) -> None:
        meta = model._meta
        self.refresh = refresh
        self.model = model
        self.stream = stream
        self.create_stream = create_stream
        self.inserts_by = inserts_by
        self.target = target if target is not None else _plural(model)
        self.template = template or f"{meta.app_label}/_{meta.model_name}.html"
        self.context_name = meta.model_name or model.__name__.lower()
        self.actions = frozenset(actions)
        unknown = self.actions - set(ALL_ACTIONS)
        if unknown:
            raise ValueError(f"unknown actions {sorted(unknown)}; use {ALL_ACTIONS}")
        if inserts_by not in ("append", "prepend"):
            raise ValueError("inserts_by must be 'append' or 'prepend'")

    @staticmethod
    def _resolve(spec: StreamSpec | None, instance: models.Model) -> str:
        if spec is None:
            return stream_name(instance)
        if isinstance(spec, str):
            return stream_name(getattr(instance, spec))
        return stream_name(spec(instance))

    def _render(self, instance: models.Model) -> str:
        html: str = render_to_string(
            self.template, {self.context_name: instance, "object": instance}
        )
        return html

    def _target(self, instance: models.Model) -> str:
        return self.target(instance) if callable(self.target) else self.target

    def saved(self, instance: models.Model, created: bool, using: str) -> None:
        action: Action = "create" if created else "update"
        if action not in self.actions:
            return
        spec = self.create_stream if created else self.stream
        stream = self._resolve(spec, instance)
        target = self._target(instance) if created else dom_id(instance)

        def send() -> None:
            if self.refresh:
                _send(stream, turbo_stream.refresh())
                return
            html = self._render(instance)
            if created:
                data = turbo_stream.turbo_stream(self.inserts_by, target, html=html)
            else:
                data = turbo_stream.replace(target, html)
            _send(stream, data)

        transaction.on_commit(lambda: self._guard(stream, send), using=using)

    def deleted(self, instance: models.Model, using: str) -> None:
        if "delete" not in self.actions:
            return
        stream = self._resolve(self.stream, instance)
        # the pk is still set in post_delete
        data = turbo_stream.refresh() if self.refresh else turbo_stream.remove(dom_id(instance))
        transaction.on_commit(lambda: self._guard(stream, lambda: _send(stream, data)), using=using)

    @staticmethod
    def _guard(stream: str, send: Callable[[], None]) -> None:
        """Rendering errors are treated like broadcast errors: logged, or raised."""
        try:
            send()
        except Exception:
            if get_settings().raise_broadcast_errors:
                raise
            logger.exception("Cableway broadcast to %r failed", stream)

    def connect(self) -> None:
        uid = f"cableway.broadcasts:{self.model._meta.label}"

        def on_save(
            sender: type[models.Model],
            instance: models.Model,
            created: bool,
            raw: bool = False,
            using: str = "default",
            **_: object,
        ) -> None:
            if raw:  # loaddata: fixtures are not news
                return
            self._safely(instance, lambda: self.saved(instance, created, using))

        def on_delete(
            sender: type[models.Model], instance: models.Model, using: str = "default", **_: object
        ) -> None:
            self._safely(instance, lambda: self.deleted(instance, using))

        post_save.connect(on_save, sender=self.model, weak=False, dispatch_uid=uid)
        post_delete.connect(on_delete, sender=self.model, weak=False, dispatch_uid=uid)

    @staticmethod
    def _safely(instance: models.Model, schedule: Callable[[], None]) -> None:
        """Naming the stream happens in the request: a failure there is logged too."""
        try:
            schedule()
        except Exception:
            if get_settings().raise_broadcast_errors:
                raise
            logger.exception("Cableway: cannot broadcast the change of %r", instance)


def broadcasts_to(
    stream: StreamSpec,
    *,
    inserts_by: Literal["append", "prepend"] = "append",
    target: str | Callable[[Any], str] | None = None,
    template: str | None = None,
    actions: Iterable[Action] = ALL_ACTIONS,
) -> Callable[[_M], _M]:
    """Class decorator: the model broadcasts its creates, updates and deletes to ``stream``.

    Args:
        stream: an attribute name (``"room"``: the stream of ``instance.room``, as Ruby's
            ``broadcasts_to :room``) or a callable taking the instance and returning the
            streamables (``lambda m: (m.room, "messages")``).
        inserts_by: ``"append"`` or ``"prepend"`` on create.
        target: the element id new instances go into (default: the verbose plural name,
            ``messages``), or a callable taking the instance.
        template: the partial rendering one instance (default
            ``<app_label>/_<model_name>.html``, context ``{<model_name>: instance,
            "object": instance}``).
        actions: which of ``"create"``, ``"update"``, ``"delete"`` broadcast.

    Updates replace ``#<dom_id>`` (``message_5``), deletes remove it.
    """

    def decorate(model: _M) -> _M:
        _Declaration(
            model,
            stream=stream,
            create_stream=stream,
            inserts_by=inserts_by,
            target=target,
            template=template,
            actions=actions,
        ).connect()
        return model

    return decorate


def broadcasts(
    stream: StreamSpec | None = None,
    *,
    inserts_by: Literal["append", "prepend"] = "append",
    target: str | Callable[[Any], str] | None = None,
    template: str | None = None,
    actions: Iterable[Action] = ALL_ACTIONS,
) -> Callable[[_M], _M]:
    """Class decorator as turbo-rails' ``broadcasts``: creates go to ``stream`` (default: the
    stream named after the model's verbose plural, ``"messages"``); updates and deletes go
    to the stream of the instance itself (``{% turbo_stream_from message %}``). Other
    arguments as :func:`broadcasts_to`."""

    def decorate(model: _M) -> _M:
        create_stream: StreamSpec = stream if stream is not None else (lambda _: _plural(model))
        _Declaration(
            model,
            stream=None,
            create_stream=create_stream,
            inserts_by=inserts_by,
            target=target,
            template=template,
            actions=actions,
        ).connect()
        return model

    return decorate


def broadcasts_refreshes_to(
    stream: StreamSpec, *, actions: Iterable[Action] = ALL_ACTIONS
) -> Callable[[_M], _M]:
    """Class decorator as turbo-rails' ``broadcasts_refreshes_to``: after each commit of a
    create, update or delete, ``<turbo-stream action="refresh">`` goes to ``stream`` (as in
    :func:`broadcasts_to`) and pages showing it reload themselves (morphing when they opt in
    with ``<meta name="turbo-refresh-method" content="morph">``). No template needed."""

    def decorate(model: _M) -> _M:
        _Declaration(
            model,
            stream=stream,
            create_stream=stream,
            inserts_by="append",
            target=None,
            template=None,
            actions=actions,
            refresh=True,
        ).connect()
        return model

    return decorate


def broadcasts_refreshes(
    stream: StreamSpec | None = None, *, actions: Iterable[Action] = ALL_ACTIONS
) -> Callable[[_M], _M]:
    """Class decorator as turbo-rails' ``broadcasts_refreshes``: a create refreshes the pages
    of ``stream`` (default: the model's verbose plural, ``"cards"``), an update or delete
    those of the instance itself (``{% turbo_stream_from card %}``)."""

    def decorate(model: _M) -> _M:
        create_stream: StreamSpec = stream if stream is not None else (lambda _: _plural(model))
        _Declaration(
            model,
            stream=None,
            create_stream=create_stream,
            inserts_by="append",
            target=None,
            template=None,
            actions=actions,
            refresh=True,
        ).connect()
        return model

    return decorate
