# lvs-sync configuration: one virtual service per block, real servers from
# the healthy instances of a Consul service.

consul {
  address = "127.0.0.1:8500"
  # token_file = "/etc/lvs-sync/consul.token"
  # datacenter = "dc1"
}

director {
  vip_interface = "lvs0"
}

# Direct routing: real servers carry the VIP on lo (lvs-sync realserver).
virtual_service "web" {
  address     = "10.10.10.60:80"
  forwarding  = "gate"
  scheduler   = "wlc"
  persistence = "300s"
  tags        = ["prod"]
  fallback    = "local"
}

# NAT: the director rewrites to each instance's own port.
virtual_service "api" {
  address    = "10.10.10.61:443"
  forwarding = "masq"
  service    = "api"
  quiescent  = true
}

# IP-in-IP tunnelling, over IPv6.
virtual_service "web6" {
  address    = "[2001:db8::60]:80"
  forwarding = "ipip"
  service    = "web"
}
