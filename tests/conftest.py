"""Shared fixtures: people in each role (alice/bob the agents, sam the supervisor), and the live layer."""

from contextlib import contextmanager

import pytest
from channels.layers import get_channel_layer

from tests.factories import AgentFactory, ConversationFactory, SupervisorFactory, UserFactory


@pytest.fixture(autouse=True)
def _isolated_redis(settings):
    """Each test starts with an empty Redis db (its own db number in CI), so no push or cache leaks across."""
    import redis

    redis.Redis.from_url(settings.REDIS_URL).flushdb()


@pytest.fixture
def alice(db):
    return AgentFactory(username="alice", first_name="Alice", last_name="Agent")


@pytest.fixture
def bob(db):
    return AgentFactory(username="bob", first_name="Bob", last_name="Agent")


@pytest.fixture
def sam(db):
    return SupervisorFactory(username="sam", first_name="Sam", last_name="Supervisor")


@pytest.fixture
def outsider(db):
    """A logged-in user with no role."""
    return UserFactory(username="olly")


@pytest.fixture
def pending_conversation(db):
    return ConversationFactory()


@pytest.fixture
def alices_conversation(alice):
    return ConversationFactory(status="open", assigned_agent=alice)


@pytest.fixture
def channel_layer():
    return get_channel_layer()


@contextmanager
def eager_celery():
    """Queued tasks run in-process when queued (their on-commit hooks still decide when that is)."""
    from chatdesk.celery import app

    saved = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager = app.conf.task_eager_propagates = True
    try:
        yield
    finally:
        app.conf.task_always_eager, app.conf.task_eager_propagates = saved


@pytest.fixture
def celery_eager():
    with eager_celery():
        yield


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The log scan (tests/security/test_zz_logs.py) reads the logs of everything that ran before it, so it
    runs last: after pytest-django has moved the transactional tests to the end, not only last by name."""
    last = [item for item in items if item.path.name == "test_zz_logs.py"]
    items[:] = [item for item in items if item.path.name != "test_zz_logs.py"] + last
