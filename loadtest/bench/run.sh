#!/usr/bin/env bash
# Polarway against references measured in the same run on the same data; writes docs/benchmarks.md.
#   bash loadtest/bench/run.sh            # full run (1 GiB table, 10M-row query; ~15 min on 2 cores)
#   bash loadtest/bench/run.sh --quick    # smaller data, shorter runs (~3-4 min)
#   options: --no-build (use the release binaries as they are), --out FILE, --runs N (default 3),
#            --bin-dir DIR (polarway, polarway-gateway, polarway-loadtest; implies --no-build)
# Installs what it needs: pyarrow + duckdb in a virtualenv ($HOME/.cache/polarway/bench-venv),
# nginx (Debian's nginx-light) and openssl.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh

QUICK=0 BUILD=1 RUNS=3 OUT=docs/benchmarks.md REL="$CARGO_TARGET_DIR/release"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --no-build) BUILD=0 ;;
    --runs) RUNS=$2; shift ;;
    --out) OUT=$2; shift ;;
    --bin-dir) REL=$(cd "$2" && pwd); BUILD=0; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

if [ "$BUILD" = 1 ]; then
  ensure_build_tools
  echo "== cargo build --release --workspace"
  cargo build --release --workspace   # the build scripts/run-server.sh and scripts/test.sh share
fi
for b in polarway polarway-gateway polarway-loadtest; do
  [ -x "$REL/$b" ] || { echo "$REL/$b missing: build with cargo build --release --workspace" >&2; exit 1; }
done

venv="$HOME/.cache/polarway/bench-venv"
if ! "$venv/bin/python" -c 'import pyarrow.flight, duckdb, numpy' 2>/dev/null; then
  ensure_python_venv
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'pyarrow==26.0.1' 'duckdb==2.0.0' numpy
fi
# Polarway's Python client as this checkout has it (section 7 measures what its users see).
"$venv/bin/pip" install -q --disable-pip-version-check ./clients/python
PY="$venv/bin/python"
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || apt_install nginx-light
command -v openssl >/dev/null 2>&1 || apt_install openssl
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

work=$(mktemp -d /tmp/polarway-bench.XXXXXX)
pids=()
cleanup() {
  # Quietly: bash would report each killed job.
  { for p in "${pids[@]}"; do kill -9 "$p" || true; done; wait || true; } 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
export RUST_LOG=warn
FIG="$work/figures.tsv"; : >"$FIG"
CMDS="$work/commands.md"; : >"$CMDS"
: >"$work/errors.md"

if [ "$QUICK" = 1 ]; then
  BIG_ROWS=2097152; Q_ROWS=2000000; GW_ROWS=524288; SMALL_CALLS=1000; SMALL_SECS=4; GW_SECS=3; ZIPF_SECS=6
else
  BIG_ROWS=8388608; Q_ROWS=10000000; GW_ROWS=2097152; SMALL_CALLS=3000; SMALL_SECS=10; GW_SECS=10; ZIPF_SECS=15
fi
BIG_COLS=16

# start NAME PREFIX CMD...: run CMD in the background, wait (30 s) for "PREFIX: listening on ADDR".
start() {
  local name=$1 prefix=$2; shift 2
  : >"$work/$name.out"   # exists before the first poll (the child opens it asynchronously)
  "$@" >>"$work/$name.out" 2>"$work/$name.log" &
  PID=$!; pids+=("$PID"); ADDR=""
  for _ in $(seq 300); do
    ADDR=$(sed -n "s/^$prefix: listening on //p" "$work/$name.out" | head -1)
    [ -n "$ADDR" ] && return 0
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "$name did not start:" >&2; tail -20 "$work/$name.log" >&2; exit 1
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
worker() { # worker NAME DATADIR [ARGS...]
  local name=$1 dir=$2; shift 2
  start "$name" polarway "$REL/polarway" server --grpc-port 0 --data-dir "$dir" "$@"
}
# fig COMPARISON VARIANT METRIC VALUE
fig() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$FIG"; }
# jget FILE KEY.PATH: a number from a JSON report.
jget() { "$PY" -c 'import json,sys
v=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): v=v[int(k)] if isinstance(v,list) else v[k]
print(v)' "$1" "$2"; }
# failures FILE LABEL: one Markdown line about a report's failed calls (nothing when none failed).
failures() { "$PY" - "$1" "$2" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
if r["failures_total"]:
    f = r["failures"][0]
    print("- %s: %d calls, errors %s; first: %s %r" % (sys.argv[2], r["total"]["calls"], r["total"]["errors"], f["status"], f["message"][:160]))
EOF
}
LT="$REL/polarway-loadtest"
# lt ARGS...: the harness; the first call of each kind is written to the commands section.
lt() { "$LT" "$@" >"$work/lt.out" 2>"$work/lt.err" || { cat "$work/lt.out" "$work/lt.err" >&2; exit 1; }; }
note() { echo "$*" | sed "s#$REL/##g; s#$work#\$WORK#g" >>"$CMDS"; }

# ---- the machine
{
  echo "nproc	$(nproc)"
  echo "cpu	$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
  echo "memory	$(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
  echo "kernel	$(uname -r)"
  echo "date	$(date -u +%Y-%m-%dT%H:%MZ)"
  echo "mode	$([ "$QUICK" = 1 ] && echo quick || echo full)"
  echo "runs	$RUNS"
  echo "load_start	$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "rustc	$(rustc --version 2>/dev/null || echo unknown)"
  echo "pyarrow	$("$PY" -c 'import pyarrow; print(pyarrow.__version__)')"
  echo "duckdb	$("$PY" -c 'import duckdb; print(duckdb.__version__)')"
  echo "nginx	$("$NGINX" -v 2>&1 | sed 's/.*: //')"
  echo "small_bound	$SMALL_CALLS calls or $SMALL_SECS s"
  echo "big_rows	$BIG_ROWS"; echo "big_cols	$BIG_COLS"; echo "q_rows	$Q_ROWS"; echo "gw_rows	$GW_ROWS"
} >"$work/machine.tsv"

# ---- TLS material: a CA and a server certificate for 127.0.0.1 / localhost
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$work/ca.key" -out "$work/ca.pem" \
  -days 2 -subj "/CN=bench-ca" -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$work/server.key" -out "$work/server.csr" -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$work/ext.cnf"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial -out "$work/server.pem" \
  -days 2 -extfile "$work/ext.cnf" 2>/dev/null

# =================================================================== one worker
# The worker admits a table into its cache only up to a quarter of the cache's size: 6 GB keeps the
# 1 GiB table warm.
echo "== one worker (release), cache 6 GB"
W1="$work/w1"
worker w1 "$W1" --cache-size 6
W1_PID=$PID; W1_URL="http://$ADDR"

# ---- 5. warm small-dataset load latency (1,000 rows x 4 columns), direct to the worker
echo "== 5. warm small loads"
SMALL=(--set datasets.prefix=small --set datasets.count=1 --set datasets.rows=1000 --set datasets.columns=4
       --set mix.load=1 --set run.concurrency=1 --set run.duration_secs=$SMALL_SECS --set run.calls=$SMALL_CALLS --set run.warmup_calls=50)
for i in $(seq "$RUNS"); do
  setup=$([ "$i" = 1 ] && echo store || echo skip)
  lt --target "$W1_URL" "${SMALL[@]}" --set datasets.setup=$setup --json "$work/small$i.json"
  [ "$i" = 1 ] && note "polarway-loadtest --target $W1_URL ${SMALL[*]} --json small.json"
  for m in p50 p99 mean; do fig small direct "$m" "$(jget "$work/small$i.json" operations.load.latency_ms.$m)"; done
done

# ---- 1. ~1 GiB numeric table over one stream, warm cache: Polarway vs pyarrow.flight
echo "== 1. load of a $BIG_ROWS x $BIG_COLS table (plaintext)"
BIG=(--set datasets.prefix=big --set datasets.count=1 --set datasets.rows=$BIG_ROWS --set datasets.columns=$BIG_COLS
     --set datasets.batch_rows=131072 --set mix.load=1 --set run.concurrency=1 --set run.duration_secs=0)
lt --target "$W1_URL" "${BIG[@]}" --set run.calls=1 --json "$work/big-setup.json"   # stores it, loads once (warms the cache)
note "polarway-loadtest --target $W1_URL ${BIG[*]} --set run.calls=1   # setup: store + first load"
fig store polarway-setup seconds "$(jget "$work/big-setup.json" setup.seconds)"
for i in $(seq "$RUNS"); do
  lt --target "$W1_URL" "${BIG[@]}" --set datasets.setup=skip --set run.calls=1 --json "$work/big$i.json"
  fig load polarway-plain seconds "$(jget "$work/big$i.json" operations.load.latency_ms.max | awk '{print $1/1000}')"
  fig load polarway-plain bytes "$(jget "$work/big$i.json" operations.load.bytes_received)"
  fig load polarway-plain cache_misses "$(jget "$work/big$i.json" cache.misses)"
done
note "polarway-loadtest --target $W1_URL ${BIG[*]} --set datasets.setup=skip --set run.calls=1   # x$RUNS"
BIG_PARQUET="$W1/cold/big_0000.parquet"

# ---- 2. store of the same table, durably (Polarway: zstd Parquet + fsync + commit)
echo "== 2. store of the same table"
for i in $(seq "$RUNS"); do
  lt --target "$W1_URL" "${BIG[@]}" --set datasets.setup=skip --set mix.load=0 --set mix.store=1 --set run.calls=1 --json "$work/store$i.json"
  fig store polarway seconds "$(jget "$work/store$i.json" operations.store.latency_ms.max | awk '{print $1/1000}')"
  fig store polarway bytes "$(jget "$work/store$i.json" operations.store.bytes_sent)"
done
note "polarway-loadtest --target $W1_URL ${BIG[*]} --set datasets.setup=skip --set mix.load=0 --set mix.store=1 --set run.calls=1   # x$RUNS"

# ---- 3. query: group-by over a stored dataset vs local DuckDB over the same Parquet
echo "== 3. query over $Q_ROWS rows"
SQL='SELECT k, COUNT(*) AS n, SUM(c1) AS s1, AVG(c2) AS a2, MAX(c3) AS m3 FROM {table} GROUP BY k'
QRY=(--set datasets.prefix=q --set datasets.count=1 --set datasets.rows=$Q_ROWS --set datasets.columns=4
     --set datasets.key_cardinality=1000 --set mix.load=0 --set mix.query=1 --set run.concurrency=1
     --set run.duration_secs=0 --set run.calls=$((RUNS + 2)) --set run.warmup_calls=1)
lt --target "$W1_URL" "${QRY[@]}" --set "query.sql=\"$SQL\"" --json "$work/query.json"
note "polarway-loadtest --target $W1_URL ${QRY[*]} --set 'query.sql=\"$SQL\"'"
fig query polarway seconds "$(jget "$work/query.json" operations.query.latency_ms.p50 | awk '{print $1/1000}')"
fig query polarway rows "$(jget "$work/query.json" operations.query.rows)"
"$PY" loadtest/bench/duckdb_query.py --parquet "$W1/cold/q_0000.parquet" --sql "$SQL" --runs $((RUNS + 2)) >"$work/duckdb.json"
note "python loadtest/bench/duckdb_query.py --parquet \$WORK/w1/cold/q_0000.parquet --sql '$SQL' --runs $((RUNS + 2))"
"$PY" -c 'import json,sys,statistics as s; print(s.median(json.load(open(sys.argv[1]))["seconds"]))' "$work/duckdb.json" \
  | { read -r v; fig query duckdb seconds "$v"; }

# ---- 3b. a query's fixed cost: a tiny one (10 rows, LIMIT 1), one caller, back to back
TINYQ=(--set datasets.prefix=tq --set datasets.count=1 --set datasets.rows=10 --set datasets.columns=4
       --set mix.load=0 --set mix.query=1 --set run.concurrency=1 --set run.duration_secs=$SMALL_SECS
       --set run.warmup_calls=50)
for i in $(seq "$RUNS"); do
  setup=$([ "$i" = 1 ] && echo store || echo skip)
  lt --target "$W1_URL" "${TINYQ[@]}" --set datasets.setup=$setup \
     --set 'query.sql="SELECT c1 FROM {table} LIMIT 1"' --json "$work/tinyq$i.json"
  [ "$i" = 1 ] && note "polarway-loadtest --target $W1_URL ${TINYQ[*]} --set 'query.sql=\"SELECT c1 FROM {table} LIMIT 1\"'"
  for m in p50 p99; do fig tinyq polarway "$m" "$(jget "$work/tinyq$i.json" operations.query.latency_ms.$m)"; done
done

# ---- 1 (TLS): the same worker data served over TLS
echo "== 1. load over TLS"
stop "$W1_PID"
worker w1tls "$W1" --cache-size 6 --tls-cert "$work/server.pem" --tls-key "$work/server.key"
W1T_PID=$PID; W1T_URL="https://$ADDR"
lt --target "$W1T_URL" --tls-ca "$work/ca.pem" "${BIG[@]}" --set datasets.setup=skip --set run.calls=1 --json "$work/bigtls-warm.json"
for i in $(seq "$RUNS"); do
  lt --target "$W1T_URL" --tls-ca "$work/ca.pem" "${BIG[@]}" --set datasets.setup=skip --set run.calls=1 --json "$work/bigtls$i.json"
  fig load polarway-tls seconds "$(jget "$work/bigtls$i.json" operations.load.latency_ms.max | awk '{print $1/1000}')"
  fig load polarway-tls cache_misses "$(jget "$work/bigtls$i.json" cache.misses)"
done
note "polarway-loadtest --target $W1T_URL --tls-ca ca.pem ${BIG[*]} --set datasets.setup=skip --set run.calls=1   # x$RUNS"
stop "$W1T_PID"

# ---- 1 and 2, the reference: pyarrow.flight serving the same Parquet from memory; DoPut to zstd Parquet
echo "== 1/2. pyarrow.flight"
mkdir -p "$work/flight-put"
for mode in plain tls; do
  targs=(); cargs=()
  if [ $mode = tls ]; then targs=(--tls-cert "$work/server.pem" --tls-key "$work/server.key"); cargs=(--tls-ca "$work/ca.pem"); fi
  start flight-$mode flight "$PY" loadtest/bench/flight_server.py --parquet "$BIG_PARQUET" --put-dir "$work/flight-put" "${targs[@]}"
  FPID=$PID
  "$PY" loadtest/bench/flight_client.py get --addr "$ADDR" --runs "$RUNS" "${cargs[@]}" >"$work/flight-get-$mode.json"
  note "python loadtest/bench/flight_server.py --parquet \$WORK/w1/cold/big_0000.parquet --put-dir \$WORK/flight-put ${targs[*]}"
  note "python loadtest/bench/flight_client.py get --addr $ADDR --runs $RUNS ${cargs[*]}"
  "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); [print(s) for s in d["seconds"]]; print("bytes", d["bytes"])' "$work/flight-get-$mode.json" \
    | while read -r a b; do if [ "$a" = bytes ]; then fig load flight-$mode bytes "$b"; else fig load flight-$mode seconds "$a"; fi; done
  if [ $mode = plain ]; then
    "$PY" loadtest/bench/flight_client.py put --addr "$ADDR" --runs "$RUNS" --parquet "$BIG_PARQUET" >"$work/flight-put.json"
    note "python loadtest/bench/flight_client.py put --addr $ADDR --runs $RUNS --parquet \$WORK/w1/cold/big_0000.parquet"
    "$PY" -c 'import json,sys; [print(s) for s in json.load(open(sys.argv[1]))["seconds"]]' "$work/flight-put.json" \
      | while read -r a; do fig store flight seconds "$a"; done
  fi
  stop "$FPID"
done
rm -rf "$work/flight-put" "$W1"

# =================================================================== three workers
echo "== 4. gateway vs nginx vs direct, three workers (cache 2 GB each)"
mkdir -p "$work/state"
WURLS=(); WADDRS=()
for i in 1 2 3; do
  worker gw-w$i "$work/gw-w$i" --cache-size 2 --state-dir "$work/state"
  WURLS+=("http://$ADDR"); WADDRS+=("$ADDR")
done
GWARGS=(--listen 127.0.0.1:0 --metrics-port 0 --routing hash)
for u in "${WURLS[@]}"; do GWARGS+=(--backend "$u"); done
start gateway polarway-gateway "$REL/polarway-gateway" "${GWARGS[@]}"
GW_URL="http://$ADDR"
note "polarway-gateway ${GWARGS[*]}"

# nginx: the user guide's configuration (+ client_max_body_size 0), and a tuned one (upstream
# keepalive, one worker process per core) so that the reference is not handicapped.
nginx_start() { # nginx_start NAME EXTRA_UPSTREAM EXTRA_MAIN [EXTRA_SERVER]
  local name=$1 dir="$work/$1" port
  mkdir -p "$dir"
  port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  local user=""; [ "$(id -u)" = 0 ] && user="user root;"
  {
    echo "$user daemon off; pid $dir/nginx.pid; error_log $dir/error.log warn; $3"
    echo "events { worker_connections 1024; }"
    echo "http { access_log off; client_body_temp_path $dir/body; proxy_temp_path $dir/proxy;"
    echo "  fastcgi_temp_path $dir/fastcgi; uwsgi_temp_path $dir/uwsgi; scgi_temp_path $dir/scgi;"
    echo "  upstream polarway_backend {"
    for a in "${WADDRS[@]}"; do echo "    server $a;"; done
    echo "    $2 }"
    echo "  server { listen 127.0.0.1:$port http2; client_max_body_size 0; ${4:-}"
    echo "    location / { grpc_pass grpc://polarway_backend; grpc_set_header Host \$host;"
    echo "      grpc_read_timeout 300s; grpc_send_timeout 300s; } } }"
  } >"$dir/nginx.conf"
  "$NGINX" -p "$dir" -c "$dir/nginx.conf" >"$work/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  NGINX_URL="http://127.0.0.1:$port"
}
nginx_start nginx-guide "" ""
NGINX_GUIDE=$NGINX_URL
# keepalive_requests: nginx closes a connection after 1,000 requests by default (GOAWAY), which fails
# the calls in flight on it (INTERNAL / CANCELLED, see the note under section 4).
nginx_start nginx-tuned "keepalive 64; keepalive_requests 10000000;" "worker_processes auto;" "keepalive_requests 10000000;"
NGINX_TUNED=$NGINX_URL
cp "$work/nginx-guide/nginx.conf" "$work/nginx-guide.conf.txt"

SMALLCALL=(--set datasets.prefix=tiny --set datasets.count=12 --set datasets.rows=100 --set datasets.columns=4
           --set mix.load=0 --set mix.describe=1 --set run.concurrency=32 --set run.connections=4
           --set run.duration_secs=$GW_SECS --set run.warmup_calls=100)
lt --target "$GW_URL" "${SMALLCALL[@]}" --set run.duration_secs=1 --json "$work/gw-setup.json"   # stores the datasets
for i in $(seq "$RUNS"); do
  for v in gateway:$GW_URL nginx-guide:$NGINX_GUIDE nginx-tuned:$NGINX_TUNED direct:${WURLS[0]}; do
    name=${v%%:*}; url=${v#*:}
    lt --target "$url" "${SMALLCALL[@]}" --set datasets.setup=skip --json "$work/small-$name-$i.json"
    fig gateway "$name" calls_per_s "$(jget "$work/small-$name-$i.json" operations.describe.throughput_per_s)"
    fig gateway "$name" p99 "$(jget "$work/small-$name-$i.json" operations.describe.latency_ms.p99)"
    fig gateway "$name" p50 "$(jget "$work/small-$name-$i.json" operations.describe.latency_ms.p50)"
    fig gateway "$name" errors "$(jget "$work/small-$name-$i.json" failures_total)"
    failures "$work/small-$name-$i.json" "$name, run $i" >>"$work/errors.md"
  done
done
note "polarway-loadtest --target URL ${SMALLCALL[*]} --set datasets.setup=skip   # URL = gateway, nginx (guide), nginx (tuned), one worker; x$RUNS"

# Large loads: via the gateway vs straight to the worker the gateway routes the dataset to.
LARGE=(--set datasets.prefix=gwbig --set datasets.count=1 --set datasets.rows=$GW_ROWS --set datasets.columns=16
       --set datasets.batch_rows=131072 --set mix.load=1 --set run.concurrency=1 --set run.duration_secs=0 --set run.calls=1)
lt --target "$GW_URL" "${LARGE[@]}" --set run.calls=1 --json "$work/gwbig-setup.json"
# The owner is the worker whose cache now holds the dataset (its CacheStats bytes).
OWNER=""
for u in "${WURLS[@]}"; do
  lt --target "$u" --set datasets.prefix=probe --set datasets.setup=skip --set mix.load=0 --set mix.list=1 \
    --set run.calls=1 --set run.duration_secs=0 --json "$work/probe.json"
  if [ "$(jget "$work/probe.json" cache.workers.0.bytes)" -gt $((GW_ROWS * 16 * 4)) ]; then OWNER=$u; fi
done
[ -n "$OWNER" ] || OWNER=${WURLS[0]}
for i in $(seq "$RUNS"); do
  for v in gateway:$GW_URL direct:$OWNER; do
    name=${v%%:*}; url=${v#*:}
    lt --target "$url" "${LARGE[@]}" --set datasets.setup=skip --json "$work/large-$name-$i.json"
    fig gateway-large "$name" seconds "$(jget "$work/large-$name-$i.json" operations.load.latency_ms.max | awk '{print $1/1000}')"
    fig gateway-large "$name" bytes "$(jget "$work/large-$name-$i.json" operations.load.bytes_received)"
  done
done
note "polarway-loadtest --target URL ${LARGE[*]} --set datasets.setup=skip   # URL = gateway, the owning worker; x$RUNS"
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
pids=()

# ---- 6. sticky hashing vs round robin on a Zipf workload (the harness spawns each cluster)
echo "== 6. hash vs round robin"
for i in $(seq "$RUNS"); do
  for routing in hash round-robin; do
    lt --spawn-cluster 3 --bin-dir "$REL" --cache-size 0.05 --routing $routing -s loadtest/scenarios/zipf-cache.toml \
      --set run.duration_secs=$ZIPF_SECS --set run.warmup_calls=60 --json "$work/zipf-$routing-$i.json" --html "$work/zipf-$routing.html"
    fig routing $routing hit_rate "$(jget "$work/zipf-$routing-$i.json" cache.hit_rate)"
    fig routing $routing p99 "$(jget "$work/zipf-$routing-$i.json" operations.load.latency_ms.p99)"
    fig routing $routing p50 "$(jget "$work/zipf-$routing-$i.json" operations.load.latency_ms.p50)"
    fig routing $routing calls_per_s "$(jget "$work/zipf-$routing-$i.json" operations.load.throughput_per_s)"
  done
done
note "polarway-loadtest --spawn-cluster 3 --cache-size 0.05 --routing hash|round-robin -s loadtest/scenarios/zipf-cache.toml --set run.duration_secs=$ZIPF_SECS --set run.warmup_calls=60   # x$RUNS"

# ---- 7. Arrow Flight: Polarway's Flight service and Python client vs pyarrow.flight's own server
echo "== 7. Flight DoGet/DoPut and the Python client, interleaved with the pyarrow.flight server"
"$PY" loadtest/bench/flight_doget.py --polarway-bin "$REL/polarway" --rows "$BIG_ROWS" --cols "$BIG_COLS" \
  --runs "$RUNS" >"$work/flight.md"
note "python loadtest/bench/flight_doget.py --polarway-bin \$REL/polarway --rows $BIG_ROWS --cols $BIG_COLS --runs $RUNS"

# ---- 8. memory: a streamed load of a table 10x the worker's cache, in a fresh worker process
echo "== 8. streamed load of a table 10x the cache"
CACHE_MIB=64
STREAM=(--set datasets.prefix=wide --set datasets.count=1 --set datasets.rows=$((CACHE_MIB * 10 * 1048576 / (8 * BIG_COLS)))
        --set datasets.columns=$BIG_COLS --set datasets.batch_rows=131072 --set mix.load=0 --set mix.load_stream=1
        --set run.concurrency=1 --set run.duration_secs=0)
W8="$work/w8"
CACHE_GB=$(awk -v m=$CACHE_MIB 'BEGIN {print m / 1024}')
worker w8 "$W8" --cache-size "$CACHE_GB"
lt --target "http://$ADDR" "${STREAM[@]}" --set run.calls=1 --json "$work/stream-setup.json"   # stores it (and streams it once)
stop "$PID"
worker w8 "$W8" --cache-size "$CACHE_GB"   # a fresh process: nothing cached
lt --target "http://$ADDR" "${STREAM[@]}" --set datasets.setup=skip --set run.calls=2 --json "$work/stream.json"
note "polarway-loadtest --target \$W8 ${STREAM[*]} --set datasets.setup=skip --set run.calls=2   # worker: --cache-size $CACHE_MIB MiB, restarted after the store"
fig streamrss polarway cache_mib "$CACHE_MIB"
fig streamrss polarway bytes "$(jget "$work/stream.json" operations.load_stream.bytes_received)"
fig streamrss polarway peak_rss_mib "$(awk '/^VmHWM/ {print $2 / 1024}' "/proc/$PID/status")"
stop "$PID"

echo "load_end	$(cut -d' ' -f1-3 /proc/loadavg)" >>"$work/machine.tsv"
echo "== writing $OUT"
"$PY" loadtest/bench/report.py --figures "$FIG" --machine "$work/machine.tsv" --commands "$CMDS" --errors "$work/errors.md" \
  --flight "$work/flight.md" --out "$OUT"
echo "done: $OUT"
