"""Chat 2 Pay's URLs: the agent's htmx endpoints under /desk/, the customer's /pay/<token>/ pages, and the
gateway webhooks under /webhooks/<gateway>/."""

from django.urls import path

from . import stripe_views, views

app_name = "payments"
urlpatterns = [
    path("desk/conversations/<int:pk>/extensions/", views.extensions, name="extensions"),
    path("desk/conversations/<int:pk>/chat2pay/", views.send, name="send"),
    path("desk/payments/<int:pk>/cancel/", views.cancel, name="cancel"),
    path("pay/<str:token>/", views.pay, name="pay"),
    path("pay/<str:token>/open/", views.open_link, name="open"),
    path("pay/<str:token>/payment/", views.submit_payment, name="submit_payment"),
    path("webhooks/sandbox/", views.gateway_webhook, {"gateway_name": "sandbox"}, name="sandbox_webhook"),
    path("webhooks/stripe/", stripe_views.webhook, name="stripe_webhook"),
    path("pay/stripe/return/", stripe_views.checkout_return, name="stripe_return"),
]
