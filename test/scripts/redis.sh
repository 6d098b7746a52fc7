#!/usr/bin/env bash
# Starts a real redis-server, or a 3-node Redis Cluster, on 127.0.0.1 in a temporary directory,
# prints the addresses and the nirproxy configuration to paste, and keeps them running until
# interrupted (Ctrl-C), when it stops them and removes the directory. For trying the Redis
# cache by hand:
#
#   test/scripts/redis.sh single [PORT]         # one node; PORT defaults to 6379
#   test/scripts/redis.sh cluster [FIRSTPORT]   # nodes on FIRSTPORT..FIRSTPORT+2 (default 7000),
#                                               # cluster bus ports 10000 above them
#
# Nothing is saved (--save "" --appendonly no): a restart starts empty. Needs redis-server and
# redis-cli (test/scripts/install-deps.sh installs Debian's redis-server). The Go tests do not
# use this script; they start their own servers with test/redisserver.
set -euo pipefail

usage() {
	sed -n '2,13p' "$0" >&2
	exit 2
}

mode="${1:-}"
case "$mode" in
single) port="${2:-6379}"; count=1 ;;
cluster) port="${2:-7000}"; count=3 ;;
*) usage ;;
esac
if ! [[ "$port" =~ ^[0-9]+$ ]] || ((port < 1024 || port + count - 1 > 65535)); then
	echo "redis.sh: port $port is not a number between 1024 and 65535" >&2
	exit 2
fi
if [[ "$mode" == cluster ]] && ((port + count - 1 + 10000 > 65535)); then
	echo "redis.sh: cluster bus ports (port+10000) would pass 65535; choose FIRSTPORT up to $((65535 - 10000 - count + 1))" >&2
	exit 2
fi
for bin in redis-server redis-cli; do
	if ! command -v "$bin" >/dev/null; then
		echo "redis.sh: $bin is missing; run test/scripts/install-deps.sh (or apt-get install redis-server)" >&2
		exit 1
	fi
done

dir="$(mktemp -d -t nirproxy-redis.XXXXXX)"
pids=()

# stop ends every node (SIGTERM, then SIGKILL after 5 s) and removes the directory.
stop() {
	trap - EXIT INT TERM
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for _ in $(seq 50); do
		alive=0
		for pid in "${pids[@]}"; do
			if kill -0 "$pid" 2>/dev/null; then alive=1; fi
		done
		((alive)) || break
		sleep 0.1
	done
	for pid in "${pids[@]}"; do
		kill -KILL "$pid" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	rm -rf "$dir"
	echo "redis.sh: stopped; removed $dir" >&2
}
trap stop EXIT
trap 'exit 130' INT TERM

# start_node PORT [ARGS...] starts one redis-server as a child of this script (not daemonized,
# so $! is its PID) and waits up to 10 s for it to answer as that PID (so that another
# redis-server already on the port is not taken for it).
start_node() {
	local p="$1"
	shift
	mkdir -p "$dir/$p"
	redis-server --bind 127.0.0.1 --port "$p" --daemonize no --dir "$dir/$p" \
		--save "" --appendonly no "$@" >"$dir/$p/redis.log" 2>&1 &
	local pid=$!
	pids+=("$pid")
	for _ in $(seq 100); do
		if redis-cli -h 127.0.0.1 -p "$p" info server 2>/dev/null | tr -d '\r' | grep -qx "process_id:$pid"; then
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "redis.sh: redis-server on port $p exited; its log:" >&2
			cat "$dir/$p/redis.log" >&2
			exit 1
		fi
		sleep 0.1
	done
	echo "redis.sh: redis-server on port $p did not answer within 10 s; its log:" >&2
	cat "$dir/$p/redis.log" >&2
	exit 1
}

addrs=()
for ((i = 0; i < count; i++)); do
	p=$((port + i))
	if [[ "$mode" == cluster ]]; then
		start_node "$p" --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000
	else
		start_node "$p"
	fi
	addrs+=("127.0.0.1:$p")
done

if [[ "$mode" == cluster ]]; then
	if ! out="$(timeout 60 redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes 2>&1)"; then
		echo "redis.sh: redis-cli --cluster create failed:" >&2
		echo "$out" >&2
		exit 1
	fi
	for _ in $(seq 200); do
		ok=1
		for a in "${addrs[@]}"; do
			if ! redis-cli -h 127.0.0.1 -p "${a##*:}" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; then
				ok=0
			fi
		done
		((ok)) && break
		sleep 0.1
	done
	if ((!ok)); then
		echo "redis.sh: the cluster did not reach cluster_state:ok within 20 s" >&2
		exit 1
	fi
fi

quoted=()
for a in "${addrs[@]}"; do
	quoted+=("\"$a\"")
done
joined="$(IFS=,; echo "${quoted[*]}")"
echo "redis.sh: $mode Redis on ${addrs[*]} (directory $dir, logs in $dir/PORT/redis.log)"
echo "redis.sh: paste into the nirproxy configuration:"
echo
echo "cache:"
echo "  redis:"
echo "    addrs: [${joined//,/, }]"
echo
echo "redis.sh: press Ctrl-C to stop."
# Wait until interrupted, or until any node ends by itself.
wait -n "${pids[@]}" || true
echo "redis.sh: a redis-server ended by itself; the end of each log follows, then the others stop" >&2
for p in $(seq "$port" $((port + count - 1))); do
	tail -n 5 "$dir/$p/redis.log" >&2
done
exit 1
