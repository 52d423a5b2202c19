// Package packaging generates and checks the files under packaging/: the MDM
// schemas from the payload schema, the example profile, the shell scripts and
// every plist shipped.
package packaging
