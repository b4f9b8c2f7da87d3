"""The application's Action Cable side, written with ``cableway.channels``.

Cableway (or AnyCable-Go) calls it over HTTP (``--rpc_host``): ``ChatConnection.connect``
when a browser opens the WebSocket, ``RoomChannel`` when it subscribes or performs an
action. Nothing is kept here between calls: the user's id travels in the identifiers, the
user name in the connection state.
"""

from __future__ import annotations

from django.conf import settings
from django.template.loader import render_to_string

from cableway.channels import Application, Channel, Connection
from cableway.django.channels import session_user

from .models import Message, Room


def room_stream(room: Room) -> str:
    """Where the room's new messages are broadcast."""
    return f"room:{room.slug}"


def typing_stream(room: Room) -> str:
    """Where "<user> is typing" is broadcast."""
    return f"room:{room.slug}:typing"


class ChatConnection(Connection):
    def connect(self) -> None:
        user = session_user(self)  # the `sessionid` cookie's user, as request.user
        if not user.is_authenticated:
            self.reject()  # the client gets {"type":"disconnect","reason":"unauthorized"}
        self.identified_by(user_id=user.pk)
        self.cstate["username"] = user.get_username()


class RoomChannel(Channel):
    # consumer.subscriptions.create({channel: "RoomChannel", room: "lobby"}, …)

    def subscribed(self) -> None:
        room = self._room()
        if room is None:
            self.reject()  # unknown room: reject_subscription
        self.stream_from(room_stream(room))
        self.stream_from(typing_stream(room))

    def speak(self, data: dict[str, object]) -> None:
        # room.perform("speak", {text: "hi"})
        text = str(data.get("text", "")).strip()[: Message.MAX_LENGTH]
        room = self._room()
        if not text or room is None:
            return
        message = Message.objects.create(
            room=room, author_id=self.identifiers["user_id"], text=text
        )
        html = render_to_string("rooms/_message.html", {"message": message})
        self.broadcast(
            room_stream(room),
            {"type": "message", "id": message.pk, "user": self._username(), "html": html},
        )

    def typing(self) -> None:
        # room.perform("typing"): the other pages show "<user> is typing…" for a few seconds
        room = self._room()
        if room is not None:
            self.broadcast(typing_stream(room), {"type": "typing", "user": self._username()})

    def _room(self) -> Room | None:
        slug = self.params.get("room")
        if not isinstance(slug, str):
            return None
        return Room.objects.filter(slug=slug).first()

    def _username(self) -> str:
        return self.cstate.get("username", "")


cable = Application(ChatConnection, [RoomChannel], secret=settings.CABLEWAY["secret"])
