"""Who may see and do what: roles, and permission-checked fetches used by views, consumers and tasks.

Roles are Django groups (`agents`, `supervisors`). Every view and consumer goes through these helpers, so
the rule for each object type is written once.
"""

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest

from .models import Conversation

AGENTS_GROUP = "agents"
SUPERVISORS_GROUP = "supervisors"


def _groups(user) -> set[str]:
    if not user.is_authenticated or not user.is_active:
        return set()
    cached = getattr(user, "_chatdesk_groups", None)
    if cached is None:
        cached = set(user.groups.values_list("name", flat=True))
        user._chatdesk_groups = cached
    return cached


def is_agent(user) -> bool:
    return AGENTS_GROUP in _groups(user)


def is_supervisor(user) -> bool:
    return SUPERVISORS_GROUP in _groups(user)


def role_context(request: HttpRequest) -> dict:
    """Template context: the viewer's role, for navigation."""
    user = getattr(request, "user", None)
    if user is None:
        return {}
    return {"is_agent": is_agent(user), "is_supervisor": is_supervisor(user)}


def _role_required(check: Callable) -> Callable:
    def decorator(view):
        @login_required
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not check(request.user):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


agent_required = _role_required(is_agent)
supervisor_required = _role_required(is_supervisor)
staff_role_required = _role_required(lambda user: is_agent(user) or is_supervisor(user))


def conversations_visible_to(user) -> QuerySet[Conversation]:
    """Agents see the queue and their own conversations; supervisors see everything; others nothing."""
    conversations = Conversation.objects.all()
    if is_supervisor(user):
        return conversations
    if is_agent(user):
        return conversations.filter(Q(status=Conversation.Status.PENDING) | Q(assigned_agent=user))
    return conversations.none()


def get_conversation_for_viewer(user, pk: int) -> Conversation:
    """A conversation the user may read, or 404 (never revealing that someone else's exists)."""
    try:
        return conversations_visible_to(user).select_related("customer", "assigned_agent").get(pk=pk)
    except Conversation.DoesNotExist:
        raise Http404("No such conversation.") from None


ANOTHER_AGENTS_CONVERSATION = "This conversation is assigned to another agent."


def get_conversation_for_agent(user, pk: int) -> Conversation:
    """A conversation the user may act on as an agent: the queue or their own. Another agent's conversation
    is a 403 (the product's rule: agents cannot act on each other's conversations), one that does not exist
    a 404; supervisors and everyone else get 403."""
    if not is_agent(user):
        raise PermissionDenied
    try:
        return get_conversation_for_viewer(user, pk)
    except Http404:
        if Conversation.objects.filter(pk=pk).exists():
            raise PermissionDenied(ANOTHER_AGENTS_CONVERSATION) from None
        raise


def get_conversation_for_customer(token: str) -> Conversation:
    """The conversation behind a customer's chat link, or 404."""
    try:
        return Conversation.objects.select_related("customer").get(customer_token=token)
    except Conversation.DoesNotExist:
        raise Http404("No such chat.") from None
