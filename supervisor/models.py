"""What the Supervisor Desk records about itself: who exported which transactions, and when."""

from django.conf import settings
from django.db import models


class TransactionExport(models.Model):
    """A CSV download of the transaction list (exports carry customer data, so each one is logged)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    filters = models.JSONField(default=dict, blank=True)
    row_count = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"Export by {self.user} at {self.created_at:%Y-%m-%d %H:%M}"
