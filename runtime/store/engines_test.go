package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// An engine makes a fresh, empty database for one test and returns its DSN;
// the test may Open it several times (two replicas, a restart).
type engine struct {
	name string
	// newDB returns the DSN of a fresh database, removed at cleanup.
	newDB func(t testing.TB) string
	// replicasHearEachOther: a revocation in one Store reaches another
	// Store opened on the same database (PostgreSQL LISTEN/NOTIFY).
	replicasHearEachOther bool
}

var sqliteEngine = engine{
	name: "sqlite",
	newDB: func(t testing.TB) string {
		return "sqlite:" + filepath.Join(t.TempDir(), "armoriq.db")
	},
}

const postgresEnv = "ARMORIQ_TEST_POSTGRES"

// postgresEngine gives every test its own schema in the database named by
// $ARMORIQ_TEST_POSTGRES, dropped at cleanup: the server may hold anything
// earlier runs left behind.
var postgresEngine = engine{
	name:                  "postgres",
	replicasHearEachOther: true,
	newDB: func(t testing.TB) string {
		base := os.Getenv(postgresEnv)
		if base == "" {
			t.Skipf("%s is not set: skipping the PostgreSQL tests (set it to e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)", postgresEnv)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Fatalf("connect to %s: %v", postgresEnv, err)
		}
		defer conn.Close(ctx)
		var b [6]byte
		rand.Read(b[:])
		schema := "armoriq_test_" + hex.EncodeToString(b[:])
		if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
			t.Fatalf("create schema %s: %v", schema, err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			conn, err := pgx.Connect(ctx, base)
			if err != nil {
				t.Errorf("drop schema %s: %v", schema, err)
				return
			}
			defer conn.Close(ctx)
			if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
				t.Errorf("drop schema %s: %v", schema, err)
			}
		})
		u, err := url.Parse(base)
		if err != nil {
			t.Fatalf("parse %s: %v", postgresEnv, err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	},
}

func TestSQLite(t *testing.T)   { testStore(t, sqliteEngine) }
func TestPostgres(t *testing.T) { testStore(t, postgresEngine) }

// open opens dsn and closes the store at cleanup.
func open(t testing.TB, dsn string) Store {
	t.Helper()
	s, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("Open(%q): %v", dsn, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
