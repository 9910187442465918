# Consul service definitions for real servers not run by Nomad, one file
# per host in the agent's config directory (here, the first web server).
# Consul's weights become the IPVS weights: Passing while the checks pass,
# Warning while one warns. The port is the virtual port: lvs-sync.hcl's
# "web" is a gate virtual service on :80, and gate cannot translate ports.

service {
  id      = "web1"
  name    = "web"
  address = "10.1.0.11"
  port    = 80
  tags    = ["prod"]

  weights {
    passing = 5
    warning = 1
  }

  check {
    id       = "web1-http"
    name     = "HTTP on 80"
    http     = "http://10.1.0.11:80/health"
    interval = "2s"
    timeout  = "1s"
  }
}
