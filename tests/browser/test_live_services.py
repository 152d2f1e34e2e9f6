"""The live stack the browser tests run on: Daphne, a Celery worker and beat, as in production."""

from playwright.sync_api import Page


def test_healthz_answers_200_once_the_worker_and_beat_run(customer_page: Page, celery_worker_and_beat):
    # Given Daphne, a Celery worker and beat running against the test database and Redis
    # When a probe asks for /healthz
    response = customer_page.goto("/healthz")

    # Then every part reports up
    assert response is not None
    assert response.status == 200
    assert response.json() == {"database": "up", "redis": "up", "worker": "up", "beat": "up", "status": "ok"}
