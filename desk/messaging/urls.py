from django.urls import path

from . import views

app_name = "messaging"
urlpatterns = [
    path("webhooks/whatsapp/", views.whatsapp_webhook, name="whatsapp-webhook"),
    path("webhooks/clickatell/", views.clickatell_webhook, name="clickatell-webhook"),
]
