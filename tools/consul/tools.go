//go:build tools

// Package tools pins the Consul agent binary that the integration tests run.
package tools

import _ "github.com/hashicorp/consul"
