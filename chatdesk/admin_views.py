"""What every app's admin shares."""


class ReadOnlyMixin:
    """View permission only, whoever asks (superusers included): for history and for rows that only their
    own actions write, so the admin can never edit or delete a record of what happened."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
