#!/usr/bin/env bash
# The embedded demo: a real Consul dev agent on loopback, three web
# instances with TTL checks, and lvs-sync rendering the IPVS table as their
# health changes. Everything it starts, it stops.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
consul=$("$here/scripts/build-consul.sh")
lvs="$here/bin/lvs-sync"
work=$(mktemp -d)
port=${DEMO_CONSUL_PORT:-28500}
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
api() { curl -sSf -X PUT "http://127.0.0.1:$port/v1/$1" ${2:+-d "$2"} >/dev/null; }

say "starting a Consul dev agent on 127.0.0.1:$port"
"$consul" agent -dev -bind 127.0.0.1 -client 127.0.0.1 -http-port "$port" \
	-server-port $((port + 1)) -serf-lan-port $((port + 2)) -serf-wan-port $((port + 3)) \
	-grpc-port -1 -grpc-tls-port -1 -dns-port -1 -node director1 >"$work/consul.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
	curl -sf "http://127.0.0.1:$port/v1/status/leader" | grep -q : && break
	sleep 0.1
done

cat >"$work/lvs-sync.hcl" <<HCL
consul {
  address = "127.0.0.1:$port"
}

virtual_service "web" {
  address     = "10.10.10.60:80"
  forwarding  = "gate"
  persistence = "300s"
  fallback    = "10.9.9.9:80"
}

virtual_service "web-nat" {
  address    = "10.10.10.61:80"
  forwarding = "masq"
  service    = "web"
  quiescent  = true
}
HCL
say "the config"
cat "$work/lvs-sync.hcl"
"$lvs" validate -config "$work/lvs-sync.hcl"

for i in 1 2 3; do
	api agent/service/register "{\"ID\":\"web$i\",\"Name\":\"web\",\"Address\":\"10.1.0.1$i\",\"Port\":808$i,
		\"Weights\":{\"Passing\":$((i * 2)),\"Warning\":1},
		\"Check\":{\"CheckID\":\"web$i-ttl\",\"TTL\":\"10m\",\"Status\":\"passing\"}}"
done
show() { say "$1"; echo "\$ lvs-sync render -config lvs-sync.hcl"; "$lvs" render -config "$work/lvs-sync.hcl"; }

show "three instances passing, weights 2, 4, 6 from Consul"
api "agent/check/warn/web2-ttl?note=slow"
show "web2 in warning: its Consul warning weight (1)"
api "agent/check/fail/web3-ttl?note=down"
show "web3 critical: removed from web; kept at weight 0 in web-nat (quiescent)"
api "agent/service/maintenance/web1?enable=true&reason=deploy"
api "agent/check/fail/web2-ttl?note=down"
show "web1 in maintenance (weight 0, draining), web2 down: web falls back to 10.9.9.9"
api "agent/service/maintenance/web1?enable=false"
api "agent/check/pass/web2-ttl"
api "agent/check/pass/web3-ttl"
show "all passing again"
say "done; the agent is stopped and $work removed"
