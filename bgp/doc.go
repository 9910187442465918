// Package bgp is the BGP speaker of an all-active tier: it announces this
// director's VIPs as host routes (/32, /128) to the upstream routers,
// which spread flows over every director announcing a VIP with ECMP. It
// is GoBGP (github.com/osrg/gobgp/v4, what kube-router embeds) run in
// process as a library, configured to be a speaker and not a router. It
// may import go-hclog and GoBGP; nothing of lvs-sync's. What to announce
// and when (after the first sync, not while stopping, not for a pool
// that cannot be served) is the daemon's rule, not this package's:
// Announce takes the whole set each time and makes GoBGP originate
// exactly that.
//
// # A speaker, not a router
//
//   - Nothing is imported. The global RIB has one import policy,
//     lvs-sync-import-local-only: a statement that accepts routes of type
//     local (those Announce originates; GoBGP runs its import policy on
//     them too) and the default action reject for everything a neighbour
//     sends. So nothing learned is ever re-announced to another router
//     nor used. The routes a router sends are still kept, pre-policy, in
//     that neighbour's Adj-RIB-In (GoBGP keeps one whatever the policy):
//     memory, not routing. Configure the routers to export nothing to
//     the directors (BIRD: `export none`), or a full table costs each
//     director its size in memory.
//   - No listening socket unless Config.ListenPort asks for one: GoBGP's
//     own default is to listen on 179 on every address, so ListenPort 0
//     is passed to it as -1. The speaker dials each neighbour, every 5 s
//     until it answers (GoBGP's default of 120 s would keep a director
//     out of a restarted router's ECMP set for two minutes); the first
//     dial goes out 1.5 to 2 s after Start. After a session ends GoBGP
//     idles a fixed 5 s before it dials again: a restarted router has the
//     routes back about 7 s after it listens (measured against BIRD).
//   - BFD is not started: no neighbour enables it, and GoBGP opens its
//     BFD socket only for a neighbour that does. Graceful restart is not
//     negotiated either: a director that stops must leave the ECMP set,
//     not be kept in it as stale.
//
// # Next hop
//
// Every path is originated with the unspecified next hop (0.0.0.0,
// ::), which GoBGP replaces with the local address of the session it is
// sent on: to an eBGP neighbour always, and to an iBGP neighbour too,
// since the path is local (GoBGP's rule for locally originated paths; it
// has no next-hop-self for learned ones, which a speaker that learns
// nothing does not need). So the router's next hop for a VIP is the
// address this director speaks BGP from: Neighbor.LocalAddress when set,
// else the address the kernel chooses towards the router. That address
// must be one the router can forward the VIP's traffic to: on the
// director's segment, not a loopback address.
//
// # Address families
//
// A neighbour gets the routes of its own address family, negotiated
// alone on its session: an IPv4 neighbour the /32s, an IPv6 neighbour
// the /128s. An IPv6 VIP on a director with only IPv4 sessions is not
// announced at all (no extended next hop, RFC 8950), and Status counts
// per neighbour what it is sent, so that shows.
//
// # Router ID
//
// Config.RouterID, or, when zero, the local address of the session to the
// first IPv4 neighbour, taken once at Start: that neighbour's
// LocalAddress, or the source address the kernel's routing table picks
// towards it (found with a connected UDP socket, which sends nothing). A
// BGP identifier is an IPv4 address, so a config whose neighbours are all
// IPv6 must set router_id (Validate says so). A router refuses an OPEN
// that carries its own identifier, so the derived one must be an
// address of the director's, not one it shares with the router.
//
// # Stopping
//
// Stop withdraws every prefix, then waits, bounded by its context, until
// each established neighbour that was sent prefixes has been written at
// least one more UPDATE and that count has held still for 5 ms (GoBGP
// packs the queued withdrawals into as few UPDATEs as fit and writes
// them back to back, so their number is not known in advance; its
// per-neighbour count of UPDATEs written to the socket is what is
// watched), then closes every session with a CEASE notification. GoBGP
// itself sends the CEASE on its own path, not after what is queued:
// without the wait a close could overtake the withdrawal. The router
// thus sees the withdrawal first, and the close right after, which would
// withdraw the routes anyway: a router that lost the withdrawal still
// drops them when the session goes. The tests show it against BIRD with
// 43 prefixes: its log has each route removed before the session
// closed, and the routes are gone within milliseconds of Stop
// returning. A Speaker is used once: Start, Announce any number of
// times, Stop; a restart is a new Speaker.
//
// A process that dies without Stop (kill -9, a crash) closes its TCP
// connections in the kernel: the router sees the session end at once and
// withdraws the routes. Only a director that dies with its kernel (power,
// panic, a cut cable) or is cut off leaves its routes until the hold
// time runs out.
//
// # Hold time, and why no BFD
//
// DefaultHoldTime is 9 s (keepalive 3 s), not BGP's customary 90 s: the
// hold time is how long a director that vanished without closing its
// session keeps its share of the flows, black-holed. The router takes
// the smaller of both sides' hold times, so ours bounds it. Lower costs
// false drops (three missed keepalives in a row: a stalled host, a long
// pause under load) and 3 s is the protocol's floor.
//
// BFD would detect that loss in under a second (300 ms × 3). GoBGP has
// it, but only since v4.6.0: single-hop, asynchronous mode without echo,
// without authentication, little used yet. And in process its packets
// are sent by the same scheduler as everything else in lvs-sync: at
// 300 ms × 3 a pause of the process (a long GC, a starved CPU on a busy
// director) drops every session of a director that still forwards
// perfectly well, which is worse than the loss it guards against. What
// BFD would gain is narrow: a crashed lvs-sync is already seen at once,
// through TCP; only a director that loses power, its kernel or its link
// waits for the hold time, 9 s instead of under 1. Not built, for now:
// the trade-off is the hold time, which a neighbour may lower to 3 s. A
// tier that needs sub-second detection of a lost host can run BFD
// between the routers and the directors' hosts with a daemon of its own
// (BIRD, FRR's bfdd) outside lvs-sync.
//
// # Holes
//
//   - Status.LastError says why a session ended (a NOTIFICATION, hold
//     timer expiry, a failed read or write, an unexpected AS). A
//     neighbour that never answers the TCP connection (down, filtered, a
//     wrong MD5 password, whose SYN the router's kernel drops) stays in
//     "active" with no error: GoBGP retries silently (at DEBUG).
//   - eBGP sessions are single-hop (GoBGP sends them with TTL 1): the
//     router must be on the director's segment. Multihop is not offered.
//   - Status asks GoBGP for the per-neighbour counts (at most 2 s); if
//     its server is stuck the counts read 0 while the states, kept from
//     GoBGP's events, stay right.
//   - Start fails when the router ID is to be derived and the kernel has
//     no route towards the first IPv4 neighbour (a director starting
//     before its network): the caller retries, or sets router_id.
//   - A ListenPort listens on 0.0.0.0 and :: (GoBGP's default); a host
//     without IPv6 fails Start then.
//   - GoBGP brings gRPC and protobuf into the binary, as a library only:
//     no gRPC listener is started.
package bgp
