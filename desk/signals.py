"""Open desk sockets learn at once when their user's access changes through the app or admin.

Logout, a password change, deactivation, deletion and a change of role (group) each publish a hint to the
user's desks; the consumer re-reads the session, user and role and closes or narrows the socket
(reliability scenario 41). Changes made behind the app's back are caught by the consumer's periodic
recheck (settings.DESK_ACCESS_RECHECK_SECONDS).
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete
from django.dispatch import receiver

from . import realtime

User = get_user_model()


@receiver(user_logged_out, dispatch_uid="desk.access.logged_out")
def logged_out(sender, request, user, **kwargs):
    if user is not None:
        realtime.publish_access_changed([user.pk], ended_session_key=request.session.session_key)


@receiver(post_save, sender=User, dispatch_uid="desk.access.user_saved")
def user_saved(sender, instance, created, update_fields=None, **kwargs):
    """Any save may change the password or `is_active`; a login only stamps `last_login`."""
    if not created and set(update_fields or ()) != {"last_login"}:
        realtime.publish_access_changed([instance.pk])


@receiver(post_delete, sender=User, dispatch_uid="desk.access.user_deleted")
def user_deleted(sender, instance, **kwargs):
    realtime.publish_access_changed([instance.pk])


@receiver(m2m_changed, sender=User.groups.through, dispatch_uid="desk.access.groups_changed")
def groups_changed(sender, instance, action, reverse, pk_set, **kwargs):
    """A role given or taken, from either side (`user.groups` or `group.user_set`). Clearing a group's
    members names none, so they are read before it happens."""
    if action == "pre_clear" and reverse:
        instance._desk_cleared_user_ids = list(instance.user_set.values_list("pk", flat=True))
    if action not in {"post_add", "post_remove", "post_clear"}:
        return
    if not reverse:
        user_ids = [instance.pk]
    elif action == "post_clear":
        user_ids = getattr(instance, "_desk_cleared_user_ids", [])
    else:
        user_ids = pk_set or ()
    realtime.publish_access_changed(user_ids)


@receiver(pre_delete, sender="auth.Group", dispatch_uid="desk.access.group_deleted")
def group_deleted(sender, instance, **kwargs):
    """Deleting a role takes it from every member (their rows in the join table go without a signal)."""
    realtime.publish_access_changed(list(instance.user_set.values_list("pk", flat=True)))
