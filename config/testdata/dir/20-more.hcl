virtual_service "api" {
  address    = "10.10.10.61:443"
  forwarding = "masq"
}

virtual_service "dns" {
  address    = "10.10.10.53:53"
  protocol   = "udp"
  forwarding = "ipip"
}
