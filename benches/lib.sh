# Shell functions the benchmark drivers share (sourced, not run): `. "$root/benches/lib.sh"`.

# bench_workdir [mktemp -d arguments]: a fresh work directory in $work, and an EXIT trap that stops
# the server in $server_pid (when one runs) and removes $work.
bench_workdir() {
    work=$(mktemp -d "$@")
    server_pid=""
    trap bench_cleanup EXIT
}

bench_cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}

# wait_for_addr FILE COMMAND...: what COMMAND (given FILE as its last argument) prints once the
# server has written its address to FILE, polled every 0.1 s for 10 s; empty if it never does.
wait_for_addr() {
    local file=$1 addr="" i
    shift
    for i in $(seq 100); do
        addr=$("$@" "$file" 2>/dev/null || true)
        [ -n "$addr" ] && break
        sleep 0.1
    done
    printf '%s' "$addr"
}

# write_documents_body FILE: a JSON array of small objects, 4096 bytes exactly (padded inside the
# last string), for POST /api/documents.
write_documents_body() {
    awk 'BEGIN {
        s = "["; i = 0
        while (length(s) < 3900) { s = s sprintf("{\"id\":%d,\"name\":\"item-%06d\",\"tags\":[\"a\",\"b\"]},", i, i); i++ }
        pad = 4096 - length(s) - length("{\"pad\":\"\"}]")
        p = ""; for (j = 0; j < pad; j++) p = p "x"
        printf "%s{\"pad\":\"%s\"}]", s, p
    }' >"$1"
}

# write_post_lua FILE: a wrk script that POSTs the JSON file named by $BODY_FILE.
write_post_lua() {
    cat >"$1" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.body = f:read("*a")
f:close()
LUA
}
