from django.urls import path

from . import views

app_name = "supervisor"
urlpatterns = [
    path("", views.index, name="index"),
    path("transactions/", views.transaction_results, name="transaction_results"),
    path("transactions/export.csv", views.export_csv, name="export_csv"),
    path("transactions/<int:pk>/", views.transaction_detail, name="transaction"),
    path("conversations/", views.conversation_list, name="conversations"),
    path("conversations/<int:pk>/", views.conversation_detail, name="conversation"),
]
