from django.urls import path

from . import chat_views

app_name = "chat"
urlpatterns = [
    path("", chat_views.start, name="start"),
    path("<str:token>/", chat_views.conversation, name="conversation"),
    path("<str:token>/messages/", chat_views.send_message, name="send_message"),
]
