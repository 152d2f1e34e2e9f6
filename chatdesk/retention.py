"""Deleting old rows without holding one long transaction over a large table."""

from django.db.models import QuerySet

PURGE_BATCH_SIZE = 1000


def delete_in_batches(rows: QuerySet, *, batch_size: int = PURGE_BATCH_SIZE) -> int:
    """Delete `rows` a batch at a time (each batch its own short statement, so the hourly purge never locks a
    busy inbox table for long); returns how many were deleted."""
    deleted = 0
    while ids := list(rows.order_by().values_list("pk", flat=True)[:batch_size]):
        deleted += rows.filter(pk__in=ids).delete()[0]
    return deleted
