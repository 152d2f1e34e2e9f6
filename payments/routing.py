from django.urls import path

from . import consumers

websocket_urlpatterns = [
    path("ws/pay/<str:token>/", consumers.PaymentPageConsumer.as_asgi()),
]
