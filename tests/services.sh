#!/usr/bin/env bash
# What the test suite needs besides Python packages: PostgreSQL answering at 127.0.0.1:5432, Redis
# at 127.0.0.1:6379 (the widget's shared rate limits), the system Chromium (browser tests never download a browser) and docker-compose (it validates the
# compose file; no Docker engine runs). Brings up what it can (starts an
# installed PostgreSQL, installs Chromium with apt when run as root or with password-less sudo);
# otherwise says in one line what to do, before any test runs.
set -u

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif sudo -n true 2>/dev/null; then sudo -n "$@"; else return 1; fi
}

fail() { echo "make test: $*" >&2; exit 1; }

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1
    for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  fi
  pg_up || fail "PostgreSQL is not answering at 127.0.0.1:5432 (trust auth, database 'postgres'); start it, e.g. 'sudo pg_ctlcluster <version> main start', or install it: 'sudo apt-get install -y postgresql'"
fi

redis_up() { python3 -c "import socket; s=socket.create_connection(('127.0.0.1', 6379), 2); s.sendall(b'PING\r\n'); assert s.recv(7) == b'+PONG\r\n'" 2>/dev/null; }
if ! redis_up; then
  if ! command -v redis-server >/dev/null; then
    echo "make test: installing Redis (apt-get)…" >&2
    { as_root apt-get update -q && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q redis-server; } >/dev/null 2>&1
  fi
  command -v redis-server >/dev/null && redis-server --bind 127.0.0.1 --port 6379 --daemonize yes >/dev/null 2>&1
  for _ in $(seq 1 20); do redis_up && break; sleep 0.5; done
  redis_up || fail "Redis is not answering at 127.0.0.1:6379; start it ('redis-server --daemonize yes') or install it: 'sudo apt-get install -y redis-server'"
fi

if [ ! -x /usr/bin/chromium ]; then
  echo "make test: installing Chromium for the browser tests (apt-get)…" >&2
  { as_root apt-get update -q && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q chromium; } >/dev/null 2>&1
  [ -x /usr/bin/chromium ] || fail "/usr/bin/chromium is missing and could not be installed here; run 'sudo apt-get update && sudo apt-get install -y chromium'"
fi
if ! command -v docker-compose >/dev/null; then
  echo "make test: installing docker-compose to validate docker/compose.yaml (apt-get)…" >&2
  { as_root apt-get update -q && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q docker-compose; } >/dev/null 2>&1
  command -v docker-compose >/dev/null || fail "docker-compose is missing and could not be installed here; run 'sudo apt-get install -y docker-compose' (no Docker engine is needed)"
fi
exit 0
