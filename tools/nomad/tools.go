//go:build tools

// Package tools pins the Nomad agent binary that the integration tests run.
package tools

import _ "github.com/hashicorp/nomad"
