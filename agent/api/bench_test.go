package api_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/api/apitest"
	"github.com/rekeyd/rekey/store"
)

// sqliteStatus builds the status the way the agent does: a handful of
// queries on a SQLite file (WAL, two tenants, 10,000 devices, 8,000
// coverage records) per request.
type sqliteStatus struct{ db *sql.DB }

func newSQLiteStatus(b *testing.B) *sqliteStatus {
	b.Helper()
	dsn := "file:" + filepath.Join(b.TempDir(), "bench.db") + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=synchronous(FULL)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	stmts := []string{
		`CREATE TABLE tenants (id TEXT PRIMARY KEY, name TEXT, scope TEXT, last_sync INTEGER)`,
		`CREATE TABLE credentials (id TEXT PRIMARY KEY, tenant_id TEXT, name TEXT, client_id TEXT, key_id TEXT, state TEXT, activated INTEGER)`,
		`CREATE INDEX cred_tenant ON credentials(tenant_id, state)`,
		`CREATE TABLE devices (tenant_id TEXT, serial TEXT, coverage_state TEXT, PRIMARY KEY (tenant_id, serial))`,
		`CREATE TABLE coverage (tenant_id TEXT, id TEXT, serial TEXT, PRIMARY KEY (tenant_id, id))`,
		`CREATE TABLE imports (id TEXT PRIMARY KEY, name TEXT, state TEXT, updated INTEGER)`,
		`CREATE TABLE rotations (id TEXT PRIMARY KEY, tenant_id TEXT, step TEXT, updated INTEGER)`,
		`INSERT INTO tenants VALUES ('t1','Acme','business.api',0),('t2','School','school.api',0)`,
		`INSERT INTO credentials VALUES ('c1','t1','Acme 2025','BUSINESSAPI.1','k1','previous',0),('c2','t1','Acme 2026','BUSINESSAPI.1','k2','active',1),('c3','t2','School','SCHOOLAPI.1','k3','active',1)`,
		`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM n WHERE i < 9999)
		 INSERT INTO devices SELECT CASE WHEN i % 2 = 0 THEN 't1' ELSE 't2' END, printf('SN%06d', i), 'covered' FROM n`,
		`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM n WHERE i < 7999)
		 INSERT INTO coverage SELECT CASE WHEN i % 2 = 0 THEN 't1' ELSE 't2' END, printf('CV%06d', i), printf('SN%06d', i) FROM n`,
		`INSERT INTO imports VALUES ('i1','Acme 2027','pending-unlock',0),('i0','Acme 2026','applied',0)`,
		`INSERT INTO rotations VALUES ('r1','t1','cutover',0)`,
	}
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			b.Fatalf("%s: %v", s, err)
		}
	}
	return &sqliteStatus{db: db}
}

func (s *sqliteStatus) Status(ctx context.Context) (api.Status, error) {
	st := api.Status{Agent: api.AgentInfo{Version: "bench", PID: 1}}
	rows, err := s.db.QueryContext(ctx, `SELECT id, name, scope FROM tenants ORDER BY name`)
	if err != nil {
		return st, err
	}
	for rows.Next() {
		var t api.TenantStatus
		if err := rows.Scan(&t.ID, &t.Name, &t.Scope); err != nil {
			rows.Close()
			return st, err
		}
		st.Tenants = append(st.Tenants, t)
	}
	rows.Close()
	for i := range st.Tenants {
		t := &st.Tenants[i]
		for _, state := range []string{"active", "previous"} {
			var c api.CredentialSummary
			err := s.db.QueryRowContext(ctx, `SELECT id, name, client_id, key_id FROM credentials WHERE tenant_id = ? AND state = ?`, t.ID, state).
				Scan(&c.ID, &c.Name, &c.ClientID, &c.KeyID)
			if err == nil && state == "active" {
				t.Active = &c
			} else if err == nil {
				t.Previous = &c
			}
		}
		if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM devices WHERE tenant_id = ?`, t.ID).Scan(&t.Devices); err != nil {
			return st, err
		}
		if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM coverage WHERE tenant_id = ?`, t.ID).Scan(&t.Coverage); err != nil {
			return st, err
		}
	}
	var imp store.Import
	if err := s.db.QueryRowContext(ctx, `SELECT id, name, state FROM imports WHERE state = 'pending-unlock'`).Scan(&imp.ID, &imp.Name, &imp.State); err == nil {
		st.PendingImports = append(st.PendingImports, imp)
	}
	var r store.Rotation
	if err := s.db.QueryRowContext(ctx, `SELECT id, tenant_id, step FROM rotations ORDER BY updated DESC LIMIT 1`).Scan(&r.ID, &r.TenantID, &r.Step); err == nil {
		st.LastRotation = &r
	}
	return st, nil
}

// BenchmarkStatusConcurrentClients measures GET /v1/status over the real
// socket with 1, 50 and 200 clients, each on its own connection, against a
// backend that queries SQLite per request (backend=sqlite), one that
// answers a prepared status (backend=memory: the API layer's own cost) and
// one that answers it already encoded (backend=encoded, as the agent does).
func BenchmarkStatusConcurrentClients(b *testing.B) {
	db := newSQLiteStatus(b)
	prepared, err := db.Status(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	backends := []struct {
		name   string
		status func(context.Context) (api.Status, error)
	}{
		{"sqlite", db.Status},
		{"memory", func(context.Context) (api.Status, error) { return prepared, nil }},
	}
	for _, be := range append(backends, struct {
		name   string
		status func(context.Context) (api.Status, error)
	}{"encoded", nil}) {
		var backend api.Backend = &apitest.Fake{StatusFunc: be.status}
		if be.status == nil {
			body, err := api.EncodeStatus(prepared)
			if err != nil {
				b.Fatal(err)
			}
			backend = preEncoded{&apitest.Fake{StatusFunc: func(context.Context) (api.Status, error) { return prepared, nil }}, body}
		}
		sock, _ := apitest.Serve(b, api.Config{Backend: backend})
		for _, clients := range []int{1, 50, 200} {
			b.Run(fmt.Sprintf("backend=%s/clients=%d", be.name, clients), func(b *testing.B) {
				benchStatus(b, sock, clients)
			})
		}
	}
}

func benchStatus(b *testing.B, sock string, clients int) {
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := api.NewClient(sock)
			defer c.Close()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				t := time.Now()
				if _, err := c.Status(ctx); err != nil {
					failed.Store(err)
					return
				}
				lat[i] = time.Since(t)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
}

// preEncoded is a Fake with the StatusEncoder capability, answering body.
type preEncoded struct {
	*apitest.Fake
	body []byte
}

func (p preEncoded) StatusJSON(context.Context) ([]byte, error) { return p.body, nil }
