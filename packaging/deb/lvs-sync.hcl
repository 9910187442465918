# /etc/lvs-sync/lvs-sync.hcl: lvs-sync's configuration, as the Debian
# package installs it. The unit runs `lvs-sync run -config /etc/lvs-sync`:
# every *.hcl file in this directory, merged in name order, so a file of
# your own beside this one (services.hcl, say) needs no edit here.
#
# As shipped it declares no virtual service: a director started with it
# watches nothing and changes no IPVS table. Uncomment and adapt a
# virtual_service below, check with
#   $ lvs-sync validate -config /etc/lvs-sync
# then `systemctl start lvs-sync` (or `systemctl reload lvs-sync` once it
# runs: SIGHUP re-reads the config, and an invalid one is refused while the
# running one stays). Every attribute is in /usr/share/doc/lvs-sync/README.md.gz.

# The local HTTP API: /v1/status, /v1/health, /metrics.
api {
  address = "127.0.0.1:9337" # "" turns it off
}

consul {
  address = "127.0.0.1:8500" # default: $CONSUL_HTTP_ADDR, else this
  # token_file = "/etc/lvs-sync/consul.token" # a file of its own, mode 0600
  # datacenter = "dc1"
}

director {
  vip_interface = "lvs0" # a dummy link lvs-sync creates and puts the VIPs on
  # state_file = "/var/lib/lvs-sync/state.json" # the unit's StateDirectory
  # tune_sysctls = true # set the kernel settings the config needs, at start
}

# Direct routing: real servers carry the VIP on lo (`lvs-sync realserver`).
# The real servers are the healthy instances of the Consul service "web"
# tagged "prod".
#
# virtual_service "web" {
#   address     = "10.10.10.60:80"
#   forwarding  = "gate"
#   scheduler   = "wlc"
#   persistence = "300s"
#   tags        = ["prod"]
# }

# NAT: the director rewrites to each instance's own port.
#
# virtual_service "api" {
#   address    = "10.10.10.61:443"
#   forwarding = "masq"
#   service    = "api"
# }
