director {
  vip_interface = "lvs0"
}
