#!/usr/bin/env bash
# Start PostgreSQL and Redis if they are not answering (the test suite needs both).
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if ! pg_up; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
if ! redis_up; then
  echo "services: starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi
for _ in $(seq 1 30); do
  if pg_up && redis_up; then echo "services: PostgreSQL and Redis are up"; exit 0; fi
  sleep 1
done
pg_up || echo "services: PostgreSQL is not answering on 127.0.0.1:5432" >&2
redis_up || echo "services: Redis is not answering on 127.0.0.1:6379" >&2
exit 1
