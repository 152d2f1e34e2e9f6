from django.urls import path

from . import views

app_name = "supervisor"
urlpatterns = [
    path("", views.index, name="index"),
    path("conversations/", views.conversation_list, name="conversation_list"),
    path("conversations/<int:pk>/", views.conversation_detail, name="conversation"),
]
