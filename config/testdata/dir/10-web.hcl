consul {
  address = "127.0.0.1:8500"
}

virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
}
