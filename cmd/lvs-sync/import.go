package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/lvs-sync/lvs-sync/importer"
	"github.com/lvs-sync/lvs-sync/internal/progress"
)

// importers are the configs `lvs-sync import` reads.
var importers = map[string]func(file string, src []byte, prog *progress.Reporter) (*importer.Result, error){
	"ldirectord": importer.ParseLdirectord,
	"keepalived": importer.ParseKeepalived,
}

// The files an import writes into -out.
const (
	importConfigFile   = "lvs-sync.hcl"
	importServicesFile = "consul-services.hcl"
)

func runImport(args []string, stdout, stderr io.Writer) int {
	synopsis := commands()["import"].synopsis
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: lvs-sync import ldirectord|keepalived -out DIR [-force] FILE\n\n  %s\n\n"+
			"  Writes DIR/%s and DIR/%s; prints what could not be carried over\n  as FILE:LINE: warning: lines.\n\nOptions:\n",
			synopsis, importConfigFile, importServicesFile)
		fs.PrintDefaults()
	}
	out := fs.String("out", "", "`DIR` to write "+importConfigFile+" and "+importServicesFile+" into (required)")
	force := fs.Bool("force", false, "overwrite files that are already in DIR")
	if len(args) == 0 || (args[0] != "ldirectord" && args[0] != "keepalived") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			fs.Usage()
			return 0
		}
		fmt.Fprintln(stderr, "import: want ldirectord or keepalived")
		fs.Usage()
		return 1
	}
	tool := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 1
	}
	if fs.NArg() != 1 || *out == "" {
		fmt.Fprintln(stderr, "import: want -out DIR and one FILE")
		fs.Usage()
		return 1
	}
	file := fs.Arg(0)
	src, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	// A large file says how far its import is on stderr, with the notes.
	prog := progress.New(newLogger(stderr, "info", false), nil, "import", "imported", 0)
	res, err := importers[tool](file, src, prog)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	cfgPath, svcPath := filepath.Join(*out, importConfigFile), filepath.Join(*out, importServicesFile)
	if !*force {
		for _, p := range []string{cfgPath, svcPath} {
			if _, err := os.Stat(p); err == nil {
				fmt.Fprintf(stderr, "Error: %s exists; -force overwrites it\n", p)
				return 1
			}
		}
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	for p, data := range map[string][]byte{cfgPath: importer.LVSSyncHCL(res), svcPath: importer.ConsulServicesHCL(res)} {
		if err := os.WriteFile(p, data, 0o644); err != nil {
			fmt.Fprintf(stderr, "Error: %v\n", err)
			return 1
		}
	}
	// What the import writes must be a config lvs-sync runs: anything
	// else is a bug of the importer, said as such.
	if _, ok := loadConfig(cfgPath, fs, stderr); !ok {
		fmt.Fprintf(stderr, "Error: the imported %s does not validate: this is a bug of lvs-sync import\n", cfgPath)
		return 1
	}
	for _, n := range res.Notes {
		fmt.Fprintln(stderr, n)
	}
	reals := 0
	for _, s := range res.Services {
		reals += len(s.Reals)
	}
	fmt.Fprintf(stdout, "wrote %s (%d virtual services) and %s (%d real servers); %d warnings\n",
		cfgPath, len(res.Services), svcPath, reals, len(res.Notes))
	return 0
}
