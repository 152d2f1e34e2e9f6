from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from api.v1 import api as api_v1

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("desk/", include("desk.urls")),
    path("chat/", include("desk.chat_urls")),
    path("supervisor/", include("supervisor.urls")),
    path("api/v1/", api_v1.urls),
    path("", include("desk.messaging.urls")),
    path("", include("payments.urls")),
]
