from __future__ import annotations

from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(url="/rooms/1/")),
    path("", include("chat.urls")),
]
