package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/hostnet"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// newRealServer is the host's real-server setup; tests put one over
// hostnettest's fakes in its place.
var newRealServer = func(log hclog.Logger) *hostnet.RealServer {
	return hostnet.NewRealServer(nil, nil, log)
}

func runRealServer(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("realserver", commands()["realserver"].synopsis, stderr)
	var vips []netip.Addr
	fs.Func("vip", "a VIP this real server serves (repeat, or separate with commas)", func(s string) error {
		for _, p := range strings.Split(s, ",") {
			a, err := netip.ParseAddr(strings.TrimSpace(p))
			if err != nil {
				return fmt.Errorf("%q is not an IP address", p)
			}
			vips = append(vips, a.Unmap())
		}
		return nil
	})
	mode := fs.String("mode", "gate", "forwarding `METHOD` of the virtual services: gate or ipip")
	remove := fs.Bool("remove", false, "take the VIPs off again (the sysctls stay)")
	hold := fs.Bool("hold", false, "keep running and apply again every -interval (for a Nomad system job); the VIPs stay when it stops, -remove takes them off")
	interval := fs.Duration("interval", 30*time.Second, "with -hold, how often to apply again")
	level := fs.String("log-level", "info", "log `LEVEL`: trace, debug, info, warn or error")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if len(vips) == 0 {
		fmt.Fprintln(stderr, "-vip is required")
		fs.Usage()
		return 1
	}
	fwd, err := lvs.ParseForward(*mode)
	if err != nil {
		fmt.Fprintf(stderr, "-mode: %v\n", err)
		return 1
	}
	log := newLogger(stderr, *level, false).Named("realserver")
	rs := newRealServer(log)
	if *remove {
		if err := rs.Remove(vips, fwd); err != nil {
			log.Error("cannot take the vips off", "error", err)
			return 1
		}
		return 0
	}
	if err := rs.Setup(vips, fwd); err != nil {
		log.Error("cannot configure the real server", "error", err)
		return 1
	}
	if !*hold {
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	t := time.NewTicker(*interval)
	defer t.Stop()
	holdRealServer(ctx, t.C, func() error { return rs.Setup(vips, fwd) }, log)
	return 0
}

// holdRealServer applies again on every tick until ctx ends. It never
// takes the VIPs off: a job update stops this task while the application
// on the host still serves them, and a VIP gone from lo would drop its
// connections; `realserver -remove` is for taking them off. A failure is
// logged when it starts or changes, not on every tick, and so is the
// recovery.
func holdRealServer(ctx context.Context, tick <-chan time.Time, apply func() error, log hclog.Logger) {
	var failing string
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping; the vips stay (realserver -remove takes them off)")
			return
		case <-tick:
			err := apply()
			switch {
			case err != nil && err.Error() != failing:
				failing = err.Error()
				log.Error("cannot configure the real server", "reapply", true, "error", err)
			case err == nil && failing != "":
				failing = ""
				log.Info("real server configured again", "reapply", true)
			}
		}
	}
}
