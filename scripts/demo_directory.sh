#!/bin/sh
# `make demo`, day 3: the staff into the directory, an external system behind a JSON API.
# Serves the directory's API with `manage.py runserver` on 127.0.0.1:$DEMO_PORT for the time
# of the job, runs the "directory" job twice (the second run finds nothing to change), stops.
set -eu
PY=${PY:-.venv/bin/python}
PORT=${DEMO_PORT:-8765}
DIRECTORY_API_URL="http://127.0.0.1:$PORT/directory/api/"
export DIRECTORY_API_URL
# Another server on the port would answer in ours' place (with another database): refuse.
if "$PY" -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1)" \
    "$PORT" 2>/dev/null; then
    echo "port $PORT is already in use on 127.0.0.1: stop what listens there, or set DEMO_PORT" >&2
    exit 1
fi
"$PY" manage.py runserver "127.0.0.1:$PORT" --noreload >/tmp/djsync-demo-directory.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT INT TERM
tries=0
until kill -0 "$server" 2>/dev/null && "$PY" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
    "http://127.0.0.1:$PORT/admin/login/" 2>/dev/null; do
    tries=$((tries + 1))
    if [ "$tries" -gt 100 ] || ! kill -0 "$server" 2>/dev/null; then
        echo "the directory's server did not start on port $PORT:" >&2
        cat /tmp/djsync-demo-directory.log >&2
        exit 1
    fi
    sleep 0.1
done
"$PY" manage.py runsync directory
"$PY" manage.py runsync directory --diff
