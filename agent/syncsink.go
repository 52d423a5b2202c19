package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/rekeyd/rekey/agent/apple"
	"github.com/rekeyd/rekey/store"
)

// storeSink writes a sync pass into the tenant: each device list page with
// its cursor, each coverage batch with the devices' coverage_checked_at, in
// their own transactions.
type storeSink struct {
	st       *store.Store
	tenantID string
	since    time.Time // when the pass began: coverage read since is not due
	released int       // devices the pass marked released
	rank     int64     // refresh rank of the last device handed out by Due
}

var _ apple.Sink = (*storeSink)(nil)

func (s *storeSink) Page(ctx context.Context, ds []apple.Device, next string) error {
	devs := make([]store.Device, 0, len(ds))
	for _, d := range ds {
		devs = append(devs, store.Device{Serial: d.Serial, AppleID: d.ID, Model: d.Model,
			ProductFamily: d.ProductFamily, Status: d.Status, ReleasedAt: d.ReleasedAt, Attrs: d.Attributes})
	}
	n, err := s.st.SyncPage(ctx, s.tenantID, devs, next)
	if err != nil {
		return fmt.Errorf("store sync page: %w", err)
	}
	s.released += n
	return nil
}

func (s *storeSink) Due(ctx context.Context, n int) ([]apple.Device, error) {
	devs, err := s.st.CoverageDue(ctx, s.tenantID, s.since, s.rank, n)
	if err != nil {
		return nil, err
	}
	if len(devs) > 0 {
		s.rank = devs[len(devs)-1].RefreshRank
	}
	out := make([]apple.Device, len(devs))
	for i, d := range devs {
		id := d.AppleID
		if id == "" {
			id = d.Serial
		}
		out[i] = apple.Device{ID: id, Serial: d.Serial}
	}
	return out, nil
}

func (s *storeSink) Coverage(ctx context.Context, batch []apple.DeviceCoverage) error {
	dcs := make([]store.DeviceCoverage, 0, len(batch))
	for _, dc := range batch {
		recs := make([]store.Coverage, 0, len(dc.Records))
		for _, r := range dc.Records {
			recs = append(recs, store.Coverage{ID: r.ID, Serial: dc.Serial, Description: r.Description, Status: r.Status,
				PaymentType: r.PaymentType, AgreementNumber: r.AgreementNumber, IsRenewable: r.Renewable,
				IsCanceled: r.Canceled, ContractCancelDate: dateOf(r.CanceledAt), StartDate: dateOf(r.Start),
				EndDate: dateOf(r.End), Attrs: r.Attributes})
		}
		dcs = append(dcs, store.DeviceCoverage{Serial: dc.Serial, Records: recs, Failed: dc.Failed})
	}
	if err := s.st.UpsertCoverage(ctx, s.tenantID, dcs); err != nil {
		return err
	}
	for range dcs {
		crashPoint("sync.coverage") // once per device read stored
	}
	return nil
}

func dateOf(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
