"""Chat 2 Pay's public URLs (the customer's /pay/<token>/ pages and gateway webhooks) live here."""

urlpatterns: list = []
