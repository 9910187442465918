// Package benchwatch measures lvs-sync's Consul change-feed watcher from
// the outside: the real `lvs-sync run -dry-run` binary against a real,
// default `consul agent -dev`, through a counting TCP proxy (Proxy) that
// sees every connection, request and byte between them.
//
// The figures (first sync, flip and change latency alone, among edits
// (busy_flip) and while the config is reloaded (reload_flip), requests and
// bytes per second, idle CPU and RSS, most connections at once) are printed by
// BenchmarkWatch, which `make bench` runs; `make test` runs the proxy's
// own tests and TestMemory1kx10, which holds the memory of lvs-sync at
// 1,000 services × 10 instances to issue 23's goal (about 15 s). It may
// import internal/testconsul, internal/testenv
// and consul/api; nothing of lvs-sync's own rooms, which it sees only
// through the binary's log.
package benchwatch
