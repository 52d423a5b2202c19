#!/bin/sh
# rekey: one word for Jamf smart groups (input type Script, data type String):
# ok, pending-imports, source-error, no-status, not-running or not-installed.
# Prints only the <result> line.
label=com.github.rekeyd.rekey
status="/Library/Application Support/rekey/status"
state=$(launchctl print "system/$label" 2>/dev/null | awk '$1 == "state" { print $3; exit }')
if [ ! -x /usr/local/rekey/bin/rekey ]; then
	result=not-installed
elif [ "$state" != running ]; then
	result=not-running
elif [ ! -f "$status.plist" ]; then
	result=no-status
elif [ "$(defaults read "$status" SourceOK 2>/dev/null)" = 0 ]; then
	result=source-error
elif [ "$(defaults read "$status" PendingImports 2>/dev/null || echo 0)" != 0 ]; then
	result=pending-imports
else
	result=ok
fi
echo "<result>$result</result>"
