package importtest

import (
	"strings"
	"testing"
)

func TestTableApply(t *testing.T) {
	for _, tc := range []struct {
		name, cmds, want, err string
	}{
		{name: "add, edit, delete as ipvsadm does",
			cmds: "-A -t 10.0.0.1:80 -s wrr -p 600\n-a -t 10.0.0.1:80 -x 0 -y 0 -r 10.0.0.2:80 -g -w 2\n" +
				"-a -t 10.0.0.1:80 -r 10.0.0.3:8080 -m\n-e -t 10.0.0.1:80 -r 10.0.0.3:8080 -m -w 0\n" +
				"-A -u [2001:db8::1]:53 -s rr\n-a -u [2001:db8::1]:53 -r [2001:db8::2]:53 -i -w 1 --tun-type ipip\n" +
				"-A -f 7 -s sh\n-d -t 10.0.0.1:80 -r 10.0.0.2:80",
			want: "-A -f 7 -s sh\n-A -t 10.0.0.1:80 -s wrr -p 600\n-a -t 10.0.0.1:80 -r 10.0.0.3:8080 -m -w 0\n" +
				"-A -u [2001:db8::1]:53 -s rr\n-a -u [2001:db8::1]:53 -r [2001:db8::2]:53 -i -w 1\n"},
		{name: "-E sets every option: what it leaves out is the default",
			cmds: "-A -t 10.0.0.1:80 -s rr -p 60\n-E -t 10.0.0.1:80", want: "-A -t 10.0.0.1:80 -s wlc\n"},
		{name: "adding a service twice", cmds: "-A -t 10.0.0.1:80\n-A -t 10.0.0.1:80", err: "service exists"},
		{name: "deleting a real that is not there", cmds: "-A -t 10.0.0.1:80\n-d -t 10.0.0.1:80 -r 10.0.0.2:80", err: "no such real"},
		{name: "a real of no service", cmds: "-a -t 10.0.0.1:80 -r 10.0.0.2:80 -g", err: "no such service"},
		{name: "an unknown flag", cmds: "-A -t 10.0.0.1:80 --bogus", err: "unknown argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tab, err := Parse(tc.cmds)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tab.String(); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
			// What List prints, ldirectord reads back (ld_read_ipvsadm).
			back := tab.List(false)
			for k, s := range tab {
				for r, real := range s.Reals {
					fwd := map[string]string{"-g": "Route", "-m": "Masq", "-i": "Tunnel"}[real.Method]
					if !strings.Contains(back, "  -> "+r) || !strings.Contains(back, fwd) {
						t.Errorf("List of %s has no line for %s (%s): %s", k, r, fwd, back)
					}
				}
			}
		})
	}
}
