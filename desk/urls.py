from django.urls import path

from . import views

app_name = "desk"
urlpatterns = [
    path("", views.index, name="index"),
    path("conversations/", views.conversation_list, name="conversation_list"),
    path("conversations/<int:pk>/", views.conversation_detail, name="conversation"),
    path("conversations/<int:pk>/accept/", views.accept, name="accept"),
    path("conversations/<int:pk>/messages/", views.send_message, name="send_message"),
    path("conversations/<int:pk>/close/", views.close, name="close"),
]
