"""docker-compose.yml, the Dockerfile and the README describe the production shape truthfully.

Docker is not needed to run these: they read the files, the way an operator would.
"""

import ipaddress
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = {"migrate", "http", "web", "worker", "beat"}
# The variables the issue and the spec name for production, all read by chatdesk/settings.py.
REQUIRED_ENVIRONMENT = {
    "DATABASE_URL",
    "REDIS_URL",
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "PORT",
    "CHAT2PAY_CLICK_WINDOW_SECONDS",
    "CHAT2PAY_PAY_WINDOW_SECONDS",
}


def settings_environment_variables() -> set[str]:
    """Every environment variable chatdesk/settings.py reads (through `env.<type>("NAME", ...)`)."""
    source = (ROOT / "chatdesk" / "settings.py").read_text()
    return set(re.findall(r"\benv\.\w+\(\s*\"([A-Z][A-Z0-9_]*)\"", source))


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


@pytest.fixture(scope="module")
def nginx_conf() -> str:
    return (ROOT / "deploy" / "nginx.conf").read_text()


@pytest.fixture(scope="module")
def readme() -> str:
    return (ROOT / "README.md").read_text()


def test_the_settings_scan_finds_the_variables_it_should():
    assert REQUIRED_ENVIRONMENT <= settings_environment_variables()


class TestCompose:
    def test_it_runs_postgres_redis_a_proxy_http_web_worker_beat_and_a_one_shot_migrate(self, services):
        assert set(services) == {"postgres", "redis", "proxy", *APP_SERVICES}
        assert services["postgres"]["image"] == "postgres:16"
        assert services["redis"]["image"] == "redis:7"

    def test_every_application_process_runs_the_same_image_with_the_same_environment(self, services):
        images = {services[name]["image"] for name in APP_SERVICES}
        environments = [services[name]["environment"] for name in APP_SERVICES]

        assert len(images) == 1
        assert all(environment == environments[0] for environment in environments)
        assert set(environments[0]) >= REQUIRED_ENVIRONMENT

    def test_it_sets_only_variables_that_settings_read(self, services):
        assert set(services["web"]["environment"]) <= settings_environment_variables()

    def test_it_runs_production_settings(self, services):
        environment = services["web"]["environment"]

        assert environment["DEBUG"] == "false"
        assert environment["DATABASE_URL"].startswith("postgres://")
        assert "@postgres:5432/" in environment["DATABASE_URL"]
        assert environment["REDIS_URL"].startswith("redis://redis:6379/")
        # Secrets and host names come from the operator; compose refuses to start without them.
        for name in ("SECRET_KEY", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS"):
            assert re.fullmatch(rf"\$\{{{name}:\?[^}}]+\}}", environment[name]), name

    def test_each_process_runs_its_command(self, services):
        assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]
        http = " ".join(services["http"]["command"])
        assert "exec gunicorn chatdesk.wsgi:application --bind 0.0.0.0:$${PORT}" in http
        assert "--worker-class gthread" in http
        web = " ".join(services["web"]["command"])
        assert "exec daphne" in web
        assert "$${PORT}" in web
        assert "chatdesk.asgi:application" in web
        assert services["worker"]["command"][:4] == ["celery", "-A", "chatdesk", "worker"]
        assert services["beat"]["command"][:4] == ["celery", "-A", "chatdesk", "beat"]

    def test_migrate_runs_once_and_the_others_wait_for_it(self, services):
        assert services["migrate"]["restart"] == "no"
        assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
        for name in ("http", "web", "worker", "beat"):
            assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
            assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"

    def test_every_long_running_service_has_a_healthcheck(self, services):
        for name in ("postgres", "redis", "proxy", "http", "web", "worker", "beat"):
            assert services[name]["healthcheck"]["test"], name
        for name in ("http", "web"):
            assert "/healthz" in " ".join(services[name]["healthcheck"]["test"]), name

    def test_the_python_healthchecks_are_valid_python(self, services):
        for name in ("http", "web", "beat"):
            test = services[name]["healthcheck"]["test"]
            assert test[:3] == ["CMD", "python", "-c"]
            compile(test[3], f"{name} healthcheck", "exec")

    def test_there_is_exactly_one_beat(self, services):
        assert services["beat"]["deploy"]["replicas"] == 1

    def test_data_lives_in_named_volumes(self, compose, services):
        assert set(compose["volumes"]) == {"postgres-data", "redis-data"}
        assert "postgres-data:/var/lib/postgresql/data" in services["postgres"]["volumes"]
        assert "redis-data:/data" in services["redis"]["volumes"]


class TestProxy:
    """nginx is the one published port: every websocket to Daphne (`web`), every other request to gunicorn
    (`http`), with the client's address in the header the rate limits read."""

    def test_it_is_the_only_published_port_and_serves_the_repository_config(self, services):
        published = {name for name, service in services.items() if service.get("ports")}
        assert published == {"proxy"}
        assert services["proxy"]["ports"] == ["${WEB_PUBLISH_PORT:-8000}:8000"]
        assert "./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in services["proxy"]["volumes"]
        for name in ("http", "web"):
            assert services["proxy"]["depends_on"][name]["condition"] == "service_healthy"

    def test_websockets_go_to_daphne_and_everything_else_to_gunicorn(self, services, nginx_conf):
        port = services["web"]["environment"]["PORT"]
        upstreams = dict(re.findall(r"upstream (\w+) \{\s*server ([\w.:]+);", nginx_conf))
        assert upstreams == {"chatdesk_http": f"http:{port}", "chatdesk_websockets": f"web:{port}"}
        locations = dict(re.findall(r"location (\S+) \{[^}]*?proxy_pass http://(\w+);", nginx_conf))
        assert locations == {"/ws/": "chatdesk_websockets", "/": "chatdesk_http"}

    def test_every_websocket_route_is_under_the_proxied_ws_prefix(self):
        from desk.routing import websocket_urlpatterns as desk_websockets
        from payments.routing import websocket_urlpatterns as payments_websockets

        routes = [str(pattern.pattern) for pattern in desk_websockets + payments_websockets]
        assert routes
        assert all(route.startswith("ws/") for route in routes), routes

    def test_it_upgrades_websockets_and_passes_on_the_client_address(self, services, nginx_conf):
        for header in (
            "proxy_set_header Upgrade $http_upgrade;",
            "proxy_set_header Connection $connection_upgrade;",
            "proxy_set_header X-Real-IP $remote_addr;",
            "proxy_set_header X-Forwarded-Proto $http_x_forwarded_proto;",
        ):
            assert header in nginx_conf, header
        assert services["http"]["environment"]["RATELIMIT_IP_META_KEY"] == "HTTP_X_REAL_IP"
        # The client cannot choose its own address: only a balancer on a private network is believed.
        trusted = re.findall(r"set_real_ip_from (\S+);", nginx_conf)
        assert trusted
        assert all(ipaddress.ip_network(network).is_private for network in trusted), trusted

    def test_gunicorn_is_installed_in_the_image(self):
        import tomllib

        dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        assert any(re.match(r"gunicorn\b", dependency) for dependency in dependencies)


class TestDockerfile:
    def test_it_builds_on_python_3_11_slim(self, dockerfile):
        assert re.findall(r"^FROM (\S+)", dockerfile, flags=re.MULTILINE) == ["python:3.11-slim"]

    def test_it_installs_the_project_and_collects_static_files_with_a_throwaway_key(self, dockerfile):
        assert "RUN pip install ." in dockerfile
        assert re.search(r"SECRET_KEY=\S+ .*python manage.py collectstatic --noinput", dockerfile)

    def test_it_runs_as_an_unprivileged_user(self, dockerfile):
        users = re.findall(r"^USER (\S+)$", dockerfile, flags=re.MULTILINE)
        assert users
        assert users[-1] not in {"root", "0"}

    def test_it_serves_daphne_on_port(self, dockerfile):
        command = dockerfile.strip().splitlines()[-1]
        assert command.startswith("CMD ")
        assert "daphne" in command
        assert "${PORT}" in command
        assert "chatdesk.asgi:application" in command

    def test_it_copies_everything_the_apps_need_at_run_time(self, dockerfile):
        for path in ("manage.py", "chatdesk", "desk", "payments", "supervisor", "templates", "static"):
            assert re.search(rf"^COPY {re.escape(path)} ", dockerfile, flags=re.MULTILINE), path


class TestReadme:
    def test_it_documents_every_environment_variable_that_settings_read(self, readme):
        undocumented = {name for name in settings_environment_variables() if f"`{name}`" not in readme}
        assert not undocumented, f"add these to the README's configuration table: {sorted(undocumented)}"

    def test_it_gives_the_two_commands_and_the_demo_logins(self, readme):
        for text in ("make run", "make test", "agent1", "agent2", "supervisor", "admin", "chatdesk-demo"):
            assert text in readme, text
