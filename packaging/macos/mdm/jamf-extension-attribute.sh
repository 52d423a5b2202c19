#!/bin/sh
# rekey: service state and the agent's status summary.
status="/Library/Application Support/rekey/status.plist"
if [ ! -x /usr/local/bin/rekey ]; then
	echo "<result>not installed</result>"
	exit 0
fi
if [ ! -f "$status" ]; then
	echo "<result>no status yet: $(/usr/local/bin/rekey service-status 2>&1)</result>"
	exit 0
fi
echo "<result>$(/usr/bin/plutil -p "$status")</result>"
