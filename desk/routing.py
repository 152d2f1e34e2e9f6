from django.urls import path

from . import consumers

websocket_urlpatterns = [
    path("ws/desk/", consumers.DeskConsumer.as_asgi()),
    path("ws/desk/conversations/<int:conversation_id>/", consumers.DeskConsumer.as_asgi()),
    path("ws/chat/<str:token>/", consumers.CustomerChatConsumer.as_asgi()),
]
