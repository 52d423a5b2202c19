package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// tenantExists returns ErrNotFound for an unknown tenant.
func tenantExists(ctx context.Context, q queryer, tenantID string) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM tenants WHERE id = ?`, tenantID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("tenant %q: %w", tenantID, ErrNotFound)
	}
	return err
}

// deviceChunk is how many devices one INSERT statement carries (9 parameters
// each, well under SQLite's limit of 32766).
const deviceChunk = 128

// upsertDevicesSQL returns the multi-row upsert for n devices. keepState
// keeps a stored coverage state on conflict (the devices gave none).
func upsertDevicesSQL(n int, keepState bool) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO devices (tenant_id, serial, apple_id, model, product_family, status, attrs,
		coverage_state, updated_at) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?)")
	}
	b.WriteString(` ON CONFLICT (tenant_id, serial) DO UPDATE SET apple_id = excluded.apple_id,
		model = excluded.model, product_family = excluded.product_family, status = excluded.status,
		attrs = excluded.attrs, updated_at = excluded.updated_at`)
	if !keepState {
		b.WriteString(`, coverage_state = excluded.coverage_state`)
	}
	return b.String()
}

// UpsertDevices inserts or updates the tenant's devices by serial, in one
// transaction. An empty CoverageState keeps the stored one ("unknown" for a
// new device).
func (s *Store) UpsertDevices(ctx context.Context, tenantID string, devs []Device) error {
	return s.write(ctx, "upsert devices", func(tx *sql.Tx, now time.Time) error {
		if err := tenantExists(ctx, tx, tenantID); err != nil {
			return err
		}
		return upsertDevices(ctx, tx, tenantID, now, devs)
	})
}

// SyncPage stores one page of a sync in one transaction: its devices, their
// coverage, and the cursor a new sync resumes from ("" when the sync is
// done). A crash leaves either the whole page with its cursor or neither.
func (s *Store) SyncPage(ctx context.Context, tenantID string, devs []Device, dcs []DeviceCoverage, cursor string) error {
	return s.write(ctx, "store sync page", func(tx *sql.Tx, now time.Time) error {
		if err := tenantExists(ctx, tx, tenantID); err != nil {
			return err
		}
		if err := upsertDevices(ctx, tx, tenantID, now, devs); err != nil {
			return err
		}
		if err := upsertCoverage(ctx, tx, tenantID, now, dcs); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE tenants SET sync_cursor = ? WHERE id = ?`, cursor, tenantID)
		if err != nil {
			return err
		}
		return mustAffect(res, "tenant", tenantID)
	})
}

func upsertDevices(ctx context.Context, tx *sql.Tx, tenantID string, now time.Time, devs []Device) error {
	var keep, set []Device
	for _, d := range devs {
		if d.Serial == "" {
			return errors.New("device without a serial number; every device needs one")
		}
		if d.CoverageState == "" {
			d.CoverageState = "unknown"
			keep = append(keep, d)
		} else {
			set = append(set, d)
		}
	}
	if err := upsertDeviceRows(ctx, tx, tenantID, now.UnixNano(), keep, true); err != nil {
		return err
	}
	return upsertDeviceRows(ctx, tx, tenantID, now.UnixNano(), set, false)
}

func upsertDeviceRows(ctx context.Context, tx *sql.Tx, tenantID string, at int64, devs []Device, keepState bool) error {
	args := make([]any, 0, 9*deviceChunk)
	for start := 0; start < len(devs); start += deviceChunk {
		chunk := devs[start:min(start+deviceChunk, len(devs))]
		args = args[:0]
		for _, d := range chunk {
			args = append(args, tenantID, d.Serial, d.AppleID, d.Model, d.ProductFamily, d.Status,
				nullJSON(d.Attrs), d.CoverageState, at)
		}
		if _, err := tx.ExecContext(ctx, upsertDevicesSQL(len(chunk), keepState), args...); err != nil {
			return fmt.Errorf("upsert devices %s..%s: %w", chunk[0].Serial, chunk[len(chunk)-1].Serial, err)
		}
	}
	return nil
}

// UpsertCoverage stores the full coverage answer for each device: its
// previous records are replaced by the new ones, and the device's coverage state becomes "covered" or "none". The
// devices must exist (ErrInvariant otherwise).
func (s *Store) UpsertCoverage(ctx context.Context, tenantID string, dcs []DeviceCoverage) error {
	return s.write(ctx, "upsert coverage", func(tx *sql.Tx, now time.Time) error {
		if err := tenantExists(ctx, tx, tenantID); err != nil {
			return err
		}
		return upsertCoverage(ctx, tx, tenantID, now, dcs)
	})
}

// clearCoverageSQL removes a device's coverage records. Without INDEXED BY
// SQLite's planner walks every coverage record of the tenant (a prefix of the
// primary key) for each device, which makes a sync quadratic in its size.
const clearCoverageSQL = `DELETE FROM coverage INDEXED BY coverage_by_serial WHERE tenant_id = ? AND serial = ?`

func upsertCoverage(ctx context.Context, tx *sql.Tx, tenantID string, now time.Time, dcs []DeviceCoverage) error {
	ins, err := tx.PrepareContext(ctx, `INSERT INTO coverage (tenant_id, id, serial, description, status,
		start_date, end_date, attrs, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
		ON CONFLICT (tenant_id, id) DO UPDATE SET serial = ?3, description = ?4, status = ?5,
		start_date = ?6, end_date = ?7, attrs = ?8, updated_at = ?9`)
	if err != nil {
		return err
	}
	defer ins.Close()
	at := now.UnixNano()
	for _, dc := range dcs {
		state := "none"
		if len(dc.Records) > 0 {
			state = "covered"
		}
		res, err := tx.ExecContext(ctx, `UPDATE devices SET coverage_state = ?, updated_at = ?
			WHERE tenant_id = ? AND serial = ?`, state, at, tenantID, dc.Serial)
		if err != nil {
			return fmt.Errorf("update device %s: %w", dc.Serial, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("coverage for unknown device %s; upsert the device first: %w", dc.Serial, ErrInvariant)
		}
		if _, err := tx.ExecContext(ctx, clearCoverageSQL,
			tenantID, dc.Serial); err != nil {
			return fmt.Errorf("clear coverage of %s: %w", dc.Serial, err)
		}
		for _, c := range dc.Records {
			if _, err := ins.ExecContext(ctx, tenantID, c.ID, dc.Serial, c.Description, c.Status,
				c.StartDate, c.EndDate, nullJSON(c.Attrs), at); err != nil {
				return fmt.Errorf("upsert coverage %s of %s: %w", c.ID, dc.Serial, err)
			}
		}
	}
	return nil
}

// Devices returns up to limit devices of the tenant with serial > after, in
// serial order, each with its coverage records, and the cursor for the next
// page ("" on the last page). limit <= 0 means 100, at most 1000.
func (s *Store) Devices(ctx context.Context, tenantID, after string, limit int) ([]Device, string, error) {
	limit = clampLimit(limit)
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true}) // one snapshot for both queries
	if err != nil {
		return nil, "", fmt.Errorf("list devices: %w", mapErr(err))
	}
	defer tx.Rollback()
	if err := tenantExists(ctx, tx, tenantID); err != nil {
		return nil, "", fmt.Errorf("list devices: %w", err)
	}
	devs, err := getAll(ctx, tx, scanDevice, "devices", `SELECT serial, apple_id, model, product_family, status,
		attrs, coverage_state, updated_at FROM devices WHERE tenant_id = ? AND serial > ? ORDER BY serial LIMIT ?`,
		tenantID, after, limit)
	if err != nil || len(devs) == 0 {
		return devs, "", err
	}
	covs, err := getAll(ctx, tx, scanCoverage, "coverage", `SELECT id, serial, description, status, start_date,
		end_date, attrs FROM coverage WHERE tenant_id = ? AND serial >= ? AND serial <= ? ORDER BY serial, id`,
		tenantID, devs[0].Serial, devs[len(devs)-1].Serial)
	if err != nil {
		return nil, "", err
	}
	bySerial := make(map[string]int, len(devs))
	for i, d := range devs {
		bySerial[d.Serial] = i
	}
	for _, c := range covs {
		if i, ok := bySerial[c.Serial]; ok {
			devs[i].Coverage = append(devs[i].Coverage, c)
		}
	}
	next := ""
	if len(devs) == limit {
		next = devs[len(devs)-1].Serial
	}
	return devs, next, nil
}

func scanDevice(sc interface{ Scan(...any) error }) (Device, error) {
	var d Device
	var attrs sql.NullString
	var updated sql.NullInt64
	err := sc.Scan(&d.Serial, &d.AppleID, &d.Model, &d.ProductFamily, &d.Status, &attrs, &d.CoverageState, &updated)
	if attrs.Valid {
		d.Attrs = json.RawMessage(attrs.String)
	}
	d.UpdatedAt = fromNano(updated)
	return d, err
}

func scanCoverage(sc interface{ Scan(...any) error }) (Coverage, error) {
	var c Coverage
	var attrs sql.NullString
	err := sc.Scan(&c.ID, &c.Serial, &c.Description, &c.Status, &c.StartDate, &c.EndDate, &attrs)
	if attrs.Valid {
		c.Attrs = json.RawMessage(attrs.String)
	}
	return c, err
}

// Counts returns how many devices and coverage records the tenant has.
func (s *Store) Counts(ctx context.Context, tenantID string) (devices, coverage int, err error) {
	if err := tenantExists(ctx, s.r, tenantID); err != nil {
		return 0, 0, fmt.Errorf("count devices: %w", err)
	}
	err = s.r.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM devices WHERE tenant_id = ?1),
		(SELECT count(*) FROM coverage WHERE tenant_id = ?1)`, tenantID).Scan(&devices, &coverage)
	if err != nil {
		return 0, 0, fmt.Errorf("count devices: %w", mapErr(err))
	}
	return devices, coverage, nil
}

// SetSync records sync bookkeeping: the cursor an interrupted sync resumes
// from ("" when done), the last sync time (kept when at is zero) and the
// last error ("" on success).
func (s *Store) SetSync(ctx context.Context, tenantID, cursor string, at time.Time, errMsg string) error {
	return s.write(ctx, "record sync", func(tx *sql.Tx, now time.Time) error {
		res, err := tx.ExecContext(ctx, `UPDATE tenants SET sync_cursor = ?, sync_error = ?,
			last_sync_at = coalesce(?, last_sync_at) WHERE id = ?`, cursor, errMsg, nano(at), tenantID)
		if err != nil {
			return err
		}
		return mustAffect(res, "tenant", tenantID)
	})
}
