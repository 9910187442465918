# lvs-sync on a Nomad cluster without Consul: real servers from the
# healthy instances of services that jobs register in Nomad itself
# (service { provider = "nomad" }, as examples/web-nomad.nomad.hcl does).
# No consul block: with Nomad services alone, lvs-sync never contacts
# Consul.

nomad {
  address = "http://127.0.0.1:4646" # default: $NOMAD_ADDR, else this
  # token_file = "/etc/lvs-sync/nomad.token"  # default: $NOMAD_TOKEN
  namespace = "default" # "*" for every namespace the token may read
  # ca_cert, client_cert, client_key, tls_server_name, skip_verify:
  # as the nomad CLI's NOMAD_CACERT, ... (and those variables)
}

director {
  vip_interface = "lvs0"
}

# Direct routing: real servers carry the VIP on lo (lvs-sync realserver).
virtual_service "web" {
  address     = "10.10.10.60:80"
  forwarding  = "gate"
  persistence = "300s"
  tags        = ["prod"]
  fallback    = "local"
  provider    = "nomad"
}
