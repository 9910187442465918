# Consul service definitions for real servers not run by Nomad, one file
# per host in the agent's config directory (here, the first web server).
# Consul's weights become the IPVS weights: Passing while the checks pass,
# Warning while one warns.

service {
  id      = "web1"
  name    = "web"
  address = "10.1.0.11"
  port    = 8080
  tags    = ["prod"]

  weights {
    passing = 5
    warning = 1
  }

  check {
    id       = "web1-http"
    name     = "HTTP on 8080"
    http     = "http://10.1.0.11:8080/health"
    interval = "2s"
    timeout  = "1s"
  }
}
