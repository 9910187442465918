// Command fakeipvsadm is the stand-in ipvsadm of the import tests (see
// package importtest): built on its own, without the race detector, so
// that each of the many calls ldirectord makes starts in milliseconds.
package main

import (
	"fmt"
	"os"

	"github.com/lvs-sync/lvs-sync/importer/importtest"
)

func main() {
	code, ok := importtest.FakeMain()
	if !ok {
		fmt.Fprintf(os.Stderr, "fakeipvsadm: %s is not set\n", importtest.FakeEnv)
		os.Exit(2)
	}
	os.Exit(code)
}
