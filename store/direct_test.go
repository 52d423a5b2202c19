package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sqlite3 "modernc.org/sqlite/lib"
)

// directDevices opens a store with one tenant of n devices (BulkDevices:
// serials SN00000001..., one coverage record each).
func directDevices(t *testing.T, n int) (*Store, string) {
	t.Helper()
	s := openInternal(t)
	c := addAcme(t, s)
	if err := s.BulkDevices(context.Background(), c.TenantID, "SN", n); err != nil {
		t.Fatal(err)
	}
	return s, c.TenantID
}

// devicesIn opens a store in a new state folder with one tenant of n
// devices (BulkDevices); the caller closes it.
func devicesIn(t *testing.T, n int) (s *Store, dir, tenant string) {
	t.Helper()
	dir = t.TempDir() + "/state"
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := addAcme(t, s)
	if err := s.BulkDevices(context.Background(), c.TenantID, "SN", n); err != nil {
		t.Fatal(err)
	}
	return s, dir, c.TenantID
}

func TestDirectStatementsArePreparedOnceAndBounded(t *testing.T) {
	s, tenant := directDevices(t, 50)
	ctx := context.Background()
	q := DeviceQuery{Coverage: CoverageActive, Released: ReleasedExclude, Limit: 20}
	first, next, err := s.ListDevices(ctx, tenant, q)
	if err != nil || len(first) != 20 || next != "SN00000020" {
		t.Fatalf("first page: %d devices, next %q, %v", len(first), next, err)
	}
	// The statements of whichever connection read the page (the other
	// has none).
	stmts := func() (n int) {
		s.pages.read(ctx, func(a *directConn) error {
			return s.pages.read(ctx, func(b *directConn) error { n = max(len(a.stmts), len(b.stmts)); return nil })
		})
		return n
	}
	if got := stmts(); got != 3 { // the tenant check, the devices, their coverage
		t.Fatalf("%d statements prepared after a page, want 3", got)
	}
	again, next2, err := s.ListDevices(ctx, tenant, q)
	if err != nil || next2 != next || len(again) != len(first) || again[19].Serial != first[19].Serial {
		t.Fatalf("second page: %d devices, next %q, %v", len(again), next2, err)
	}
	if got := stmts(); got != 3 {
		t.Fatalf("%d statements after the same page again, want 3", got)
	}
	// Other cursors and filter values bind other values to the same
	// statements, which SQLite must not have to prepare again.
	for _, after := range []string{"SN00000003", "SN00000017", "SN00000040"} {
		for _, q := range []DeviceQuery{{After: after, Limit: 7, Coverage: CoverageActive, Released: ReleasedExclude},
			{After: after, Limit: 7}, {After: after, Limit: 1000, EndBefore: time.Now()}, {After: after, SerialPrefix: "SN0"}} {
			if _, _, err := s.ListDevices(ctx, tenant, q); err != nil {
				t.Fatal(err)
			}
		}
	}
	for range pageReaders {
		s.pages.read(ctx, func(c *directConn) error {
			for query, st := range c.stmts {
				if n := sqlite3.Xsqlite3_stmt_status(c.tls, st, sqlite3.SQLITE_STMTSTATUS_REPREPARE, 0); n != 0 {
					t.Errorf("prepared again %d times: %s", n, query)
				}
			}
			return nil
		})
	}
	// Past the bound, statements run and are finalized, not kept.
	err = s.pages.read(ctx, func(c *directConn) error {
		for i := range maxDirectStmts + 10 {
			rows, err := c.query(ctx, fmt.Sprintf("SELECT %d, ?", i), "x")
			if err != nil {
				return err
			}
			ok := rows.next()
			got, arg := rows.int64(0), rows.text(1)
			rows.close()
			if !ok || got != int64(i) || arg != "x" {
				return fmt.Errorf("statement %d read %v %d %q, %v", i, ok, got, arg, rows.Err())
			}
		}
		if len(c.stmts) != maxDirectStmts {
			return fmt.Errorf("%d statements kept, want the bound %d", len(c.stmts), maxDirectStmts)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if again, _, err := s.ListDevices(ctx, tenant, q); err != nil || len(again) != 20 {
		t.Fatalf("a page after the bound: %d, %v", len(again), err)
	}
}

func TestDirectErrorsNameTheProblemAndRefuseWrites(t *testing.T) {
	s, tenant := directDevices(t, 5)
	ctx := context.Background()
	err := s.pages.read(ctx, func(c *directConn) error {
		_, err := c.query(ctx, `SELECT * FROM nowhere`)
		return err
	})
	var de *directError
	if !errors.As(err, &de) || de.Code()&0xff != 1 || !strings.Contains(err.Error(), "no such table: nowhere") {
		t.Fatalf("a query SQLite refuses: %v; want its message and SQLITE_ERROR", err)
	}
	err = s.pages.read(ctx, func(c *directConn) error {
		return c.exec(`DELETE FROM devices`)
	})
	if err == nil || !strings.Contains(err.Error(), "readonly") {
		t.Fatalf("a write on a direct connection: %v, want refused (query_only)", err)
	}
	err = s.pages.read(ctx, func(c *directConn) error {
		_, err := c.query(ctx, `SELECT ?`, 1.5)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "float64") {
		t.Fatalf("an unsupported parameter: %v", err)
	}
	if devs, _, err := s.Devices(ctx, tenant, "", 10); err != nil || len(devs) != 5 {
		t.Fatalf("pages after the errors: %d, %v", len(devs), err)
	}
	if got := mapErr(&directError{code: sqliteCorrupt, msg: "database disk image is malformed"}); !errors.Is(got, ErrNotDatabase) {
		t.Fatalf("a corrupt page maps to %v, want ErrNotDatabase", got)
	}
}

// TestDirectPageIsOneSnapshot: a page is read in parts; a write that
// commits between two parts must not show in the later ones.
func TestDirectPageIsOneSnapshot(t *testing.T) {
	s, tenant := directDevices(t, 1000)
	ctx := context.Background()
	wrote := false
	var page []Device
	_, err := s.StreamDevices(ctx, tenant, DeviceQuery{Limit: 1000}, func(batch []Device) error {
		if !wrote {
			wrote = true
			// Give every device a second record and the last a new model.
			var dcs []DeviceCoverage
			for i := 1; i <= 1000; i++ {
				serial := fmt.Sprintf("SN%08d", i)
				dcs = append(dcs, DeviceCoverage{Serial: serial, Records: []Coverage{
					{ID: "a-" + serial, Serial: serial, Status: "ACTIVE", EndDate: "2030-01-01"},
					{ID: "b-" + serial, Serial: serial, Status: "ACTIVE", EndDate: "2031-01-01"}}})
			}
			if err := s.UpsertCoverage(ctx, tenant, dcs); err != nil {
				return err
			}
			return s.UpsertDevices(ctx, tenant, []Device{{Serial: "SN00001000", Model: "changed", Status: "ASSIGNED"}})
		}
		page = append(page, batch...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if last := page[len(page)-1]; len(page) != 900 || last.Serial != "SN00001000" || last.Model != "Mac14,2" {
		t.Fatalf("after the write: %d devices ending at %+v; want the 900 of the snapshot", len(page), last)
	}
	for _, d := range page {
		if len(d.Coverage) != 1 || !strings.HasPrefix(d.Coverage[0].ID, "cov-") {
			t.Fatalf("%s read %+v after the write; want its one record of the snapshot", d.Serial, d.Coverage)
		}
	}
	devs, _, err := s.Devices(ctx, tenant, "SN00000990", 100)
	if err != nil || len(devs) != 10 || len(devs[0].Coverage) != 2 || devs[9].Model != "changed" {
		t.Fatalf("a page after: %d devices, %v; want the write", len(devs), err)
	}
}

func TestDirectPageStopsWhenItsContextEnds(t *testing.T) {
	s, tenant := directDevices(t, 1000)
	ctx, cancel := context.WithCancel(context.Background())
	batches := 0
	_, err := s.StreamDevices(ctx, tenant, DeviceQuery{Limit: 1000}, func([]Device) error {
		if batches++; batches == 1 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || batches > 3 {
		t.Fatalf("cancelled after the first batch: %v after %d batches; want context.Canceled within a part", err, batches)
	}
	// Both connections busy: a third page waits, until its context ends.
	hold, release := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	for range pageReaders {
		wg.Go(func() {
			s.StreamDevices(context.Background(), tenant, DeviceQuery{Limit: 10}, func([]Device) error {
				hold <- struct{}{}
				<-release
				return nil
			})
		})
	}
	for range pageReaders {
		<-hold
	}
	short, cancelShort := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelShort()
	if _, err := s.StreamDevices(short, tenant, DeviceQuery{}, func([]Device) error { return nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a page while every connection is busy: %v, want its deadline", err)
	}
	close(release)
	wg.Wait()
	if devs, _, err := s.Devices(context.Background(), tenant, "", 1000); err != nil || len(devs) != 1000 {
		t.Fatalf("a page after: %d, %v", len(devs), err)
	}
}

// TestDirectPoolClosesWithTheStore: a page in flight when the store closes
// ends normally and its connection is closed when it comes back; pages
// after fail with a clear error.
func TestDirectPoolClosesWithTheStore(t *testing.T) {
	s, tenant := directDevices(t, 300)
	ctx := context.Background()
	var got int
	_, err := s.StreamDevices(ctx, tenant, DeviceQuery{Limit: 300}, func(b []Device) error {
		if got == 0 {
			s.Close()
		}
		got += len(b)
		return nil
	})
	if err != nil || got != 300 {
		t.Fatalf("the page in flight at close: %d devices, %v", got, err)
	}
	s.pages.mu.Lock()
	open := s.pages.open
	s.pages.mu.Unlock()
	if open != 0 {
		t.Fatalf("%d direct connections open after close", open)
	}
	if _, err := s.StreamDevices(ctx, tenant, DeviceQuery{}, func([]Device) error { return nil }); err == nil ||
		!strings.Contains(err.Error(), "store closed") {
		t.Fatalf("a page after close: %v", err)
	}
}

func TestDirectPagesRunConcurrentlyWithWrites(t *testing.T) {
	s, tenant := directDevices(t, 2000)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 6 {
		wg.Go(func() {
			after := ""
			for {
				devs, next, err := s.ListDevices(ctx, tenant, DeviceQuery{After: after, Limit: 300 + w})
				if err != nil {
					errs <- err
					return
				}
				for _, d := range devs {
					if len(d.Coverage) == 0 || d.Coverage[0].Serial != d.Serial {
						errs <- fmt.Errorf("%s with records %+v", d.Serial, d.Coverage)
						return
					}
				}
				if after = next; after == "" {
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 20 {
			serial := fmt.Sprintf("SN%08d", 1+i*97)
			if err := s.UpsertCoverage(ctx, tenant, []DeviceCoverage{{Serial: serial, Records: []Coverage{
				{ID: fmt.Sprintf("w%d", i), Serial: serial, Status: "ACTIVE", EndDate: "2030-01-01"}}}}); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestDirectPagesOfAReadOnlyStoreWriteNothing: rekey doctor's store reads
// pages too, from a stopped agent's file without creating sidecars.
func TestDirectPagesOfAReadOnlyStoreWriteNothing(t *testing.T) {
	s, dir, tenant := devicesIn(t, 30)
	ctx := context.Background()
	s.Close()
	ro, err := OpenReadOnly(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	devs, next, err := ro.Devices(ctx, tenant, "", 20)
	if err != nil || len(devs) != 20 || next != "SN00000020" || len(devs[0].Coverage) != 1 {
		t.Fatalf("read-only page: %d devices, next %q, %v", len(devs), next, err)
	}
	ro.Close()
	for _, side := range []string{"-wal", "-shm"} {
		if _, err := os.Stat(filepath.Join(dir, DBFile) + side); err == nil {
			t.Errorf("a read-only page left a %s file", side)
		}
	}
}

// TestDirectPageOfADamagedFileFailsClearly: a page that reaches a damaged
// database page fails with ErrNotDatabase and SQLite's message, and the
// connections go on serving pages that do not reach it.
func TestDirectPageOfADamagedFileFailsClearly(t *testing.T) {
	s, dir, tenant := devicesIn(t, 3000)
	ctx := context.Background()
	var leaf, pageSize int64
	if err := s.r.QueryRowContext(ctx, `SELECT pageno, (SELECT page_size FROM pragma_page_size) FROM dbstat
		WHERE name = 'devices' AND pagetype = 'leaf' ORDER BY pageno LIMIT 1 OFFSET 50`).Scan(&leaf, &pageSize); err != nil {
		t.Fatal(err)
	}
	if _, err := s.w.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	f, err := os.OpenFile(filepath.Join(dir, DBFile), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(strings.Repeat("\xff", int(pageSize))), (leaf-1)*pageSize); err != nil {
		t.Fatal(err)
	}
	f.Close()

	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var failed error
	for after := ""; failed == nil; {
		var next string
		if _, next, failed = s.Devices(ctx, tenant, after, 1000); next == "" {
			break
		}
		after = next
	}
	if !errors.Is(failed, ErrNotDatabase) || !strings.Contains(failed.Error(), "malformed") {
		t.Fatalf("paging over a damaged page: %v; want ErrNotDatabase with SQLite's message", failed)
	}
	for range 2 * pageReaders {
		if devs, _, err := s.Devices(ctx, tenant, "", 100); err != nil || len(devs) != 100 {
			t.Fatalf("a page before the damage: %d, %v", len(devs), err)
		}
	}
}
