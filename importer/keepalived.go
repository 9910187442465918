package importer

// ParseKeepalived imports the virtual_server blocks of a keepalived.conf.
func ParseKeepalived(file string, src []byte) (*Result, error) {
	return nil, nil
}
