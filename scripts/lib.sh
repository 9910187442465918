# Sourced by the scripts that prepare the tests: one way to run as root
# and one way to keep a preparation step's chatter (apt, go build) out of
# the terminal, in $LVS_SYNC_CACHE/logs, shown only when the step fails.
cache=${LVS_SYNC_CACHE:-$HOME/.cache/lvs-sync}

sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# quietly NAME CMD...: runs CMD with its output in $cache/logs/NAME.log;
# on failure the log's last lines go to stderr, with its path.
quietly() {
	local name=$1 log
	shift
	mkdir -p "$cache/logs"
	log=$cache/logs/$name.log
	if ! "$@" >"$log" 2>&1; then
		echo "failed: $* (last lines of $log:)" >&2
		tail -n 20 "$log" >&2
		return 1
	fi
}

# apt_install PKG...: installs Debian packages, quietly.
apt_install() {
	quietly apt-install sudo_ env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "$@"
}
