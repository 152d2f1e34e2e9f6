# Chat Desk production image: one image for every process (web, worker, beat, migrate); docker-compose.yml
# picks the command. Settings come only from environment variables (see README, "Configuration").
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=chatdesk.settings \
    PYTHONPATH=/app \
    PORT=8000

WORKDIR /app

# Dependencies first, in their own layer, so a code change does not reinstall them. Only pyproject.toml and
# README.md are present here, so `pip install .` installs the dependencies and an empty `chatdesk`
# distribution; the apps themselves run from /app (PYTHONPATH), next to templates/ and static/.
COPY pyproject.toml README.md ./
RUN pip install . && rm -rf build ./*.egg-info

COPY manage.py ./
COPY chatdesk ./chatdesk
COPY api ./api
COPY desk ./desk
COPY payments ./payments
COPY supervisor ./supervisor
COPY templates ./templates
COPY static ./static

# Static files are collected (hashed and compressed for WhiteNoise) at build time. The key only lets
# settings load for this one command; the real SECRET_KEY comes from the environment at run time.
RUN SECRET_KEY=collectstatic-only-not-a-real-key DEBUG=false python manage.py collectstatic --noinput \
    && python -m compileall -q chatdesk desk payments supervisor

# Run as an unprivileged user that owns nothing in /app (beat keeps its schedule file under /tmp).
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin chatdesk
USER chatdesk

EXPOSE 8000

# Web: Daphne serves HTTP and websockets on $PORT. Worker and beat override the command (docker-compose.yml).
# --proxy-headers: behind the load balancer, take the client address from X-Forwarded-For.
CMD ["sh", "-c", "exec daphne --bind 0.0.0.0 --port \"${PORT}\" --proxy-headers chatdesk.asgi:application"]
