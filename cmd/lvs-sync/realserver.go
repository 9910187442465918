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

	"github.com/lvs-sync/lvs-sync/hostnet"
	"github.com/lvs-sync/lvs-sync/lvs"
)

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
	hold := fs.Bool("hold", false, "keep running: apply again every -interval, and take the VIPs off on SIGTERM (for a Nomad system job)")
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
	rs := hostnet.NewRealServer(nil, nil, log)
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
	for {
		select {
		case <-ctx.Done():
			if err := rs.Remove(vips, fwd); err != nil {
				log.Error("cannot take the vips off", "error", err)
				return 1
			}
			return 0
		case <-t.C:
			if err := rs.Setup(vips, fwd); err != nil {
				log.Error("cannot configure the real server", "error", err)
			}
		}
	}
}
