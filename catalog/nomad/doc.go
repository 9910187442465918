// Package nomad is the Nomad implementation of catalog.Source.
package nomad
