// Package ha decides which director of a pair is active and makes the
// host follow that role. Consul is the arbiter: the active holds a lease
// in Consul KV at the pair's lock_key, won and renewed only by
// compare-and-set, so a director is active only in an epoch it won in
// Consul's Raft. The pair detects failure itself, through a heartbeat
// over the director's interface, because Consul's own failure detection
// takes seconds.
//
// Machine is the pure part: every rule of the design as a function of
// what a director has heard, observed in Consul and been told, with an
// injected clock, so that the rules are tested on a simulated clock. The
// drivers around it are thin: ConsulLease (the lease, the registration of
// the lvs-sync-ha service and the discovery of the peer), Heartbeat (over
// hashicorp/memberlist), and Host (the role's effects on the host: sync
// daemons, VIPs on the interface or lo, announcements, backup_only). Run
// ties them to the machine; JoinPair and Pair.Run set a director up in
// its pair and take it out again, in the order that keeps the pair sound.
//
// It may import the standard library, consul/api, memberlist, go-hclog,
// clockwork, internal/blocking (the blocking-query loop it shares with
// the catalog), x/sys/unix (the sync daemons' errnos) and, for the sync
// daemon's roles, the ipvs model; it reaches the kernel through the
// narrow interfaces it declares (SyncDaemons, AddrSet, Announcer,
// Sysctl), which hostnet and ipvs satisfy (KernelSyncDaemons adapts
// ipvs.SyncKernel to SyncDaemons) and cmd wires.
package ha
