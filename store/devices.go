package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// tenantExists returns ErrNotFound for an unknown tenant.
func tenantExists(ctx context.Context, q queryer, tenantID string) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM tenants WHERE id = ?`, tenantID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return unknownTenant(tenantID)
	}
	return err
}

// unknownTenant is the error for a tenant the store does not hold.
func unknownTenant(tenantID string) error { return fmt.Errorf("tenant %q: %w", tenantID, ErrNotFound) }

// deviceChunk is how many devices one INSERT statement carries (11
// parameters each, well under SQLite's limit of 32766).
const deviceChunk = 128

// upsertDevicesSQL returns the multi-row upsert for n devices. keepState
// keeps a stored coverage state on conflict (the devices gave none).
func upsertDevicesSQL(n int, keepState bool) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO devices (tenant_id, serial, apple_id, model, product_family, status, attrs,
		coverage_state, seen_at, released_at, updated_at) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
	}
	b.WriteString(` ON CONFLICT (tenant_id, serial) DO UPDATE SET apple_id = excluded.apple_id,
		model = excluded.model, product_family = excluded.product_family, status = excluded.status,
		attrs = excluded.attrs, seen_at = excluded.seen_at, released_at = excluded.released_at,
		updated_at = excluded.updated_at`)
	if !keepState {
		b.WriteString(`, coverage_state = excluded.coverage_state`)
	}
	return b.String()
}

// UpsertDevices inserts or updates the tenant's devices by serial, in one
// transaction, as a device list returned them: each is marked seen now, and
// is in the organisation unless its ReleasedAt says otherwise. An empty
// CoverageState keeps the stored one ("unknown" for a new device).
func (s *Store) UpsertDevices(ctx context.Context, tenantID string, devs []Device) error {
	return s.writeDevices(ctx, "upsert devices", func(tx *stx, now time.Time) error {
		if err := tenantExists(ctx, tx, tenantID); err != nil {
			return err
		}
		return upsertDevices(ctx, tx, tenantID, now, devs)
	})
}

func upsertDevices(ctx context.Context, tx *stx, tenantID string, now time.Time, devs []Device) error {
	var keep, set []Device
	for _, d := range devs {
		if d.Serial == "" {
			return errors.New("device without a serial number; every device needs one")
		}
		switch d.CoverageState {
		case "":
			d.CoverageState = CoverageUnknown
			keep = append(keep, d)
		case CoverageActive, CoverageExpired, CoverageNone, CoverageUnknown:
			set = append(set, d)
		default:
			return fmt.Errorf("device %s: coverage state %q is not active, expired, none or unknown: %w",
				d.Serial, d.CoverageState, ErrInvariant)
		}
	}
	if err := upsertDeviceRows(ctx, tx, tenantID, now.UnixNano(), keep, true); err != nil {
		return err
	}
	return upsertDeviceRows(ctx, tx, tenantID, now.UnixNano(), set, false)
}

func upsertDeviceRows(ctx context.Context, tx *stx, tenantID string, at int64, devs []Device, keepState bool) error {
	args := make([]any, 0, 11*deviceChunk)
	for start := 0; start < len(devs); start += deviceChunk {
		chunk := devs[start:min(start+deviceChunk, len(devs))]
		args = args[:0]
		for _, d := range chunk {
			attrs, err := attrsValue(d.Attrs)
			if err != nil {
				return fmt.Errorf("device %s: %w", d.Serial, err)
			}
			args = append(args, tenantID, d.Serial, d.AppleID, d.Model, d.ProductFamily, d.Status,
				attrs, d.CoverageState, at, nano(d.ReleasedAt), at)
		}
		if _, err := tx.ExecContext(ctx, upsertDevicesSQL(len(chunk), keepState), args...); err != nil {
			return fmt.Errorf("upsert devices %s..%s: %w", chunk[0].Serial, chunk[len(chunk)-1].Serial, err)
		}
	}
	return nil
}

// UpsertCoverage stores the result of reading each device's coverage, in
// one transaction: a full answer replaces the device's records and sets its
// coverage state and latest end date from them; a failed read makes the
// state unknown and keeps the records. Either way the device's
// coverage_checked_at becomes now, so a resumed sync pass does not read it
// again. The devices must exist (ErrInvariant otherwise).
func (s *Store) UpsertCoverage(ctx context.Context, tenantID string, dcs []DeviceCoverage) error {
	return s.writeDevices(ctx, "upsert coverage", func(tx *stx, now time.Time) error {
		if err := tenantExists(ctx, tx, tenantID); err != nil {
			return err
		}
		return upsertCoverage(ctx, tx, tenantID, now, dcs)
	})
}

// clearCoverageSQL removes a device's coverage records: a seek on the
// primary key's (tenant_id, serial) prefix.
const clearCoverageSQL = `DELETE FROM coverage WHERE tenant_id = ? AND serial = ?`

func upsertCoverage(ctx context.Context, tx *stx, tenantID string, now time.Time, dcs []DeviceCoverage) error {
	ins, err := tx.PrepareContext(ctx, `INSERT INTO coverage (tenant_id, serial, id, description, status,
		payment_type, is_renewable, is_canceled, agreement_number, contract_cancel_date, start_date, end_date,
		attrs, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
		ON CONFLICT (tenant_id, serial, id) DO UPDATE SET description = ?4, status = ?5, payment_type = ?6,
		is_renewable = ?7, is_canceled = ?8, agreement_number = ?9, contract_cancel_date = ?10,
		start_date = ?11, end_date = ?12, attrs = ?13, updated_at = ?14`)
	if err != nil {
		return err
	}
	defer ins.Close()
	at := now.UnixNano()
	for _, dc := range dcs {
		var res sql.Result
		if dc.Failed {
			res, err = tx.ExecContext(ctx, `UPDATE devices SET coverage_state = 'unknown', coverage_checked_at = ?,
				updated_at = ? WHERE tenant_id = ? AND serial = ?`, at, at, tenantID, dc.Serial)
		} else {
			state, end := Summarize(dc.Records, now)
			res, err = tx.ExecContext(ctx, `UPDATE devices SET coverage_state = ?, coverage_end = ?,
				coverage_checked_at = ?, updated_at = ? WHERE tenant_id = ? AND serial = ?`,
				state, nano(end), at, at, tenantID, dc.Serial)
		}
		if err != nil {
			return fmt.Errorf("update device %s: %w", dc.Serial, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("coverage for unknown device %s; upsert the device first: %w", dc.Serial, ErrInvariant)
		}
		if dc.Failed {
			continue
		}
		if _, err := tx.ExecContext(ctx, clearCoverageSQL, tenantID, dc.Serial); err != nil {
			return fmt.Errorf("clear coverage of %s: %w", dc.Serial, err)
		}
		for _, c := range dc.Records {
			attrs, err := attrsValue(c.Attrs)
			if err != nil {
				return fmt.Errorf("coverage %s of %s: %w", c.ID, dc.Serial, err)
			}
			if _, err := ins.ExecContext(ctx, tenantID, dc.Serial, c.ID, c.Description, c.Status, c.PaymentType,
				c.IsRenewable, c.IsCanceled, nullStr(c.AgreementNumber), nullStr(c.ContractCancelDate),
				nullStr(c.StartDate), nullStr(c.EndDate), attrs, at); err != nil {
				return fmt.Errorf("upsert coverage %s of %s: %w", c.ID, dc.Serial, err)
			}
		}
	}
	return nil
}

// lastNano is the latest time Unix nanoseconds hold.
var lastNano = time.Unix(0, math.MaxInt64).UTC()

// Summarize returns a device's coverage state and latest end date from its
// full list of records at now: none without records; active when a record
// is ACTIVE and has not ended; expired otherwise. The end date is zero when
// an active record is open-ended (no end date) or no record has one.
func Summarize(records []Coverage, now time.Time) (state string, end time.Time) {
	if len(records) == 0 {
		return CoverageNone, time.Time{}
	}
	state = CoverageExpired
	openEnded := false
	for _, c := range records {
		e, err := time.Parse(time.RFC3339Nano, c.EndDate)
		hasEnd := c.EndDate != "" && err == nil
		if c.Status == "ACTIVE" && (!hasEnd || e.After(now)) {
			state = CoverageActive
			openEnded = openEnded || !hasEnd
		}
		if hasEnd && e.After(end) {
			end = e.UTC()
		}
	}
	if openEnded {
		end = time.Time{}
	}
	if end.After(lastNano) {
		end = lastNano // stored as Unix nanoseconds
	}
	return state, end
}
