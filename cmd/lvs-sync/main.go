// Command lvs-sync keeps a Linux IPVS director in step with the Consul
// catalog: virtual services from HCL, real servers from healthy instances.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sort"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

// command is one verb of the CLI.
type command struct {
	synopsis string
	run      func(args []string, stdout, stderr io.Writer) int
}

func commands() map[string]command {
	return map[string]command{
		"explain":    {"tell why a real server is in, out, or at its weight", runExplain},
		"ha":         {"ha handover: hand the active role to the standby director (director.ha)", runHA},
		"import":     {"turn an ldirectord or keepalived config into lvs-sync HCL and Consul services", runImport},
		"plan":       {"print the ipvsadm commands run would apply to the live kernel, changing nothing", runPlan},
		"realserver": {"set this host up as a gate or ipip real server: VIPs and ARP sysctls", runRealServer},
		"render":     {"print the desired IPVS state from the catalog, in ipvsadm -S -n format", runRender},
		"run":        {"run the director: keep the kernel's IPVS table in step with Consul", runRun},
		"status":     {"show the live IPVS table with what lvs-sync knows of each service and real", runStatus},
		"validate":   {"check a config and print every problem with its position", runValidate},
		"version":    {"print the version", runVersion},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		usage(stdout, cmds)
		if len(args) == 0 {
			return 1
		}
		return 0
	}
	if args[0] == "-version" || args[0] == "--version" {
		args[0] = "version"
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "lvs-sync: unknown command %q\n\n", args[0])
		usage(stderr, cmds)
		return 1
	}
	return cmd.run(args[1:], stdout, stderr)
}

func usage(w io.Writer, cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "Usage: lvs-sync <command> [options]")
	fmt.Fprintln(w, "\nCommands:")
	for _, n := range names {
		fmt.Fprintf(w, "    %-11s %s\n", n, cmds[n].synopsis)
	}
	fmt.Fprintln(w, "\nRun 'lvs-sync <command> -help' for a command's options.")
}

// newFlagSet makes a command's flag set with the standard -help output.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: lvs-sync %s [options]\n\n  %s\n\nOptions:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args; it returns an exit code and false when the
// command must stop: 0 after -help, 1 after a bad flag.
func parseFlags(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 1, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		fs.Usage()
		return 1, false
	}
	return 0, true
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", commands()["version"].synopsis, stderr)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	fmt.Fprintf(stdout, "lvs-sync %s\n", versionString())
	return 0
}

func versionString() string {
	v := version
	info, ok := debug.ReadBuildInfo()
	if v == "" && ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		v = info.Main.Version
	}
	if v == "" {
		v = "dev"
	}
	if ok {
		v += " (" + info.GoVersion + ")"
	}
	return v
}
