from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [path("rooms/<slug:slug>/", views.room, name="room")]
