package hostnet

import (
	"bufio"
	"errors"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// Modules answers whether the kernel can load an IPVS scheduler, from the
// files a kernel's modules leave: a loaded one is under /sys/module, a
// built-in one is listed in modules.builtin, a loadable one is a file
// under /lib/modules/RELEASE/kernel/net/netfilter/ipvs. The kernel loads
// a scheduler's module itself when a service first names it
// (request_module("ip_vs_%s")), so a missing one is seen only as the
// service's ENOENT, service after service: this says it once, at start.
type Modules struct {
	// FS is the host's root; Release its kernel's (uname -r).
	FS      fs.FS
	Release string
}

// HostModules reads the running kernel's modules.
func HostModules() (Modules, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return Modules{}, err
	}
	return Modules{FS: os.DirFS("/"), Release: unix.ByteSliceToString(u.Release[:])}, nil
}

// SchedulerModule is the module that holds an IPVS scheduler: ip_vs_mh
// for mh.
func SchedulerModule(scheduler string) string { return "ip_vs_" + scheduler }

// Has reports whether the kernel has module name: loaded, built in or
// loadable. err is set only when none of the three could be read at all.
func (m Modules) Has(name string) (bool, error) {
	if _, err := fs.Stat(m.FS, "sys/module/"+name); err == nil {
		return true, nil
	}
	base := "lib/modules/" + m.Release
	builtin, errB := m.listed(base+"/modules.builtin", name)
	if builtin {
		return true, nil
	}
	entries, errD := fs.ReadDir(m.FS, base+"/kernel/net/netfilter/ipvs")
	for _, e := range entries {
		if n := e.Name(); n == name+".ko" || strings.HasPrefix(n, name+".ko.") {
			return true, nil
		}
	}
	if errB != nil && errD != nil {
		return false, errors.Join(errB, errD)
	}
	return false, nil
}

// listed reports whether a modules.builtin (one path per line, as
// kernel/net/netfilter/ipvs/ip_vs_mh.ko) lists module name.
func (m Modules) listed(file, name string) (bool, error) {
	f, err := m.FS.Open(file)
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.TrimSuffix(path.Base(sc.Text()), ".ko") == name {
			return true, nil
		}
	}
	return false, sc.Err()
}

// CheckSchedulers warns, once each, of the schedulers a config uses that
// the kernel has no module for; every virtual service using one would
// fail to be created. It returns them, sorted.
func CheckSchedulers(m Modules, schedulers []string, log hclog.Logger) []string {
	var missing []string
	for _, s := range schedulers {
		if slices.Contains(missing, s) {
			continue
		}
		ok, err := m.Has(SchedulerModule(s))
		switch {
		case err != nil:
			log.Debug("cannot tell the kernel's schedulers", "scheduler", s, "error", err)
		case !ok:
			missing = append(missing, s)
			log.Warn("the kernel has no module for a scheduler the config uses: its virtual services cannot be created",
				"scheduler", s, "module", SchedulerModule(s), "release", m.Release)
		}
	}
	slices.Sort(missing)
	return missing
}
