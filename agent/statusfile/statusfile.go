// Package statusfile writes the agent's status, without secrets, as an XML
// property list that inventory tools read without the socket (osquery's plist
// table, a Jamf extension attribute, defaults read).
package statusfile

import (
	"bytes"
	"fmt"
	"time"

	"howett.net/plist"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/platform"
)

// Mode is the status file's permission. The file holds no secret (names,
// Client IDs and Key IDs are identifiers, not key material), so it is
// world-readable; in its default place, <state-dir>/status.plist, the 0700
// state folder already limits it to root, like the API limits status to
// admins. Point --status-file elsewhere only where that exposure is fine.
const Mode = 0o644

// Write encodes st and replaces the file at path atomically: a reader sees
// the previous status or the new one, never a mix.
func Write(path string, st api.Status, now time.Time) error {
	data, err := Encode(st, now)
	if err != nil {
		return err
	}
	if err := platform.WriteFileAtomic(path, data, Mode); err != nil {
		return fmt.Errorf("write status file %s: %w", path, err)
	}
	return nil
}

// Encode returns st as an XML plist. Keys are flat where a tool reads one
// value (AgentVersion, SourceError, PendingImports, LastRotationStep...);
// tenants are an array of dicts. Times are plist dates in UTC; empty values
// are left out.
func Encode(st api.Status, now time.Time) ([]byte, error) {
	m := dict{}
	m.str("AgentVersion", st.Agent.Version)
	m.int("AgentPID", st.Agent.PID)
	m.date("AgentStarted", st.Agent.Started)
	m.date("LastUpdate", now)
	m.str("SourcePath", st.Source.Path)
	m.date("SourceLastRead", st.Source.LastRead)
	m.str("SourceError", st.Source.LastError)
	m["SourceOK"] = st.Source.LastError == ""

	tenants := make([]dict, 0, len(st.Tenants))
	names := make([]string, 0, len(st.Tenants))
	for _, t := range st.Tenants {
		tenants = append(tenants, tenantDict(t))
		if t.Active != nil {
			names = append(names, t.Active.Name)
		}
	}
	m["Tenants"] = tenants
	m["TenantCount"] = len(st.Tenants)
	m["ActiveCredentialNames"] = names

	pending := make([]string, 0, len(st.PendingImports))
	for _, imp := range st.PendingImports {
		pending = append(pending, fmt.Sprintf("%s (%s)", imp.Name, imp.State))
	}
	m["PendingImports"] = len(st.PendingImports)
	m["PendingImportNames"] = pending

	if r := st.LastRotation; r != nil {
		m.str("LastRotationID", r.ID)
		m.str("LastRotationTenant", r.TenantID)
		m.str("LastRotationStep", string(r.Step))
		m.str("LastRotationReason", r.Reason)
		m.date("LastRotationTime", r.UpdatedAt)
	}
	var buf bytes.Buffer
	enc := plist.NewEncoderForFormat(&buf, plist.XMLFormat)
	enc.Indent("\t")
	if err := enc.Encode(map[string]any(m)); err != nil {
		return nil, fmt.Errorf("encode status plist: %w", err)
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

func tenantDict(t api.TenantStatus) dict {
	d := dict{}
	d.str("TenantID", t.ID)
	d.str("TenantName", t.Name)
	d.str("Scope", t.Scope)
	if c := t.Active; c != nil {
		d.str("ActiveCredentialID", c.ID)
		d.str("ActiveCredentialName", c.Name)
		d.str("ActiveClientID", c.ClientID)
		d.str("ActiveKeyID", c.KeyID)
		d.date("ActiveSince", c.Since)
		d.date("ActiveLastAuth", c.LastAuth)
	}
	if c := t.Previous; c != nil {
		d.str("PreviousCredentialID", c.ID)
		d.str("PreviousCredentialName", c.Name)
		d.str("PreviousClientID", c.ClientID)
		d.str("PreviousKeyID", c.KeyID)
		d.date("PreviousSince", c.Since)
	}
	d["Devices"] = t.Devices
	d["Coverage"] = t.Coverage
	d.date("LastSync", t.LastSync)
	d.str("LastSyncError", t.LastSyncError)
	return d
}

// dict is a plist dictionary that leaves empty values out.
type dict map[string]any

func (d dict) str(k, v string) {
	if v != "" {
		d[k] = v
	}
}

func (d dict) int(k string, v int) {
	if v != 0 {
		d[k] = v
	}
}

func (d dict) date(k string, v time.Time) {
	if !v.IsZero() {
		d[k] = v.UTC()
	}
}
