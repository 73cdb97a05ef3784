# Shared by run.sh, ab.sh and instructions.sh (sourced, from the repository root): CPU
# pinning, ports, callhook's config, the nginx ceiling, and the wrk scripts of the four
# workloads, so that all drive callhook the same way and their figures compare.

PIN_SERVER="taskset -c 0"
PIN_CLIENT="taskset -c 1"
if taskset -c 0 true 2>/dev/null && taskset -c 1 true 2>/dev/null; then
  echo "pinned: servers on CPU 0, wrk on CPU 1" >&2
else
  PIN_SERVER=""
  PIN_CLIENT=""
  echo "NOT pinned (taskset cannot use CPUs 0 and 1): servers and wrk share every core" >&2
fi

# The spools live under DIR: on tmpfs (Debian 13's /tmp, or a TMPDIR there) an fdatasync
# costs nothing and the fsync rows would measure RAM. Refuses that, and says what it is.
spool_fs() { # dir
  local fs
  fs=$(findmnt -no FSTYPE -T "$1" 2>/dev/null || stat -f -c %T "$1")
  case $fs in
    tmpfs | ramfs) echo "load: $1 is on $fs, where fsync costs nothing: set TMPDIR to a directory on a disk" >&2; exit 1 ;;
  esac
  echo "spools on $fs ($(findmnt -no SOURCE -T "$1" 2>/dev/null || echo '?'))" >&2
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Request bodies in Vonage's compact wire form.
compact() { python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1])), separators=(",",":")), end="")' "$1"; }
EVENT=$(compact tests/fixtures/seed-inbound-completed.json)
INBOUND=$(compact tests/fixtures/messages-inbound-sms.json)
ANSWER_Q='from=441234567890&to=442038297050&uuid=0779a56d002f1c7f47f82ef5fe84ab79&conversation_uuid=CON-8f5a100c-fbce-4218-8d4b-16341335bcd6'

# callhook's config on PORT with DURABILITY, EXTRA toml, and the shipped answer rules.
callhook_config() { # port durability [extra-toml for [spool]]; SERVER_EXTRA: lines for [server]
  printf '[server]\nlisten = "127.0.0.1:%s"\n%s\n[spool]\ndurability = "%s"\n%s\n[log]\nlevel = "warn"\n' \
    "$1" "${SERVER_EXTRA:-}" "$2" "${3:-}"
  sed -n '/^\[answer.default\]/,/^# -----/p' deploy/config/callhook.toml | grep -v '^# ---'
}

# The ceiling: nginx (one worker, pinned like callhook) answering the same paths with a
# fixed `return 200`, no parsing, no disk. Its master's pid ends up in DIR/nginx.pid.
start_nginx() { # dir port
  mkdir -p "$1/nginx-body"
  printf '%s\n' \
    "worker_processes 1;" \
    "pid $1/nginx.pid;" \
    "error_log $1/nginx.err warn;" \
    "events { worker_connections 4096; }" \
    "http {" \
    "  access_log off;" \
    "  client_body_temp_path $1/nginx-body;" \
    "  server {" \
    "    listen 127.0.0.1:$2;" \
    "    keepalive_requests 1000000;" \
    "    location /webhooks/voice/answer { default_type application/json; return 200 '[{\"action\":\"talk\",\"text\":\"Thanks for calling.\"}]'; }" \
    "    location / { return 200; }" \
    "  }" \
    "}" > "$1/nginx.conf"
  $PIN_SERVER nginx -c "$1/nginx.conf" -e "$1/nginx.err" -g 'daemon on;'
  for _ in $(seq 1 50); do [ -s "$1/nginx.pid" ] && break; sleep 0.1; done
  sleep 0.2
}

lua_post() { # body path [authorization token]
  python3 - "$1" "$2" "${3:-}" <<'PY'
import json, sys
body, path, tok = sys.argv[1], sys.argv[2], sys.argv[3]
print(f'wrk.method = "POST"\nwrk.path = {json.dumps(path)}\nwrk.body = {json.dumps(body)}\nwrk.headers["Content-Type"] = "application/json"')
if tok:
    print(f'wrk.headers["Authorization"] = "Bearer {tok}"')
PY
}

lua_mixed() {
  python3 - "$EVENT" "$INBOUND" "$ANSWER_Q" <<'PY'
import json, sys
ev, inb, q = sys.argv[1:4]
print(f'''local reqs = {{
  wrk.format("POST", "/webhooks/voice/event", {{["Host"]="bench", ["Content-Type"]="application/json"}}, {json.dumps(ev)}),
  wrk.format("POST", "/webhooks/voice/event", {{["Host"]="bench", ["Content-Type"]="application/json"}}, {json.dumps(ev)}),
  wrk.format("POST", "/webhooks/messages/inbound", {{["Host"]="bench", ["Content-Type"]="application/json"}}, {json.dumps(inb)}),
  wrk.format("GET", "/webhooks/voice/answer?{q}", {{["Host"]="bench"}}, nil),
}}
local i = 0
request = function() i = i + 1; return reqs[(i % #reqs) + 1] end''')
PY
}

# Checks WORKLOAD is one of the four and writes their wrk scripts to DIR (TOOL names the
# calling script in the error).
use_workload() { # tool workload dir
  case $2 in
    answer | event | inbound | mixed) write_workloads "$3" ;;
    *) echo "$1: workload is answer, event, inbound or mixed" >&2; exit 2 ;;
  esac
}

# DIR/answer.lua, event.lua, inbound.lua and mixed.lua for wrk, and answer.req and
# event.req (whole HTTP/1.1 requests) for benches/load/pace.rs.
write_workloads() { # dir
  printf 'GET /webhooks/voice/answer?%s HTTP/1.1\r\nHost: bench\r\n\r\n' "$ANSWER_Q" > "$1/answer.req"
  printf 'POST /webhooks/voice/event HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' \
    "$(printf %s "$EVENT" | wc -c)" "$EVENT" > "$1/event.req"
  printf 'wrk.method = "GET"\nwrk.path = "/webhooks/voice/answer?%s"\n' "$ANSWER_Q" > "$1/answer.lua"
  lua_post "$EVENT" /webhooks/voice/event > "$1/event.lua"
  lua_post "$INBOUND" /webhooks/messages/inbound > "$1/inbound.lua"
  lua_mixed > "$1/mixed.lua"
}
