package store

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/armoriq/controlplane/runtime/store/storetest"
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
	// direct turns a DSN into one whose audit batches commit to the
	// database itself (SQLite without its journal), for tests of several
	// appenders on one database and of the database refusing a batch;
	// nil: the DSN as it is.
	direct func(dsn string) string
}

// directDSN is dsn as e.direct makes it.
func (e engine) directDSN(dsn string) string {
	if e.direct == nil {
		return dsn
	}
	return e.direct(dsn)
}

var sqliteEngine = engine{
	name: "sqlite",
	newDB: func(t testing.TB) string {
		return "sqlite:" + filepath.Join(t.TempDir(), "armoriq.db")
	},
	direct: func(dsn string) string { return dsn + "?audit_journal=off" },
}

// postgresEngine gives every test its own schema in the database named by
// $ARMORIQ_TEST_POSTGRES, dropped at cleanup: the server may hold anything
// earlier runs left behind. Without the variable the tests skip.
var postgresEngine = engine{
	name:                  "postgres",
	replicasHearEachOther: true,
	newDB:                 storetest.PostgresDSN,
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
