consul {
  address = "127.0.0.1:8500"
  token   = "secret"
}

virtual_service "web" {
  address     = "10.10.10.60"
  forwarding  = "direct"
  persistence = "5 minutes"
  fallback    = "[2001:db8::9]:80"
}

virtual_service "web" {
  address    = "10.10.10.61:80"
  forwarding = "gate"
}
