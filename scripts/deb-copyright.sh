#!/usr/bin/env bash
# Writes the Debian package's copyright file to stdout: lvs-sync's own
# (packaging/deb/copyright) and one paragraph for each Go module compiled
# into the static binary, since their code is in it (Debian policy 12.5).
# A module's files are named as a vendored tree would have them,
# vendor/<module>/*; its license is recognised from its LICENSE file:
# Apache-2.0 and MPL-2.0 point to /usr/share/common-licenses, MIT (Expat)
# and BSD texts, which carry their holders' names, are copied whole. A
# license not recognised fails the build: a new dependency needs a look.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
tpl=packaging/deb/copyright
# The template's header and Files paragraphs, then the modules', then the
# template's License paragraphs (DEP-5 wants them last).
awk '/^License: MPL-2.0$/ && prev == "" { exit } { if (NR > 1) print prev; prev = $0 }' "$tpl"
used_apache=
while read -r path version dir; do
	lic=$(find "$dir" -maxdepth 1 -type f \( -iname 'licen[cs]e*' -o -iname 'copying*' \) | sort | head -n 1)
	[ -n "$lic" ] || { echo "deb-copyright: no license file in $path $version ($dir)" >&2; exit 1; }
	text=$(cat "$lic")
	case $text in
	*"Apache License"*) name=Apache-2.0 full= used_apache=1 ;;
	*"Mozilla Public License"*) name=MPL-2.0 full= ;;
	*"Permission is hereby granted, free of charge"*) name=Expat full=1 ;;
	*"Redistribution and use in source and binary forms"*) name=BSD-3-clause full=1 ;;
	*"Permission to use, copy, modify"*) name=ISC full=1 ;;
	*) echo "deb-copyright: $path $version: license in $lic not recognised" >&2; exit 1 ;;
	esac
	if [ "$name" = BSD-3-clause ] && ! grep -qi 'neither the name\|names of its contributors' "$lic"; then name=BSD-2-clause; fi
	holders=$(grep -i '^[[:space:]]*copyright[[:space:]]*\((c)\|©\|[0-9]\)' "$lic" | sed 's/^[[:space:]]*//; s/^[Cc]opyright[[:space:]]*//' | sort -u || true)
	[ -n "$holders" ] || holders="the authors of $path (see its $(basename "$lic"))"
	echo
	echo "Files: vendor/$path/*"
	echo "Copyright: $(sed -n 1p <<<"$holders")"
	sed -n '2,$p' <<<"$holders" | sed 's/^/ /'
	echo "Comment: Go module $path $version, compiled into /usr/bin/lvs-sync."
	echo "License: $name"
	if [ -n "$full" ]; then
		sed 's/[[:space:]]*$//; s/^$/./; s/^/ /' <<<"$text"
	fi
done < <(go list -deps -f '{{with .Module}}{{if not .Main}}{{.Path}} {{.Version}} {{.Dir}}{{end}}{{end}}' ./cmd/lvs-sync | sort -u)
echo
awk 'found || (/^License: MPL-2.0$/ && prev == "") { found = 1; print } { prev = $0 }' "$tpl"
if [ -n "$used_apache" ]; then
	echo
	echo "License: Apache-2.0"
	echo " On Debian systems, the full text of the Apache License, version 2.0"
	echo " can be found in the file '/usr/share/common-licenses/Apache-2.0'."
fi
